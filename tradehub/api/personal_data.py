"""Personal data, for admins: who read whose (the access log), and erasure (docs/personal-data.md).

Both are the hub operator's, as dead letters and parked dispatch are: anyone but an admin gets 403, whether or
not what it names exists. The access log lists `PersonalDataRead`s from their view (projections/access_log.py),
oldest first; listing it is no read of personal data, since it names people by nothing but their list.
Erasure deletes a declaration's data key (`Declarations.erase_personal_data`): from then on every route, page,
message record and rebuild shows its people as erased.
"""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, BaseModel, Field

from hub.declarations import DeclarationNotFound, NothingToErase
from hub.declarations.values import text
from projections import access_log
from tradehub.auth import Caller

from .common import Authenticated, State, answer, envelope, json_body
from .problems import ProblemError, documented
from .schemas import Strict

router = APIRouter(tags=["personal data"])

REASON_LENGTH = 500
_CURSOR = re.compile(r"[0-9]{1,19}")


async def admin(who: Authenticated) -> Caller:
    if who.role != "admin":
        raise ProblemError(403, "forbidden", "Admins only",
                           "the access log and erasure of personal data are the hub operator's")
    return who


Admin = Annotated[Caller, Depends(admin)]


class PersonalDataReadResource(BaseModel):
    cursor: str = Field(description="pass as `after` to list the reads recorded after this one")
    id: UUID = Field(description="the read's own id in the log")
    declaration_id: str
    reader: str = Field(description="the caller's subject, e.g. officer:border", examples=["officer:border"])
    role: str = Field(description="trader, officer or admin")
    agency: str | None = Field(description="an officer's agency")
    party: str | None = Field(description="a trader's USCC")
    token_id: str | None = Field(description="the id of the token it read with (`tradehub token revoke` names it)")
    fields: list[str] = Field(description="the personal data shown: crew, passengers, master",
                              examples=[["crew", "passengers"]])
    messages: list[str] = Field(description="the message bodies it was shown in: fal5 (crew list), fal6 "
                                            "(passenger list), fal1 (the master's name)", examples=[["fal5"]])
    route: str = Field(description="where: the API route or the page, as its method and path template",
                       examples=["GET /v1/declarations/{declaration_id}"])
    time: str = Field(description="when it was recorded, ISO 8601 UTC")


class PersonalDataReadPage(BaseModel):
    items: list[PersonalDataReadResource] = Field(description="oldest first")
    next: str | None = Field(description="pass as `after` for the next page; null on the last")


class ErasureRequest(Strict):
    # Kept in the log with who erased and when: one line of text, no control characters.
    reason: Annotated[str, AfterValidator(lambda value: text(value, REASON_LENGTH))] = Field(
        min_length=1, max_length=REASON_LENGTH, description="why: the request, the retention rule, the case")


class Erasure(BaseModel):
    declaration_id: str
    erased: bool = Field(description="false: already erased; the other fields say when and by whom")
    erased_by: str
    erased_at: str
    reason: str
    messages: int = Field(description="recorded messages that named the people: the agencies keep theirs; the hub "
                                      "can no longer show or resend them")


@router.get("/v1/personal-data/reads", response_model=PersonalDataReadPage, responses=documented(401, 403, 404, 422))
def reads(
    api: State,
    _: Admin,
    declaration: Annotated[str | None, Query(max_length=36, description="only the reads of this declaration (id)")]
    = None,
    reader: Annotated[str | None, Query(max_length=100, description="only this reader's (its subject)")] = None,
    after: Annotated[str | None, Query(max_length=19, description="the cursor to list after; omitted: from the "
                                                                  "first read")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Who was shown personal data, of which declaration, which of it, where and when: oldest first (admins)."""
    if after is not None and (not _CURSOR.fullmatch(after) or int(after) > access_log.MAX_CURSOR):
        raise _invalid("query.after", f"must be a read's cursor (digits, at most {access_log.MAX_CURSOR})")
    declaration_id = None
    if declaration is not None:
        try:
            declaration_id = str(UUID(declaration))
        except ValueError:
            raise _invalid("query.declaration", "must be a declaration id (a UUID)") from None
        try:
            api.hub.declarations.get(declaration_id)
        except DeclarationNotFound:
            raise ProblemError(404, "not-found", "No such declaration", f"no declaration {declaration_id}") from None
    rows, following = access_log.reads(api.hub.views, declaration_id=declaration_id, reader=reader,
                                       after=int(after or 0), limit=limit)
    return answer({"items": [access_log.payload(row) for row in rows],
                   "next": None if following is None else str(following)})


@router.post("/v1/declarations/{declaration_id}/personal-data/erasure", response_model=Erasure,
             responses=documented(400, 401, 403, 404, 413, 422))
async def erase(declaration_id: str, request: Request, api: State, who: Admin) -> Response:
    """Erase the people a declaration names (admins): its data key is deleted, and from then on every route,
    page, message record and rebuild shows them as erased. Its lifecycle, statistics and history stay. Erasing
    again changes nothing (`erased`: false); a declaration that names no one is 422."""
    body = envelope(ErasureRequest, await json_body(request))
    try:
        declaration, erased = await api.offload(api.hub.declarations.erase_personal_data, declaration_id,
                                                who.subject, body.reason)
    except DeclarationNotFound:
        raise ProblemError(404, "not-found", "No such declaration", f"no declaration {declaration_id}") from None
    except NothingToErase as error:
        raise _invalid("path.declaration_id", str(error), "Nothing to erase") from None
    done = declaration.personal_data_erased
    return answer({"declaration_id": str(declaration.id), "erased": erased, "erased_by": done["by"],
                   "erased_at": done["at"], "reason": done["reason"], "messages": done["messages"]})


def _invalid(path: str, message: str, title: str = "Invalid request") -> ProblemError:
    return ProblemError(422, "invalid-request", title, errors=[{"path": path, "message": message}])
