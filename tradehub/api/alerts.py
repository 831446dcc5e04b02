"""/v1/alerts: officers raise risk alerts, which hold declarations, and clear them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from hub.declarations import Alert, AlertInvalid
from tradehub import visibility

from .common import Authenticated, State, answer, envelope, json_body
from .problems import ProblemError, documented
from .schemas import AlertRequest, AlertResource

router = APIRouter(tags=["alerts"])


@router.post("/v1/alerts", status_code=201, response_model=AlertResource,
             responses=documented(400, 401, 403, 413, 422))
async def raise_alert(request: Request, api: State, who: Authenticated) -> Response:
    """Raise a risk alert: every open declaration involving the subject, and every later one, is held."""
    visibility.view_scope(who)  # officers and admins only
    body = envelope(AlertRequest, await json_body(request))
    try:
        alert = await api.offload(api.hub.declarations.raise_alert, body.subject_kind, body.subject, body.reason,
                                  who.subject)
    except AlertInvalid as error:
        raise ProblemError(422, "invalid-request", "Invalid alert",
                           errors=[{"path": f"$.{error.field}", "message": str(error)}]) from None
    return answer(alert_resource(alert), 201, {"Location": f"/v1/alerts/{alert.id}"})


@router.post("/v1/alerts/{alert_id}/clearance", response_model=AlertResource, responses=documented(401, 403, 404))
async def clear_alert(alert_id: str, api: State, who: Authenticated) -> Response:
    """Clear an alert: its holds are lifted. Clearing it again changes nothing.

    Only an officer of the agency that raised it, or an admin, may: 403 for others who see it, else 404."""
    await api.offload(api.see.alert_to_clear, who, alert_id)
    alert = await api.offload(api.hub.declarations.clear_alert, alert_id, who.subject)
    return answer(alert_resource(alert))


def alert_resource(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "subject_kind": alert.subject_kind, "subject": alert.subject, "reason": alert.reason,
            "raised_by": alert.raised_by, "raised_at": alert.created_on, "status": alert.status,
            "cleared_by": alert.cleared_by}
