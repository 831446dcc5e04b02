"""/v1/parties: the business register (一照一码), one entry per USCC (docs/licences.md, "The business register").

An admin keeps it (`PUT`); officers read any entry; a trader reads its own
party's entry only, and every other USCC, registered or not, answers 404 as
an unknown one does, so the register cannot be probed through the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from hub.declarations import Party, PartyInvalid, PartyNotFound
from hub.declarations.party import ADDRESS_LENGTH, NAME_LENGTH, STATUSES
from tradehub.auth import Caller

from .common import Authenticated, State, answer, envelope, json_body
from .problems import ProblemError, documented
from .schemas import Strict

router = APIRouter(tags=["parties"])


class PartyRequest(Strict):
    name: str = Field(description="the registered name, one line", max_length=4 * NAME_LENGTH)
    address: str = Field(description=f"the registered address, one line of at most {ADDRESS_LENGTH} characters "
                                     "(customs gets it as the WCO address line)", max_length=4 * ADDRESS_LENGTH)
    status: Literal[STATUSES] = Field(  # type: ignore[valid-type]
        description="deregistered: declarations naming the party are refused while the register is required")


class PartyResource(BaseModel):
    uscc: str
    name: str
    address: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    deregistered_at: datetime | None = Field(description="since when it has been deregistered; null while active")
    registered_at: datetime
    updated_at: datetime
    version: int


_PARTY_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PartyRequest.model_json_schema()}}}}


@router.put("/v1/parties/{uscc}", response_model=PartyResource,
            responses={201: {"model": PartyResource, "description": "Registered"},
                       **documented(400, 401, 403, 413, 422)},
            openapi_extra=_PARTY_BODY)
async def register(uscc: str, request: Request, api: State, who: Authenticated) -> Response:
    """Register a party or replace its entry (admins only). The same fields again change nothing (200)."""
    if who.role != "admin":
        raise ProblemError(403, "forbidden", "Admins only", "the business register is kept by the hub's admins")
    body = envelope(PartyRequest, await json_body(request))
    try:
        registration = await api.offload(api.hub.declarations.register_party, uscc, body.name, body.address,
                                         body.status, who.subject)
    except PartyInvalid as error:
        errors = [{"path": "path.uscc" if e.path == "$.uscc" else e.path, "message": e.message} for e in error.errors]
        raise ProblemError(422, "invalid-request", "Invalid party", errors=errors) from None
    party = registration.party
    return answer(party_resource(party), 201 if registration.created else 200,
                  {"Location": f"/v1/parties/{party.uscc}"})


@router.get("/v1/parties/{uscc}", response_model=PartyResource, responses=documented(401, 404))
async def read(uscc: str, api: State, who: Authenticated) -> Response:
    """One entry of the register: admins and officers any, a trader its own."""
    try:
        party = await api.offload(api.hub.declarations.get_party, uscc)
    except PartyNotFound:
        party = None
    if party is None or not may_read(who, party):
        raise ProblemError(404, "not-found", "No such party", f"no party {uscc[:40]} in the business register")
    return answer(party_resource(party))


def may_read(who: Caller, party: Party) -> bool:
    """Admins and officers read the whole register; a trader its own party's entry."""
    return who.role in ("admin", "officer") or (who.role == "trader" and who.party == party.uscc)


def party_resource(party: Party) -> dict[str, Any]:
    return {"uscc": party.uscc, "name": party.name, "address": party.address, "status": party.status,
            "deregistered_at": party.deregistered_at, "registered_at": party.created_on,
            "updated_at": party.modified_on, "version": party.version}
