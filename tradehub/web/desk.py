"""The trader's desk: declaring, copying, amending and withdrawing on web pages, for trader tokens.

The same sign-in, Content-Security-Policy and same-site checks as the officer pages (tradehub/web/pages.py), and
the same commands and rules as the API: a declaration is the token's party's (the form has no declarant id),
an amendment carries the version the trader saw, and every refusal is shown beside the field it names. A
declaration arrives one of three ways, all through `Declarations.submit`/`amend`:

- the goods form (tradehub/web/goods_form.py), for the common fields of a goods declaration;
- a JSON document typed or pasted into the page;
- an uploaded file: a JSON document or a spreadsheet (tradehub/spreadsheets.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from hub.declarations import Conflict, DeclarationError, InvalidDeclaration, NotDeclarant, VersionConflict
from hub.declarations.documents import FieldError
from hub.declarations.domainmodel import IdentityChanged
from messaging.webhooks import MAX_URL
from messaging.webhooks import Refused as WebhookRefused
from projections import notifications as feed
from projections.status_board import Filters, InvalidQuery
from projections.subscriptions import MAX_PER_PARTY, InvalidCursor, LimitReached, Subscriptions
from tradehub import spreadsheets, visibility
from tradehub.api import subscriptions as subscriptions_api
from tradehub.auth import Caller
from tradehub.visibility import Seen

from . import goods_form
from .pages import PAGE_SIZE, PageError, Pages, SignedIn, Site, refused_page, same_site, see_other

router = APIRouter(include_in_schema=False)

JSON_CHARACTERS = 1024 * 1024  # a JSON document typed into the page
# A whole post is refused past TRADEHUB_MAX_BODY_BYTES (413, before anything is read); beside a file it carries
# the hidden base document and the form's fields, so a file may have what is left.
FORM_ROOM = goods_form.MAX_BASE_BYTES + 128 * 1024
MORE_ROWS = "more"  # the form's "more item rows" button: the same form again, longer, nothing declared
EXTRA_ROWS = 5


def trader(who: SignedIn) -> Caller:
    """The caller, if it declares for a party (a trader token); officers and admins have the board instead."""
    if who.role != "trader" or not who.party:
        raise PageError(403, "For traders", "The desk is where traders declare. Officers and administrators "
                                            "read declarations on the board.", who)
    return who


Trader = Annotated[Caller, Depends(trader)]


class Refused(Exception):
    """What the trader sent cannot become a document: shown at the top of the form."""


@dataclass
class Sent:
    """What a form post declares: the raw document, the goods form's rows of its items and the base it was
    filled over (the form's way), or the workbook it was read from (a spreadsheet upload)."""

    raw: Any
    rows: dict[int, int] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    workbook: spreadsheets.Workbook | None = None

    def refusal(self, error: InvalidDeclaration) -> list[FieldError]:
        """The hub's errors, each naming its cell too when the document came from a spreadsheet."""
        if self.workbook is None:
            return error.errors
        return [FieldError(e.cell, f"{e.message} ({e.path})") for e in self.workbook.invalid(error).errors]


@router.get("/desk")
def desk(who: Trader, pages: Site, after: str = "") -> Response:
    """The trader's declarations, newest first, each with what may be done with it."""
    try:
        items, following = pages.see.listed(who, Filters(), limit=PAGE_SIZE, after=after[:200] or None)
    except InvalidQuery:
        items, following = [], None
    return pages.render("desk.html", who, items=items, older=f"/desk?after={following}" if following else None)


@router.get("/desk/new")
def new_declaration(who: Trader, pages: Site, copy: str = "") -> Response:
    """An empty form, or with `copy`, one filled with that declaration's document except its reference."""
    base: dict[str, Any] = {}
    if copy:
        seen = _seen(pages, who, copy[:100])
        base = dict(seen.document)
        base.pop("reference", None)
    page = _form(pages, who, base, action="/desk/new", title="New declaration", copied_from=copy[:100])
    if copy:
        pages.see.record(who, seen.declaration.id, "GET /desk/new?copy={declaration_id}", document=base)
    return page


@router.post("/desk/new")
async def submit(request: Request, who: Trader, pages: Site) -> Response:
    form, upload = await _posted(request, who)
    if form.get("way") == MORE_ROWS:
        return _form(pages, who, _base_or_nothing(form), action="/desk/new", title="New declaration", form=form)
    try:
        sent = await _document_from(pages, form, upload, who)
    except Refused as refused:
        return _form(pages, who, _base_or_nothing(form), action="/desk/new", title="New declaration", form=form,
                     problems=[str(refused)], status=422)
    try:
        submission = await run_in_threadpool(pages.hub.declarations.submit, sent.raw, on_behalf_of=who.party)
    except InvalidDeclaration as error:
        return _refused(pages, who, form, sent, sent.refusal(error), action="/desk/new", title="New declaration")
    except Conflict as error:  # the reference is already another declaration of this party
        return _refused(pages, who, form, sent, [FieldError("$.reference", str(error))],
                        action="/desk/new", title="New declaration")
    except NotDeclarant:
        return _refused(pages, who, form, sent,
                        [FieldError("$.declarant.id", f"the document declares for another party; you declare "
                                                      f"for {who.party}")], action="/desk/new", title="New declaration")
    return see_other(f"/declarations/{submission.declaration.id}")


@router.get("/desk/declarations/{declaration_id}/amend")
def amend_form(declaration_id: str, who: Trader, pages: Site) -> Response:
    declaration = _changeable(pages, who, declaration_id)
    page = _form(pages, who, declaration.document, action=f"/desk/declarations/{declaration.id}/amend",
                 title=f"Amend {declaration.reference}", version=declaration.version, kind=declaration.kind)
    pages.see.record(who, declaration.id, "GET /desk/declarations/{declaration_id}/amend",
                     document=declaration.document)
    return page


@router.post("/desk/declarations/{declaration_id}/amend")
async def amend(declaration_id: str, request: Request, who: Trader, pages: Site) -> Response:
    form, upload = await _posted(request, who)
    declaration = await run_in_threadpool(_changeable, pages, who, declaration_id)
    action, title = f"/desk/declarations/{declaration.id}/amend", f"Amend {declaration.reference}"
    version = _version(form)
    if form.get("way") == MORE_ROWS:
        return _form(pages, who, declaration.document, action=action, title=title, form=form,
                     version=version, kind=declaration.kind)
    try:
        sent = await _document_from(pages, form, upload, who)
        if version is None:
            raise Refused("The form carries no version; reload it and make the change again.")
    except Refused as refused:  # the version the trader saw, never the current one under its stale values
        return _form(pages, who, declaration.document, action=action, title=title, form=form,
                     version=version, problems=[str(refused)], status=422, kind=declaration.kind)
    try:
        await run_in_threadpool(pages.hub.declarations.amend, declaration.id, version, sent.raw)
    except InvalidDeclaration as error:
        return _refused(pages, who, form, sent, sent.refusal(error), action=action, title=title, version=version,
                        base=declaration.document)
    except IdentityChanged as error:
        return _refused(pages, who, form, sent, [FieldError(f"$.{error.field}", str(error))],
                        action=action, title=title, version=version, base=declaration.document)
    except VersionConflict as error:
        return _form(pages, who, declaration.document, action=action, title=title, form=form, status=409,
                     version=version, kind=declaration.kind,
                     problems=[f"The declaration changed while you were editing it: it is at version "
                               f"{error.actual} now, you amended version {error.expected}. Open it again to see "
                               f"what changed, then amend that."])
    except DeclarationError as error:
        raise PageError(409, "Cannot be amended", str(error), who) from None
    return see_other(f"/declarations/{declaration.id}")


@router.post("/desk/declarations/{declaration_id}/withdrawal")
async def withdraw(declaration_id: str, request: Request, who: Trader, pages: Site) -> Response:
    form, _ = await _posted(request, who)
    declaration = await run_in_threadpool(_changeable, pages, who, declaration_id)
    version = _version(form)
    if version is None:
        raise PageError(400, "No version", "The withdrawal carries no version: open the declaration again and "
                                           "withdraw the version you see.", who)
    reason = form.get("reason", "").strip()[:200] or "withdrawn by the declarant"
    try:
        await run_in_threadpool(pages.hub.declarations.withdraw, declaration.id, reason, version)
    except VersionConflict as error:
        raise PageError(409, "Changed meanwhile", f"The declaration is at version {error.actual} now; you asked "
                                                  f"to withdraw version {error.expected}. Open it again first.",
                        who) from None
    except DeclarationError as error:
        raise PageError(409, "Cannot be withdrawn", str(error), who) from None
    return see_other(f"/declarations/{declaration.id}")


# ---- notifications (docs/api.md, "Notifications") ---------------------------------------------------------------

@router.get("/desk/notifications")
def notifications(who: Trader, pages: Site, before: str = "") -> Response:
    """The party's notifications, newest first; new ones appear at the top as they come (static/live.js)."""
    cursor = int(before) if before.isdigit() and len(before) < 19 else None
    rows, older = feed.newest(pages.hub.views, limit=PAGE_SIZE, party=who.party, agency=None, before=cursor)
    return pages.render("desk_notifications.html", who, items=[feed.payload(row) for row in rows],
                        older=f"/desk/notifications?before={older}" if older else None,
                        back_to_newest=cursor is not None)


# ---- webhooks (docs/webhooks.md) -----------------------------------------------------------------------------

@router.get("/desk/webhooks")
def webhooks(who: Trader, pages: Site) -> Response:
    return _webhooks_page(pages, who)


@router.post("/desk/webhooks")
async def register_webhook(request: Request, who: Trader, pages: Site) -> Response:
    """Register an endpoint; the page that answers shows its signing secret, this once (it is never shown again,
    so it is not behind a redirect a reload would lose)."""
    form, _ = await _posted(request, who)
    url = form.get("url", "").strip()
    events = [name for name in feed.TYPES.values() if form.get(f"event.{name}")]
    values = {"url": url, "events": events}
    if not events:
        return _webhooks_page(pages, who, 422, values=values, beside={"events": "choose at least one"})
    if len(url) > MAX_URL:
        return _webhooks_page(pages, who, 422, values=values, beside={"url": f"at most {MAX_URL} characters"})
    try:
        made = await run_in_threadpool(subscriptions_api.register, pages.hub, who.party, url, events)
    except WebhookRefused as error:
        return _webhooks_page(pages, who, 422, values=values, beside={"url": f"the URL {error}"})
    except LimitReached:
        return _webhooks_page(pages, who, 409, values=values,
                              problem=f"You have {MAX_PER_PARTY} endpoints already; delete one first.")
    return _webhooks_page(pages, who, 201, created=made)


@router.post("/desk/webhooks/{ident}/deletion")
async def delete_webhook(ident: str, request: Request, who: Trader, pages: Site) -> Response:
    await _posted(request, who)
    if not await run_in_threadpool(_subscriptions(pages).delete, who.party or "", ident[:64]):
        raise PageError(404, "Not found", "You have no such webhook endpoint.", who)
    return see_other("/desk/webhooks")


@router.get("/desk/webhooks/{ident}")
def webhook_deliveries(ident: str, who: Trader, pages: Site, after: str = "") -> Response:
    """One endpoint and its delivery log, oldest attempt first."""
    store = _subscriptions(pages)
    found = store.get(who.party or "", ident[:64])
    if found is None:
        raise PageError(404, "Not found", "You have no such webhook endpoint.", who)
    try:
        attempts, following = store.attempts(who.party or "", found["id"], after=after[:400] or None,
                                             limit=PAGE_SIZE) or ([], None)
    except InvalidCursor:
        attempts, following = [], None
    return pages.render("desk_webhook.html", who, subscription=found, attempts=attempts,
                        older=f"/desk/webhooks/{found['id']}?after={following}" if following else None)


def _subscriptions(pages: Pages) -> Subscriptions:
    return Subscriptions(pages.hub.views, pages.hub.settings.cipher_key)


def _webhooks_page(pages: Pages, who: Caller, status: int = 200, *, values: dict[str, Any] | None = None,
                   beside: dict[str, str] | None = None, problem: str = "",
                   created: dict[str, Any] | None = None) -> Response:
    return pages.render("desk_webhooks.html", who, status, items=_subscriptions(pages).listed(who.party or ""),
                        values=values or {"url": "", "events": list(feed.TYPES.values())}, beside=beside or {},
                        problem=problem, created=created, event_types=list(feed.TYPES.values()),
                        limit=MAX_PER_PARTY)


# ---- what the pages share ------------------------------------------------------------------------------------

async def _posted(request: Request, who: Caller) -> tuple[dict[str, str], UploadFile | None]:
    """The posted form's text fields and its uploaded file (if one was chosen), after the same-site check."""
    if not same_site(request):
        raise PageError(403, "Refused", "The desk's forms are accepted from this site's own pages only.", who)
    try:
        posted = await request.form(max_files=1, max_fields=goods_form.MAX_FIELDS,
                                    max_part_size=request.app.state.pages.hub.settings.max_body_bytes)
    except MultiPartException as error:  # too many fields or files, a part too large, bad framing
        raise PageError(400, "Form refused", f"The form could not be read: {error.message}", who) from None
    fields = {key: value for key, value in posted.items() if isinstance(value, str)}
    upload = posted.get("upload")
    return fields, upload if isinstance(upload, UploadFile) and upload.filename else None


async def _document_from(pages: Pages, form: dict[str, str], upload: UploadFile | None, who: Caller) -> Sent:
    """What the trader sent, the way it chose."""
    way = form.get("way", "form")
    if way == "file":
        if upload is None:
            raise Refused("Choose a file to upload: a JSON document or a spreadsheet (.xlsx).")
        return await _uploaded(upload, upload_limit(pages))
    if way == "json":
        text = form.get("json", "")
        if len(text) > JSON_CHARACTERS:
            raise Refused(f"The JSON document is longer than {JSON_CHARACTERS:,} characters; upload it as a file.")
        return Sent(_parsed(text, "The JSON document"))
    try:
        base = goods_form.base_of(form.get("base", ""))
    except goods_form.BaseRefused as refused:
        raise Refused(str(refused)) from None
    document, rows = goods_form.document_of(form, base, who.party or "")
    return Sent(document, rows, base)


def upload_limit(pages: Pages) -> int:
    """The largest file the desk takes: what a post may carry (TRADEHUB_MAX_BODY_BYTES) less the form's room."""
    return max(64 * 1024, pages.hub.settings.max_body_bytes - FORM_ROOM)


async def _uploaded(upload: UploadFile, limit: int) -> Sent:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{upload.filename} is larger than {limit:,} bytes, the most the desk takes; the API "
                      f"(POST /v1/declarations) takes a declaration of up to the hub's body limit.")
    if data[:2] != b"PK":  # not a zip container, so not an .xlsx: JSON
        return Sent(_parsed(data, upload.filename or "The file"))
    try:
        workbook = await run_in_threadpool(spreadsheets.read_workbook, data)
        if workbook.errors:
            await run_in_threadpool(workbook.validated)  # raises: the unreadable cells, with the hub's errors
    except spreadsheets.SpreadsheetInvalid as invalid:
        raise Refused(f"{upload.filename}: " + "; ".join(f"{e.cell}: {e.message}" for e in invalid.errors)) from None
    return Sent(workbook.document, workbook=workbook)


