"""/v1/declarations: declare, list, read, amend and withdraw, and each declaration's history and messages.

Declarations are read from the event store (read-your-writes); lists come
from the status board projection, a few milliseconds behind the log. What a
caller may see of them is tradehub/visibility.py's to decide.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from hub.declarations import AGENCIES, Declaration, InvalidDeclaration, Submission
from hub.declarations.documents import KINDS
from hub.declarations.domainmodel import OVERALL_STATUSES, IdentityChanged
from projections.status_board import Filters, InvalidQuery
from tradehub import spreadsheets, visibility
from tradehub.auth import Caller
from tradehub.spreadsheets import SpreadsheetInvalid
from tradehub.visibility import Seen

from .common import ApiState, Authenticated, State, answer, current_caller, envelope, invalid, json_body, state_of
from .problems import ProblemError, documented
from .schemas import (
    AgencyMessages,
    AmendmentRequest,
    DeclarationPage,
    DeclarationResource,
    History,
    WithdrawalRequest,
)

router = APIRouter(tags=["declarations"])

# The history shows the documents of its latest so many events that carry one (the current version's and the one
# it replaced); the others keep their `content_hash`. A vessel call of 4 MiB amended 200 times would otherwise
# answer with 800 MiB (docs/long-streams.md).
HISTORY_DOCUMENTS = 2

_DECLARATION_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Declaration"}},
    # A workbook of `tradehub template` (docs/spreadsheets.md); its 422 errors name each `cell` beside the `path`.
    spreadsheets.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
}}}


@router.post("/v1/declarations", status_code=201, response_model=DeclarationResource,
             responses={200: {"model": DeclarationResource, "description": "Already declared with this content"},
                        **documented(400, 401, 403, 409, 413, 422)},
             openapi_extra=_DECLARATION_BODY)
async def submit(request: Request) -> Response:
    """Declare once. Repeating the same (declarant, reference) with the same content returns 200."""
    api = state_of(request)  # neither is a dependency: this is the hot path
    who = await current_caller(request)
    on_behalf_of = visibility.declaring_for(who)
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() == spreadsheets.MEDIA_TYPE:
        submission = await _submit_workbook(api, await request.body(), on_behalf_of)
    else:
        raw = await json_body(request)
        # Validation is CPU work: done here; only the save leaves the loop, batched with others.
        submission = await api.hub.declarations.submit_on_loop(raw, api.committer, api.offload,
                                                               on_behalf_of=on_behalf_of)
    declaration = submission.declaration
    # A new declaration is not held yet, so its resource reads nothing, and shows only what the caller sent; one
    # declared before may be held, and shows it as stored (amended since, say): a read of what it shows.
    body = (changed(api, who, declaration) if submission.created
            else await api.offload(changed, api, who, declaration, "POST /v1/declarations"))
    return answer(body, 201 if submission.created else 200, {"Location": f"/v1/declarations/{declaration.id}"})


async def _submit_workbook(api: ApiState, data: bytes, on_behalf_of: str | None) -> Submission:
    """A declaration as a spreadsheet, submitted as its JSON would be. Reading thousands of rows is CPU work, so
    all of it runs on a thread; every 422 error names its cell as well as its JSON path, and nothing is stored."""
    try:
        workbook = await api.offload(spreadsheets.read_workbook, data)
        if workbook.errors:
            await api.offload(workbook.validated)  # raises: the unreadable cells, and the hub's errors beside them
        try:
            return await api.offload(api.hub.declarations.submit, workbook.document, on_behalf_of=on_behalf_of)
        except InvalidDeclaration as error:
            raise workbook.invalid(error) from None
    except SpreadsheetInvalid as error:
        raise ProblemError(422, "invalid-declaration", "Invalid declaration",
                           f"{len(error.errors)} cell(s) failed", errors=[e._asdict() for e in error.errors]) from None


@router.get("/v1/declarations", response_model=DeclarationPage, responses=documented(401, 422))
def list_(
    api: State,
    who: Authenticated,
    status: Annotated[Literal[OVERALL_STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
    kind: Annotated[Literal[KINDS] | None, Query()] = None,  # type: ignore[valid-type]
    agency: Annotated[Literal[AGENCIES] | None, Query(description="routed to this agency")] = None,  # type: ignore[valid-type]
    declarant: Annotated[str | None, Query(max_length=18)] = None,
    reference: Annotated[str | None, Query(max_length=35)] = None,
    submitted_from: Annotated[datetime | None, Query(description="inclusive")] = None,
    submitted_to: Annotated[datetime | None, Query(description="exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Declarations the caller may see, newest first, filtered and paginated."""
    filters = Filters(status=status, kind=kind, agency=agency, declarant=declarant, reference=reference,
                      submitted_from=submitted_from, submitted_to=submitted_to)
    try:
        items, following = api.see.listed(who, filters, limit=limit, after=cursor)
    except InvalidQuery as error:
        raise ProblemError(422, "invalid-request", "Invalid query",
                           errors=[{"path": f"query.{error.field}", "message": str(error)}]) from None
    return answer({"items": items, "next_cursor": following})


