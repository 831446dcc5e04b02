"""Parked dispatch: the declarations whose messages to an agency could not be sent, and an admin's retry.

Admins only: a failure's reason names the broker and its limits. Declarants and officers see a failure on the
declaration itself (`dispatch_failures` in its resource). The retry makes the parked declaration due at once;
the dispatch worker tries it within about a second (docs/dispatch.md), so the route answers 202.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from hub.declarations import AGENCIES, DeclarationNotFound
from projections import dispatch_parking as parking
from tradehub.auth import Caller

from .common import Authenticated, State, answer
from .problems import ProblemError, documented

router = APIRouter(tags=["dispatch"])


async def admin(who: Authenticated) -> Caller:
    if who.role != "admin":
        raise ProblemError(403, "forbidden", "Admins only", "parked dispatch is the hub operator's to see and retry")
    return who


Admin = Annotated[Caller, Depends(admin)]


class ParkedDispatch(BaseModel):
    agency: str
    declaration_id: str
    failed_version: int = Field(description="the version whose message(s) failed; later ones wait behind it")
    reason: str
    failed_at: str
    attempts: int = Field(description="tries so far, the first one included")
    next_attempt: float = Field(description="when it is tried next, in seconds since the epoch")
    waiting_versions: list[int] = Field(description="the versions whose messages wait, in the order they go out")


class ParkedList(BaseModel):
    items: list[ParkedDispatch]


class RetryScheduled(BaseModel):
    declaration_id: str
    agency: str
    retry: str = Field(description="`scheduled`: the dispatch worker tries it within about a second")


@router.get("/v1/dispatch/parked", response_model=ParkedList, responses=documented(401, 403, 422))
def parked(api: State, _: Admin,
           agency: Annotated[str | None, Query(pattern="^(" + "|".join(AGENCIES) + ")$")] = None,
           limit: Annotated[int, Query(ge=1, le=500)] = 500) -> Response:
    """Every parked dispatch, oldest failure first (admins only)."""
    return answer({"items": parking.parked(api.hub.views, agency=agency, limit=limit)})


@router.post("/v1/declarations/{declaration_id}/dispatch/{agency}/retry", status_code=202,
             response_model=RetryScheduled, responses=documented(401, 403, 404, 409))
async def retry(declaration_id: str, agency: str, api: State, _: Admin) -> Response:
    """Try a parked dispatch again now, not at its back-off's next time (admins only).

    404 if there is no such declaration or agency; 409 if its dispatch to that agency is not parked.
    """
    if agency not in AGENCIES:
        raise ProblemError(404, "not-found", "No such agency", f"the agencies are {', '.join(AGENCIES)}")
    try:
        declaration = await api.offload(api.hub.declarations.get, declaration_id)
    except DeclarationNotFound:
        raise ProblemError(404, "not-found", "No such declaration", f"no declaration {declaration_id}") from None
    if not await api.offload(parking.retry_now, api.hub.views, agency, str(declaration.id), time.time()):
        raise ProblemError(409, "not-parked", "Nothing to retry",
                           f"the dispatch of {declaration.id} to {agency} is not parked")
    return answer({"declaration_id": str(declaration.id), "agency": agency, "retry": "scheduled"}, 202)