def _parsed(data: str | bytes, what: str) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise Refused(f"{what} is neither UTF-8 JSON nor a spreadsheet (.xlsx): byte {error.start} "
                          f"is not UTF-8.") from None
    try:
        return json.loads(data)
    except ValueError as error:
        raise Refused(f"{what} is not JSON: {error}") from None


def _base_or_nothing(form: dict[str, str]) -> dict[str, Any]:
    try:
        return goods_form.base_of(form.get("base", ""))
    except goods_form.BaseRefused:
        return {}


def _version(form: dict[str, str]) -> int | None:
    text = form.get("version", "")
    return int(text) if text.isdigit() and len(text) < 10 else None


def _seen(pages: Pages, who: Caller, declaration_id: str) -> Seen:
    try:
        return pages.see.declaration(who, declaration_id, history=False)
    except visibility.Refused as refused:
        raise refused_page(refused, who, declaration_id) from None


def _changeable(pages: Pages, who: Caller, declaration_id: str) -> Any:
    try:
        return pages.see.to_change(who, declaration_id)
    except visibility.Refused as refused:
        raise refused_page(refused, who, declaration_id) from None


def _refused(pages: Pages, who: Caller, form: dict[str, str], sent: Sent, errors: list[FieldError], *,
             action: str, title: str, version: int | None = None, base: dict[str, Any] | None = None) -> Response:
    """The form again, as the trader filled it, with each of the hub's errors beside its field. The goods form
    is drawn over the base it was filled over; after a JSON or file post, over `base` (what is amended), so
    that declaring from the form next keeps what the form does not show."""
    if form.get("way", "form") == "form":
        beside, rest = goods_form.errors_by_field(errors, sent.rows)
    else:
        beside, rest = {}, [str(error) for error in errors]
    kind = sent.raw.get("kind") if isinstance(sent.raw, dict) else None
    drawn_over = sent.base if form.get("way", "form") == "form" else (base or {})
    return _form(pages, who, drawn_over, action=action, title=title, form=form, beside=beside, problems=rest,
                 status=422, version=version, kind=kind if isinstance(kind, str) else "goods")