@router.get("/v1/declarations/{declaration_id}", response_model=DeclarationResource,
            responses=documented(401, 404))
def get(declaration_id: str, api: State, who: Authenticated) -> Response:
    """One declaration, with its status at every agency."""
    seen = api.see.declaration(who, declaration_id, history=False)
    body = resource(seen)
    api.see.record(who, seen.declaration.id, "GET /v1/declarations/{declaration_id}", document=body["document"])
    return answer(body)


@router.post("/v1/declarations/{declaration_id}/amendments", response_model=DeclarationResource,
             responses=documented(400, 401, 403, 404, 409, 413, 422))
async def amend(declaration_id: str, request: Request, api: State, who: Authenticated) -> Response:
    """Replace the document; `expected_version` must be the current version."""
    body = envelope(AmendmentRequest, await json_body(request))
    await api.offload(api.see.to_change, who, declaration_id)
    try:
        declaration = await api.offload(
            api.hub.declarations.amend, declaration_id, body.expected_version, body.declaration)
    except InvalidDeclaration as error:
        raise invalid(error, prefix="$.declaration") from None
    except IdentityChanged as error:
        path = "$.declaration.declarant.id" if error.field == "declarant" else f"$.declaration.{error.field}"
        raise ProblemError(422, "invalid-declaration", "Invalid declaration",
                           errors=[{"path": path, "message": str(error)}]) from None
    return answer(await api.offload(changed, api, who, declaration))


@router.post("/v1/declarations/{declaration_id}/withdrawal", response_model=DeclarationResource,
             responses=documented(400, 401, 403, 404, 409, 413, 422))
async def withdraw(declaration_id: str, request: Request, api: State, who: Authenticated) -> Response:
    """Withdraw the declaration; the agencies get cancellations."""
    body = envelope(WithdrawalRequest, await json_body(request))
    await api.offload(api.see.to_change, who, declaration_id)
    declaration = await api.offload(
        api.hub.declarations.withdraw, declaration_id, body.reason, body.expected_version)
    return answer(await api.offload(changed, api, who, declaration,
                                    "POST /v1/declarations/{declaration_id}/withdrawal"))


@router.get("/v1/declarations/{declaration_id}/history", response_model=History, responses=documented(401, 404))
def history(declaration_id: str, api: State, who: Authenticated) -> Response:
    """Every event of the declaration, oldest first (a trader's without their enforcement details); only the
    latest two that carry a document keep it, the others their content_hash."""
    seen = api.see.declaration(who, declaration_id)
    events = latest_documents(seen.history)
    api.see.record(who, seen.declaration.id, "GET /v1/declarations/{declaration_id}/history", history=events)
    return answer({"declaration_id": seen.declaration.id, "events": events})


@router.get("/v1/declarations/{declaration_id}/messages", response_model=AgencyMessages,
            responses=documented(401, 404))
def messages(declaration_id: str, api: State, who: Authenticated) -> Response:
    """The XML messages exchanged with the agencies, oldest first; an officer's agency's only, no alert's for a trader."""
    seen = api.see.declaration(who, declaration_id)
    shown = api.see.messages(seen)
    api.see.record(who, seen.declaration.id, "GET /v1/declarations/{declaration_id}/messages", messages=shown)
    return answer({"declaration_id": seen.declaration.id, "messages": shown})


def latest_documents(events: list[dict[str, Any]], keep: int = HISTORY_DOCUMENTS) -> list[dict[str, Any]]:
    """The history with the documents of its latest `keep` events that carry one, the others' left out."""
    carrying = [n for n, event in enumerate(events) if "document" in event]
    older = set(carrying[:max(len(carrying) - keep, 0)])
    return [{key: value for key, value in event.items() if key != "document"} if n in older else event
            for n, event in enumerate(events)]


def changed(api: ApiState, who: Caller, declaration: Declaration, read: str = "") -> dict[str, Any]:
    """The resource of a declaration the caller has just submitted or changed (blocks if it is held: since when
    is in its history). `read` names the route when the answer shows what the caller did not just send (after
    a withdrawal, a repeated submission): the access log records what of the people on board it shows."""
    body = resource(api.see.seen(who, declaration))
    if read:
        api.see.record(who, declaration.id, read, document=body["document"])
    return body


def resource(seen: Seen) -> dict[str, Any]:
    """The declaration as the caller may see it."""
    declaration = seen.declaration
    return {
        "id": declaration.id, "reference": declaration.reference, "kind": declaration.kind,
        "declarant": declaration.declarant, "version": declaration.version, "status": declaration.status,
        "agencies": {name: {key: state[key] for key in ("status", "routed", "reason", "code", "text",
                                                         "updated_at")}
                     for name, state in declaration.agencies.items()},
        "holds": seen.holds, "hold": seen.hold,
        "submitted_at": declaration.created_on,
        "updated_at": declaration.modified_on, "document": seen.document,
        "dispatch_failures": declaration.dispatch_failures,
    }
