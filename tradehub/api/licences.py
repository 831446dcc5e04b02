"""/v1/licences: the licence registry (docs/licences.md): issue, list, read with the ledger, revoke, suspend,
reinstate.

- Issuing is for an admin, or an officer of the issuing agency; the hub signs the licence with the issuer's key
  (the body carries no signature: a licence that arrives signed by its issuer comes by import or over the
  broker).
- Reading: admins and officers read every licence, a trader those its party holds; any other licence answers
  404 exactly as an unknown number does (tradehub/visibility.py), so numbers cannot be probed.
- One licence is read from the store itself (`Declarations.licence_with_ledger`): current at once, with its
  ledger. Lists come from the licences view (projections/licences.py), a few milliseconds behind the log.

A number is unique per issuer only: where two issuers use it, `?issuer=` names the one meant (409 without).
Numbers may hold a `/`, so the routes take the rest of the path as the number.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, BaseModel, Field

from hub.declarations import (
    ISSUERS,
    LICENCE_TYPES,
    FieldError,
    InvalidLicence,
    Licence,
    LicenceAmbiguous,
    LicenceNotFound,
)
from hub.declarations.documents import validate_licence
from hub.declarations.licence import STATUSES, plain
from hub.declarations.values import text
from projections.licences import licences_view
from projections.status_board import InvalidQuery
from tradehub import visibility
from tradehub.auth import Caller
from tradehub.bootstrap import Hub

from .common import ApiState, Authenticated, State, answer, envelope, json_body
from .problems import ProblemError, documented
from .schemas import Strict

router = APIRouter(tags=["licences"])

Status = Literal[(*STATUSES, "not_yet_valid")]  # type: ignore[valid-type]


class LicenceRequest(Strict):
    """A licence to issue: what the issuer's signature covers. The hub signs it; a `signature` is refused."""

    number: str = Field(max_length=35, description="unique per issuer")
    type: Literal[LICENCE_TYPES]  # type: ignore[valid-type]
    issuer: Literal[ISSUERS] = Field(  # type: ignore[valid-type]
        description="an agency, commerce (MOFCOM import and export licences) or cnca (CCC certificates); an "
                    "officer issues for its own agency only")
    holder: str = Field(description="the holder's USCC: the declarant or the consignee of declarations citing it")
    hs_scope: list[str] = Field(min_length=1, max_length=100,
                                description="HS prefixes (2, 4, 6, 8 or 10 digits) a cited item's code must start with")
    quantity: str = Field(description="a decimal string, in `unit`", examples=["12500.5"])
    unit: str = Field(description="a UN/ECE Recommendation 20 code: GRM, KGM and TNE convert into each other, any "
                                  "other unit only to itself", examples=["KGM", "H87"])
    valid_from: date
    valid_to: date


class LicenceSignature(BaseModel):
    format: Literal["jws", "xmldsig"]
    key: str | None = Field(description="the SHA-256 fingerprint of the issuer's certificate that signed it")


class LedgerEntry(BaseModel):
    time: str
    kind: Literal["reserved", "returned", "consumed"] = Field(
        description="reserved: the declaration version holds `quantity` (replacing its earlier reservation); "
                    "returned: withdrawn, rejected or amended away; consumed: released")
    declaration_id: str
    declaration_version: int
    quantity: str = Field(description="in the licence's unit")
    unit: str
    reason: str


class Standing(BaseModel):
    by: str
    reason: str
    at: str


class LicenceResource(BaseModel):
    number: str
    type: str
    issuer: str
    holder: str
    hs_scope: list[str]
    quantity: str
    unit: str
    valid_from: str
    valid_to: str
    status: Status = Field(description="on today's date (UTC): expired and not_yet_valid follow from the dates")
    remaining: str = Field(description="quantity − reserved − consumed: what declarations may still cite")
    reserved: str
    consumed: str
    signature: LicenceSignature
    source: Literal["api", "import", "broker"]
    issued_by: str
    issued_at: str
    suspended: Standing | None
    revoked: Standing | None
    version: int
    ledger: list[LedgerEntry] = Field(description="oldest first")


class LicenceSummary(BaseModel):
    number: str
    issuer: str
    type: str
    holder: str
    hs_scope: list[str]
    quantity: str
    unit: str
    valid_from: str
    valid_to: str
    status: Status  # type: ignore[valid-type]
    remaining: str
    reserved: str
    consumed: str
    issued_at: str
    href: str


