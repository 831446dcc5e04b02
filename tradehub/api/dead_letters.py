"""/v1/dead-letters: the answers the hub refused, for an admin to read and send through the inbox again.

Admins only, all three routes (docs/dead-letters.md, "Who may"): a body is an
agency's message as it came, which may name people, and a replay acts on
declarations; an officer's agency sees its own answers' fate on the
declarations themselves. Anyone else gets 403, whether or not the letter exists.
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from hub.declarations import AGENCIES
from projections.dead_letters import IN_EFFECT, REPLAY_STATES, DeadLetters, InvalidCursor
from tradehub.auth import Caller

from .common import ApiState, Authenticated, State, answer
from .problems import ProblemError, documented

router = APIRouter(tags=["dead letters"])

CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


async def admin(who: Authenticated) -> Caller:
    if who.role != "admin":
        raise ProblemError(403, "forbidden", "Admins only",
                           "dead letters are the hub operator's: their bodies may name people")
    return who


Admin = Annotated[Caller, Depends(admin)]


class Replay(BaseModel):
    state: Literal[REPLAY_STATES]  # type: ignore[valid-type]
    requested_at: str | None
    requested_by: str | None
    replayed_at: str | None = Field(description="when the last replay ended")
    replays: int = Field(description="replays run so far")
    code: str | None = Field(description="the dead-letter code of the last replay, if it was refused again")
    reason: str | None


class DeadLetter(BaseModel):
    id: UUID
    agency: str
    code: str = Field(description="why it was refused: a stable code (docs/dead-letters.md)")
    reason: str
    declaration_id: str | None = Field(description="the declaration it answers, where the hub could read it")
    refused_at: str
    last_refused_at: str = Field(description="the last delivery refused (a redelivery moves it, and nothing else)")
    deliveries: int
    headers: dict[str, str] = Field(description="what the broker said of the delivery")
    body_bytes: int
    body_complete: bool = Field(description="false: larger than the XML gate admits; only its start is kept, "
                                            "and it cannot be replayed")
    replay: Replay


class DeadLetterWithBody(DeadLetter):
    body: str | None = Field(description="the body as text (UTF-8, U+FFFD where it is not); null if it does not "
                                         "open with this hub's cipher key")
    body_base64: str | None = Field(description="the body's exact bytes")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


def dead_letters(api: ApiState) -> DeadLetters:
    return DeadLetters(api.hub.views, api.hub.settings.cipher_key)


@router.get("/v1/dead-letters", response_model=DeadLetterPage, responses=documented(401, 403, 422))
def list_(
    api: State,
    _: Admin,
    agency: Annotated[Literal[AGENCIES] | None, Query()] = None,  # type: ignore[valid-type]
    code: Annotated[str | None, Query(max_length=64, pattern=CODE.pattern)] = None,
    state: Annotated[Literal[REPLAY_STATES] | None, Query(description="replay state")] = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Dead letters, newest first, filtered and paginated; without bodies."""
    try:
        items, following = dead_letters(api).listed(agency=agency, code=code, state=state, limit=limit, after=cursor)
    except InvalidCursor as error:
        raise ProblemError(422, "invalid-request", "Invalid query",
                           errors=[{"path": "query.cursor", "message": str(error)}]) from None
    return answer({"items": items, "next_cursor": following})


@router.get("/v1/dead-letters/{dead_letter_id}", response_model=DeadLetterWithBody,
            responses=documented(401, 403, 404, 422))
def show(dead_letter_id: UUID, api: State, _: Admin) -> Response:
    """One dead letter with its body, decoded."""
    letter = dead_letters(api).get(str(dead_letter_id))
    if letter is None:
        raise _missing(dead_letter_id)
    body: bytes | None = letter.pop("body")
    return answer({**letter, "body": None if body is None else body.decode("utf-8", errors="replace"),
                   "body_base64": None if body is None else base64.b64encode(body).decode("ascii")})


@router.post("/v1/dead-letters/{dead_letter_id}/replay", status_code=202, response_model=DeadLetter,
             responses={**documented(401, 403, 404, 409, 422),
                        200: {"description": "never: a replay is always accepted (202) or refused"}})
def replay(dead_letter_id: UUID, api: State, who: Admin) -> Response:
    """Send the letter through the inbox again, as a delivery (the consume worker does, within about a second).

    Asking again while a replay is pending changes nothing (202); once a replay has applied it (or found it
    applied), 409. The stored body is what is replayed: a request body is ignored."""
    store = dead_letters(api)
    request = store.request_replay(str(dead_letter_id), who.subject)
    if request is None:
        raise _missing(dead_letter_id)
    if not request.body_complete:
        raise ProblemError(409, "not-replayable", "Not replayable",
                           "only the start of this letter's body is kept (it is larger than the XML gate admits)")
    if request.state in IN_EFFECT:
        raise ProblemError(409, "replayed", "Already in effect",
                           f"a replay found this letter {request.state}: replaying it again would change nothing")
    letter = store.get(str(dead_letter_id), with_body=False)
    assert letter is not None  # letters are never deleted
    return answer(letter, 202, {"Location": f"/v1/dead-letters/{dead_letter_id}"})


def _missing(dead_letter_id: UUID) -> ProblemError:
    return ProblemError(404, "not-found", "No such dead letter", f"no dead letter {dead_letter_id}")

