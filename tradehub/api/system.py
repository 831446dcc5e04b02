"""Operations: /healthz for probes and /metrics for Prometheus, both without a token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from followers.dispatch import DISPATCH_PREFIX
from hub.declarations.domainmodel import OVERALL_STATUSES
from projections.status_board import counts_by_status
from tradehub.bootstrap import Hub

from .common import State

router = APIRouter(tags=["operations"])

_UNAUTHENTICATED = {"security": []}


@router.get("/healthz", responses={503: {"description": "not healthy"}}, openapi_extra=_UNAUTHENTICATED)
def healthz(api: State) -> Response:
    """The store answers and every view is following the log."""
    hub = api.hub
    checks: dict[str, Any] = {}
    try:
        checks["log_position"] = hub.declarations.recorder.max_notification_id() or 0
        checks["view_lag"] = lag(hub, checks["log_position"])
        checks["view_errors"] = hub.views.failures()
    except Exception as error:  # noqa: BLE001 - reported, not raised
        checks["store"] = f"unavailable: {error}"
    healthy = "store" not in checks and not checks.get("view_errors")
    return JSONResponse({"status": "ok" if healthy else "failing", **checks}, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response, openapi_extra=_UNAUTHENTICATED,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(api: State) -> Response:
    return Response(generate_latest(api.registry), media_type="text/plain; version=0.0.4")


def metrics_registry(hub: Hub) -> CollectorRegistry:
    """A registry of the hub's own gauges; the API's middleware adds its request metrics to it."""
    registry = CollectorRegistry()
    registry.register(_BoardCollector(hub))
    return registry


def lag(hub: Hub, head: int | None = None) -> dict[str, int]:
    """Events each view is behind the log, and each agency's dispatch once it has dispatched."""
    if head is None:
        head = hub.declarations.recorder.max_notification_id() or 0
    behind = hub.runner.lag(head=head)
    behind.update({name: head - position for name, position in hub.views.positions(DISPATCH_PREFIX).items()})
    return behind


class _BoardCollector:
    """Declarations by overall status, read from the status board at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Any:
        gauge = GaugeMetricFamily("tradehub_declarations", "Declarations by overall status", labels=["status"])
        counts = counts_by_status(self.hub.views)
        for status in OVERALL_STATUSES:
            gauge.add_metric([status], counts.get(status, 0))
        yield gauge
        views = GaugeMetricFamily("tradehub_view_lag_events", "Events a view is behind the log", labels=["view"])
        for view, behind in lag(self.hub).items():
            views.add_metric([view], behind)
        yield views
