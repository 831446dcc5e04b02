"""Operations: /healthz for probes and /metrics for Prometheus, both without a token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from followers.dispatch import DISPATCH_PREFIX
from hub.declarations.domainmodel import AGENCIES, OVERALL_STATUSES
from projections.dead_letters import counts as dead_letter_counts
from projections.dispatch_parking import parked_counts
from projections.retention import summary as retention_summary
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
        checks["dispatch_backlog"] = dispatch_backlog(hub, checks["log_position"])
        checks["dead_letters"] = dead_letter_counts(hub.views)  # work for an admin, not a failure of the hub
        checks["dispatch_parked"] = parked_counts(hub.views)  # declarations an agency is not getting: degraded
    except Exception as error:  # noqa: BLE001 - reported, not raised
        checks["store"] = f"unavailable: {error}"
    healthy = "store" not in checks and not checks.get("view_errors")
    status = ("degraded" if checks.get("dispatch_parked") else "ok") if healthy else "failing"
    return JSONResponse({"status": status, **checks}, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response, openapi_extra=_UNAUTHENTICATED,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(api: State) -> Response:
    return Response(generate_latest(api.registry), media_type="text/plain; version=0.0.4")


def metrics_registry(hub: Hub) -> CollectorRegistry:
    """A registry of the hub's own gauges; the API's middleware adds its request metrics to it."""
    registry = CollectorRegistry()
    registry.register(_BoardCollector(hub))
    registry.register(_RetentionCollector(hub))
    return registry


def lag(hub: Hub, head: int | None = None) -> dict[str, int]:
    """Events each view is behind the log, and each agency's dispatch once it has dispatched."""
    if head is None:
        head = hub.declarations.recorder.max_notification_id() or 0
    behind = hub.runner.lag(head=head)
    behind.update({name: head - position for name, position in hub.views.positions(DISPATCH_PREFIX).items()})
    return behind


def dispatch_backlog(hub: Hub, head: int) -> dict[str, int]:
    """Events each agency's dispatch is behind the log's head, by its tracked position (once it has one)."""
    return {name.removeprefix(DISPATCH_PREFIX): max(0, head - position)
            for name, position in hub.views.positions(DISPATCH_PREFIX).items()}


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
        yield from _dead_letter_gauges(self.hub)
        parked = GaugeMetricFamily("tradehub_dispatch_parked", "Declarations whose dispatch to an agency is parked "
                                   "after a failure", labels=["agency"])
        counts = parked_counts(self.hub.views)
        for agency in AGENCIES:
            parked.add_metric([agency], counts.get(agency, 0))
        yield parked


def _dead_letter_gauges(hub: Hub) -> Any:
    """Each agency's dead letters (all, and awaiting a replay) and its dispatch backlog."""
    dead = GaugeMetricFamily("tradehub_dead_letters", "Dead letters kept, by agency", labels=["agency"])
    awaiting = GaugeMetricFamily("tradehub_dead_letters_awaiting_replay", "Dead letters whose replay is requested "
                                 "or running, by agency", labels=["agency"])
    for agency, count in sorted(dead_letter_counts(hub.views).items()):
        dead.add_metric([agency], count["total"])
        awaiting.add_metric([agency], count["awaiting_replay"])
    backlog = GaugeMetricFamily("tradehub_dispatch_backlog_events", "Events an agency's dispatch is behind the log",
                                labels=["agency"])
    head = hub.declarations.recorder.max_notification_id() or 0
    for agency, behind in sorted(dispatch_backlog(hub, head).items()):
        backlog.add_metric([agency], behind)
    yield from (dead, awaiting, backlog)


class _RetentionCollector:
    """The retention policy of personal data (docs/personal-data.md, "Retention"), read from its view at scrape
    time under the configured TRADEHUB_PERSONAL_DATA_DAYS: what is due and not yet erased, and what was erased."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Any:
        days = self.hub.settings.personal_data_days
        found = retention_summary(self.hub.views, days=days, now=datetime.now(UTC))
        yield GaugeMetricFamily("tradehub_personal_data_retention_days", "Days personal data is kept after its "
                                "purpose was served (0: kept until erased by hand)", value=days)
        yield GaugeMetricFamily("tradehub_personal_data_due", "Declarations whose personal data the retention "
                                "policy has made due and that are not erased yet", value=found.due)
        yield GaugeMetricFamily("tradehub_personal_data_due_held", "Declarations whose personal data would be due "
                                "but for a standing enforcement hold", value=found.held)
        yield GaugeMetricFamily("tradehub_personal_data_overdue_seconds", "How long the longest-overdue personal "
                                "data has been due (0: none is)", value=found.oldest_overdue_seconds)
        erased = GaugeMetricFamily("tradehub_personal_data_erased", "Declarations whose personal data is erased, "
                                   "by the retention policy or by hand", labels=["by"])
        for by, count in sorted(found.erased.items()):
            erased.add_metric([by], count)
        yield erased