class LicencePage(BaseModel):
    items: list[LicenceSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class LicenceAction(Strict):
    # Free text kept in the licence's log and shown to its holder: one line, no control characters.
    reason: Annotated[str, AfterValidator(lambda value: text(value, 512))] = Field(min_length=1, max_length=512)


_LICENCE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": LicenceRequest.model_json_schema()}}}}
Issuer = Annotated[Literal[ISSUERS] | None, Query(description="needed where several issuers use the number")]  # type: ignore[valid-type]
NO_SIGNATURE = ("the hub signs the licences issued through the API with the issuer's key: send none (a licence "
                "signed by its issuer comes in with `tradehub licences import` or over the broker)")


@router.post("/v1/licences", status_code=201, response_model=LicenceResource,
             responses={200: {"model": LicenceResource, "description": "This licence was already issued"},
                        **documented(400, 401, 403, 409, 413, 422)},
             openapi_extra=_LICENCE_BODY)
async def issue(request: Request, api: State, who: Authenticated) -> Response:
    """Issue a licence, signed by the hub for its issuer (admins; officers for their own agency). The same
    licence again answers 200; other content under the same issuer and number, 409."""
    if who.role not in ("admin", "officer"):
        raise ProblemError(403, "forbidden", "Not an issuer", "licences are issued by admins and agency officers")
    raw = await json_body(request)
    issuer = raw.get("issuer") if isinstance(raw, dict) else None
    if isinstance(issuer, str) and not visibility.may_issue_licence(who, issuer):  # else validation names it
        raise ProblemError(403, "forbidden", "Not your agency's licence",
                           f"an officer of {who.agency} issues {who.agency}'s licences only")
    if isinstance(raw, dict) and "signature" in raw:
        raise InvalidLicence(signature_refused(raw))  # 422 (errors.py), as every InvalidLicence
    issuance = await api.offload(api.hub.declarations.issue_licence, raw, who.subject, source="api")
    licence = issuance.licence
    ledger = [] if issuance.created else (await api.offload(with_ledger, api.hub, licence.number, licence.issuer))[1]
    return answer(resource(licence, ledger, api.hub.declarations.today()), 201 if issuance.created else 200,
                  {"Location": licence_href(licence.number, licence.issuer)})


@router.get("/v1/licences", response_model=LicencePage, responses=documented(401, 422))
def list_(
    api: State,
    who: Authenticated,
    holder: Annotated[str | None, Query(max_length=18, description="a USCC; a trader sees its own only")] = None,
    number: Annotated[str | None, Query(max_length=35)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Licences the caller may see, by number then issuer, from the licences view; paginated."""
    try:
        items, following = listed(api.hub, who, holder=holder, number=number, limit=limit, cursor=cursor)
    except InvalidQuery as error:
        raise ProblemError(422, "invalid-request", "Invalid query",
                           errors=[{"path": f"query.{error.field}", "message": str(error)}]) from None
    return answer({"items": items, "next_cursor": following})


@router.get("/v1/licences/{number:path}", response_model=LicenceResource, responses=documented(401, 404, 409, 422))
def read(number: str, api: State, who: Authenticated, issuer: Issuer = None) -> Response:
    """One licence as stored now: its status today, remaining quantity and ledger."""
    licence, ledger = seen_licence(api.hub, who, number, issuer)
    return answer(resource(licence, ledger, api.hub.declarations.today()))


@router.post("/v1/licences/{number:path}/revocation", response_model=LicenceResource,
             responses=documented(400, 401, 403, 404, 409, 413, 422))
async def revoke(number: str, request: Request, api: State, who: Authenticated, issuer: Issuer = None) -> Response:
    """Revoke the licence for good: every later citation is refused (admins; officers of the issuer)."""
    return await _act(api, who, request, number, issuer, api.hub.declarations.revoke_licence)


@router.post("/v1/licences/{number:path}/suspension", response_model=LicenceResource,
             responses=documented(400, 401, 403, 404, 409, 413, 422))
async def suspend(number: str, request: Request, api: State, who: Authenticated, issuer: Issuer = None) -> Response:
    """Suspend the licence until it is reinstated: citations are refused meanwhile."""
    return await _act(api, who, request, number, issuer, api.hub.declarations.suspend_licence)


@router.post("/v1/licences/{number:path}/reinstatement", response_model=LicenceResource,
             responses=documented(400, 401, 403, 404, 409, 413, 422))
async def reinstate(number: str, request: Request, api: State, who: Authenticated,
                    issuer: Issuer = None) -> Response:
    """Lift a suspension (a revoked licence stays revoked: 409)."""
    return await _act(api, who, request, number, issuer, api.hub.declarations.reinstate_licence)


async def _act(api: ApiState, who: Caller, request: Request, number: str, issuer: str | None, command: Any) -> Response:
    body = envelope(LicenceAction, await json_body(request))
    licence, _ = await api.offload(seen_licence, api.hub, who, number, issuer)  # 404 first: a hidden one stays hidden
    if not visibility.may_issue_licence(who, licence.issuer):
        raise ProblemError(403, "forbidden", "Not your agency's licence",
                           f"only an admin or an officer of {licence.issuer} may change licence {licence.number}")
    await api.offload(command, licence.number, licence.issuer, who.subject, body.reason)
    licence, ledger = await api.offload(with_ledger, api.hub, licence.number, licence.issuer)
    return answer(resource(licence, ledger, api.hub.declarations.today()))


# ---- reading, as the caller may -----------------------------------------------------------------

def seen_licence(hub: Hub, who: Caller, number: str, issuer: str | None) -> tuple[Licence, list[dict[str, Any]]]:
    """The licence and its ledger, if the caller may see it; else 404 as for an unknown number. A number several
    issuers use, without `issuer`: the one the caller may see, or 409 naming those it may."""
    try:
        licence, ledger = with_ledger(hub, number, issuer)
    except LicenceNotFound:
        raise not_found(number, issuer) from None
    except LicenceAmbiguous:
        visible = [found.issuer for found in _each_issuer(hub, number) if visibility.may_see_licence(who, found.holder)]
        if not visible:
            raise not_found(number, issuer) from None
        if len(visible) > 1:
            raise ProblemError(409, "ambiguous-licence", "Several issuers use this number",
                               f"licence number {number} is used by {' and '.join(visible)}: pass `issuer` to name "
                               "the one you mean", issuers=visible) from None
        licence, ledger = with_ledger(hub, number, visible[0])
    if not visibility.may_see_licence(who, licence.holder):
        raise not_found(number, issuer)
    return licence, ledger


def with_ledger(hub: Hub, number: str, issuer: str | None) -> tuple[Licence, list[dict[str, Any]]]:
    return hub.declarations.licence_with_ledger(number, issuer)


def _each_issuer(hub: Hub, number: str) -> list[Licence]:
    found = []
    for issuer in ISSUERS:
        try:
            found.append(hub.declarations.get_licence(number, issuer))
        except LicenceNotFound:
            pass
    return found


def not_found(number: str, issuer: str | None) -> ProblemError:
    """The same answer for an unknown licence and one the caller may not see."""
    return ProblemError(404, "not-found", "No such licence",
                        f"no licence {number[:40]}" + (f" of {issuer}" if issuer else ""))


def listed(hub: Hub, who: Caller, *, holder: str | None, number: str | None, limit: int,
           cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the licences the caller may see, and the cursor of the next page."""
    scoped = visibility.licence_holder(who, holder)
    if scoped == "":
        return [], None
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as error:
        raise InvalidQuery("cursor", str(error)) from None
    rows = licences_view(hub.views, holder=scoped, number=number, limit=limit + 1, after=after)
    today = hub.declarations.today()
    items = [summary(row, today) for row in rows[:limit]]
    following = encode_cursor(rows[limit - 1]["number"], rows[limit - 1]["issuer"]) if len(rows) > limit else None
    return items, following


def encode_cursor(number: str, issuer: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([number, issuer]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (number, issuer) a page starts after; ValueError if the cursor is not one of ours."""
    try:
        number, issuer = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError("not a page cursor from this API") from None
    if not isinstance(number, str) or issuer not in ISSUERS:
        raise ValueError("not a page cursor from this API")
    return number, issuer


# ---- shapes ---------------------------------------------------------------------------------------

def licence_href(number: str, issuer: str) -> str:
    return f"/v1/licences/{quote(number, safe='')}?issuer={issuer}"


def resource(licence: Licence, ledger: list[dict[str, Any]], today: date) -> dict[str, Any]:
    return {
        **licence.content(), "status": licence.status_on(today), "remaining": plain(licence.remaining),
        "reserved": plain(licence.reserved_total), "consumed": plain(licence.consumed_total),
        "signature": {"format": licence.signature.get("format"), "key": licence.signature.get("key")},
        "source": licence.source, "issued_by": licence.issued_by, "issued_at": licence.created_on.isoformat(),
        "suspended": licence.suspended, "revoked": licence.revoked, "version": licence.version, "ledger": ledger,
    }


def summary(row: dict[str, Any], today: date) -> dict[str, Any]:
    """A licence as the licences view lists it."""
    remaining = Decimal(row["quantity"]) - Decimal(row["reserved"]) - Decimal(row["consumed"])
    return {key: row[key] for key in ("number", "issuer", "type", "holder", "quantity", "unit", "valid_from",
                                      "valid_to", "reserved", "consumed", "issued_at")} | {
        "hs_scope": row["hs_scope"].split(), "status": row_status(row, today), "remaining": plain(remaining),
        "href": licence_href(row["number"], row["issuer"])}


def row_status(row: dict[str, Any], today: date) -> str:
    """`Licence.status_on`, for a row of the licences view."""
    day = today.isoformat()
    if row["revoked_at"]:
        return "revoked"
    if row["suspended_at"]:
        return "suspended"
    if day > row["valid_to"]:
        return "expired"
    if day < row["valid_from"]:
        return "not_yet_valid"
    return "valid"


def signature_refused(raw: dict[str, Any]) -> list[FieldError]:
    """A body with a `signature`: refused, with whatever else is wrong with it, in one answer."""
    errors = [FieldError("$.signature", NO_SIGNATURE)]
    try:
        validate_licence({key: value for key, value in raw.items() if key != "signature"})
    except InvalidLicence as error:
        errors += error.errors
    return errors