def _form(pages: Pages, who: Caller, document: dict[str, Any], *, action: str, title: str,
          form: dict[str, str] | None = None, beside: dict[str, str] | None = None,
          problems: list[str] | None = None, status: int = 200, version: int | None = None,
          kind: str = "goods", copied_from: str = "") -> Response:
    """The declaring form: over `document` (what is amended or copied), or as the trader last posted it."""
    values = goods_form.values_of(document) if form is None else form
    way = (form or {}).get("way") or ("form" if document.get("kind", "goods") == "goods" and kind == "goods"
                                      else "json")
    if way == MORE_ROWS:
        way = "form"
    rows = goods_form.item_rows(document) if form is None else _posted_rows(form)
    # Prefilled only where it is the way shown: else the document would travel in every post twice.
    json_text = (form or {}).get("json") or (json.dumps(document, indent=2, ensure_ascii=False)
                                             if document and way == "json" else "")
    return pages.render("desk_form.html", who, status, title=title, action=action, values=values, way=way,
                        beside=beside or {}, problems=problems or [], version=version, rows=rows,
                        header=goods_form.HEADER, containers=goods_form.CONTAINERS,
                        item_fields=goods_form.ITEM_FIELDS, json_text=json_text, copied_from=copied_from,
                        base=json.dumps(document, ensure_ascii=False) if document.get("kind", "goods") == "goods"
                        else "", upload_limit=f"{upload_limit(pages) / (1024 * 1024):.1f} MiB",
                        max_rows=goods_form.ITEM_ROWS_MAX, beyond=goods_form.items_beyond(document))


def _posted_rows(form: dict[str, str]) -> int:
    """The item rows to show again: as many as were shown (every row the trader filled, at least), and
    EXTRA_ROWS more when asked for."""
    filled = [row for row in range(goods_form.ITEM_ROWS_MAX)
              if any(form.get(f"items[{row}].{name}", "").strip() for name in goods_form.ITEM_FIELDS)]
    shown = form.get("rows", "")
    rows = max(int(shown) if shown.isdigit() and len(shown) < 4 else 0, (filled[-1] + 1) if filled else 0)
    if form.get("way") == MORE_ROWS:
        rows += EXTRA_ROWS
    return min(goods_form.ITEM_ROWS_MAX, max(goods_form.ITEM_ROWS_MIN, rows))
