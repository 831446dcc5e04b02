"""/v1/views: the read models of the agencies' work together, as the caller may see them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from .common import Authenticated, State, answer
from .problems import documented
from .schemas import AlertsView, ExchangeView, RecognitionView, StatisticsView

router = APIRouter(tags=["views"])


@router.get("/v1/views/exchange/{declaration_id}", response_model=ExchangeView, responses=documented(401, 404))
def exchange(declaration_id: str, api: State, who: Authenticated) -> Response:
    """Each agency's messages sent, acknowledged and decided, with times, and the flows between agencies."""
    return answer(api.see.exchange(api.see.declaration(who, declaration_id)))


@router.get("/v1/views/recognition", response_model=RecognitionView, responses=documented(401, 403))
def recognition(api: State, who: Authenticated) -> Response:
    """Each inspection result, who recognised it, and the inspections saved; an officer's agency's only."""
    return answer(api.see.recognition(who))


@router.get("/v1/views/alerts", response_model=AlertsView, responses=documented(401, 403))
def alerts(api: State, who: Authenticated) -> Response:
    """Alerts, newest first, with the declarations each holds; an officer sees its agency's declarations."""
    return answer(api.see.alerts(who))


@router.get("/v1/views/stats", response_model=StatisticsView, responses=documented(401, 403))
def stats(api: State, who: Authenticated) -> Response:
    """Counts by status and agency, and clearance time (submitted to released) p50 and p90."""
    return answer(api.see.statistics(who))
