"""The officer web pages: server-rendered HTML over the same reads as the API (docs/api.md).

What a page shows is what tradehub/visibility.py lets its caller see: the
same service the API reads through. A session is the bearer token itself,
kept in an HttpOnly, SameSite=Strict cookie and verified on every request
exactly as the API verifies it, so a page shows what the token's holder
would get from the API and nothing more.
Forms that change something also check that the request comes from this
site's own pages. Pages set a strict Content-Security-Policy: every asset
comes from /static, and the one script (static/live.js) only shows new
notifications from the session's event stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool

from adapters.attachments import documents_in_order
from hub.declarations import AGENCIES, ISSUERS, AlertInvalid, AlertNotFound
from hub.declarations.alert import SUBJECT_KINDS
from hub.declarations.domainmodel import AGENCY_STATUSES, OVERALL_STATUSES
from hub.storage import StoreUnavailable
from projections import notifications as feed
from projections.attachments import DocumentMissing, DocumentStoreError
from projections.status_board import InvalidQuery
from tradehub import visibility
from tradehub.api import licences as licence_api
from tradehub.api.attachments import download_headers
from tradehub.api.errors import UNAVAILABLE, unavailable
from tradehub.api.problems import ProblemError
from tradehub.auth import Caller, InvalidToken
from tradehub.bootstrap import Hub
from tradehub.visibility import Visibility

from . import charts, licensing, present

HERE = Path(__file__).parent
SESSION_COOKIE = "tradehub_session"
PAGE_SIZE = 50
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: the browser goes to the sign-in form, and comes back after."""

    def __init__(self, back_to: str, had_cookie: bool) -> None:
        super().__init__(back_to)
        self.back_to = back_to
        self.had_cookie = had_cookie


class PageError(Exception):
    """An error page: 403 for a page the role may not use, 404 for what does not exist or may not be seen."""

    def __init__(self, status: int, title: str, detail: str, who: Caller | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.who = who


def templates() -> Environment:
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(utc=present.utc, iso=present.iso, duration=present.duration, label=present.label)
    return environment


def signed_in(request: Request) -> Caller | None:
    """The caller the session cookie names, if the token in it is still good."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return request.app.state.verify(token)
    except InvalidToken:
        return None


def page_caller(request: Request) -> Caller:
    who = signed_in(request)
    if who is None:
        back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(back_to, SESSION_COOKIE in request.cookies)
    return who


SignedIn = Annotated[Caller, Depends(page_caller)]


def officer_or_admin(who: SignedIn) -> Caller:
    """The caller, if the officer views are for it (officers and admins); else the page that says so."""
    try:
        visibility.view_scope(who)
    except visibility.Refused as refused:
        raise refused_page(refused, who, "") from None
    return who


Officer = Annotated[Caller, Depends(officer_or_admin)]


def local_path(target: str | None, default: str = "/board") -> str:
    """Where to go after signing in: a path on this site only, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def same_site(request: Request) -> bool:
    """A form post from this site's own pages: Origin, when sent, names this host; no cross-site fetch."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.headers.get("host", "").lower()


FORM_FIELDS = 20  # more than any form of these pages has


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each); 400 for one with more than FORM_FIELDS."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        fields = parse_qs(body, max_num_fields=FORM_FIELDS)
    except ValueError:  # parse_qs's only refusal with a max_num_fields: too many fields
        raise PageError(400, "Too many fields",
                        f"A form of these pages has at most {FORM_FIELDS} fields; this one has more.") from None
    return {key: values[0] for key, values in fields.items()}


class Pages:
    """What the pages of one app work with, kept in `app.state.pages`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.see = Visibility(hub.declarations, hub.views)
        self.environment = templates()

    def render(self, template: str, who: Caller | None, status: int = 200, **context: Any) -> HTMLResponse:
        # A signed-in page's live panel streams the notifications after the newest one now: none written
        # between this render and the stream's opening is missed (static/live.js).
        live_after = feed.head(self.hub.views) if who is not None else 0
        html = self.environment.get_template(template).render(who=who, live_after=live_after, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


async def pages_of(request: Request) -> Pages:
    return request.app.state.pages


Site = Annotated[Pages, Depends(pages_of)]


def see_other(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def refused_page(refused: visibility.Refused, who: Caller, ident: str) -> PageError:
    """What a page says when the visibility rules refuse the caller."""
    if isinstance(refused, visibility.OfficersOnly):
        return PageError(403, "For officers", "This view is for agency officers and administrators.", who)
    if isinstance(refused, visibility.NotClearable):
        if refused.status == 403:
            return PageError(403, "Not your alert", "Only an officer of the agency that raised this alert, or an "
                                                    "administrator, may clear it.", who)
        return PageError(404, "Not found", f"There is no alert {ident} for you to see.", who)
    return PageError(404, "Not found", f"There is no declaration {ident} for you to see.", who)


def install_pages(app: FastAPI, hub: Hub) -> FastAPI:
    """Mount the pages and their static assets on the API's app; none of it enters the OpenAPI document."""
    from . import certificates, desk, notifications  # they build on this module's pieces

    app.state.pages = Pages(hub)
    app.include_router(router)
    app.include_router(desk.router)
    app.include_router(notifications.router)
    app.include_router(certificates.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(SignInRequired, to_sign_in)
    app.add_exception_handler(PageError, error_page)
    for kind in UNAVAILABLE:  # a page says it in HTML; the API's routes keep their problem+json
        app.add_exception_handler(kind, unavailable_page)
    return app


async def unavailable_page(request: Request, error: Exception) -> Response:
    """503 with Retry-After while the database cannot be reached, as a page for a browser."""
    if request.url.path.startswith(("/v1/", "/healthz", "/metrics")):
        return unavailable(request, error)
    pages: Pages = request.app.state.pages
    seconds = StoreUnavailable.retry_after
    response = pages.render("error.html", None, 503, title="Unavailable",
                            detail=f"The hub cannot reach its database just now. Try again in {seconds} seconds.")
    response.headers["Retry-After"] = str(seconds)
    return response


async def to_sign_in(_: Request, error: Exception) -> Response:
    assert isinstance(error, SignInRequired)
    response = see_other("/sign-in" + (f"?next={quote(error.back_to, safe='/')}" if error.back_to != "/" else ""))
    if error.had_cookie:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def error_page(request: Request, error: Exception) -> Response:
    assert isinstance(error, PageError)
    pages: Pages = request.app.state.pages
    return pages.render("error.html", error.who, error.status, title=error.title, detail=error.detail)


router = APIRouter(include_in_schema=False)


# ---- signing in and out -------------------------------------------------------------------------

@router.get("/")
def home(request: Request) -> Response:
    return see_other("/board" if signed_in(request) else "/sign-in")


@router.get("/sign-in")
def sign_in_form(request: Request, pages: Site, back_to: Annotated[str, Query(alias="next")] = "") -> Response:
    return pages.render("sign_in.html", signed_in(request), back_to=local_path(back_to), error="")


@router.post("/sign-in")
async def sign_in(request: Request, pages: Site) -> Response:
    if not same_site(request):
        raise PageError(403, "Refused", "Sign-in is accepted from this site's own form only.")
    form = await form_of(request)
    back_to = local_path(form.get("next"))
    token = form.get("token", "").strip()
    if not token:
        return pages.render("sign_in.html", None, 401, back_to=back_to, error="Paste a token to sign in.")
    try:
        who = await run_in_threadpool(request.app.state.verify, token)  # it may read the revoked ids
    except InvalidToken as refused:
        error = f"That token was not accepted: {refused}."
    else:
        lifetime = int(who.expires - time.time())
        if lifetime > 0:
            response = see_other(back_to)
            response.set_cookie(SESSION_COOKIE, token, max_age=lifetime, path="/", httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
            return response
        error = "That token was not accepted: the token has expired."
    return pages.render("sign_in.html", None, 401, back_to=back_to, error=error)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    if not same_site(request):
        raise PageError(403, "Refused", "Sign-out is accepted from this site's own pages only.")
    response = see_other("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# ---- the status board and one declaration -------------------------------------------------------

@router.get("/board")
def board(request: Request, who: SignedIn, pages: Site) -> Response:
    query = present.board_query(request.query_params)
    items: list[dict[str, Any]] = []
    following = None
    if not query.errors:
        try:
            items, following = pages.see.listed(who, query.filters, limit=PAGE_SIZE, after=query.cursor)
        except InvalidQuery as error:
            query.errors[error.field] = str(error)
    return pages.render("board.html", who, 422 if query.errors else 200, query=query, items=items,
                        holds=pages.see.standing_holds(who, items),
                        older=query.link(cursor=following) if following else None,
                        newest=query.link(cursor=None) if query.cursor else None,
                        counts=pages.see.status_counts(who), statuses=OVERALL_STATUSES,
                        kinds=("goods", "vessel_call"), agencies=AGENCIES)


@router.get("/declarations/{declaration_id}")
def declaration_page(declaration_id: str, who: SignedIn, pages: Site) -> Response:
    try:
        seen = pages.see.declaration(who, declaration_id)
    except visibility.Refused as refused:
        raise refused_page(refused, who, declaration_id) from None  # unknown and hidden ids read the same
    messages = pages.see.messages(seen)
    shown = seen.history
    kind, document = seen.declaration.kind, seen.document
    page = pages.render("declaration.html", who, declaration=seen.declaration, summary=present.summary(document),
                        timelines=present.timelines(seen.declaration.agencies, messages, shown, kind),
                        exchange=present.worded_exchange(pages.see.exchange(seen), kind), messages=messages,
                        history=present.history_rows(shown, kind),
                        document=json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False),
                        attachments=documents_in_order(seen.declaration.attachments),
                        licences=licensing.cited_licences(pages.hub, who, document),
                        hold=seen.hold, holds=seen.hold_details)
    pages.see.record(who, seen.declaration.id, "GET /declarations/{declaration_id}", document=document,
                     history=shown, messages=messages)
    return page


@router.get("/declarations/{declaration_id}/documents/{sha256}")
def document_download(declaration_id: str, sha256: str, who: SignedIn, pages: Site) -> Response:
    """A supporting document, for whoever may see its declaration (the API's rule and headers: a download)."""
    try:
        declaration = pages.see.declaration(who, declaration_id, history=False).declaration
    except visibility.Refused as refused:
        raise refused_page(refused, who, declaration_id) from None
    entry = declaration.attachments.get(sha256)
    if entry is None or pages.hub.documents is None:
        raise PageError(404, "Not found", f"Declaration {declaration_id} has no such document.", who)
    try:
        chunks = pages.hub.documents.open(sha256)
    except (DocumentMissing, DocumentStoreError) as error:
        raise PageError(503, "Unavailable", f"The document cannot be read just now: {error}", who) from None
    return StreamingResponse(chunks, media_type=entry["media_type"], headers=download_headers(entry))


# ---- licences and certificates (docs/licences.md) ----------------------------------------------

LEDGER_SHOWN = 500  # the newest entries of a licence's ledger a page lists; the API has them all


@router.get("/licences")
def licences(who: SignedIn, pages: Site, holder: str = "", number: str = "", after: str = "") -> Response:
    """The licences the caller may see (officers and admins all, a trader its own), with their quantity bars."""
    holder, number = holder.strip()[:18], number.strip()[:35]
    try:
        rows, following = licence_api.listed(pages.hub, who, holder=holder or None, number=number or None,
                                             limit=PAGE_SIZE, cursor=after[:200] or None)
    except InvalidQuery:
        rows, following = [], None
    items = [{**row, "bar": licensing.bar(row["quantity"], row["reserved"], row["consumed"], row["unit"]),
              "page": licensing.page_href(row["number"], row["issuer"])} for row in rows]
    more = {"holder": holder, "number": number, "after": following}
    return pages.render("licences.html", who, items=items, holder=holder, number=number,
                        older=f"/licences?{urlencode({k: v for k, v in more.items() if v})}" if following else None)


@router.get("/licences/{number:path}")
def licence_page(number: str, who: SignedIn, pages: Site, issuer: str = "") -> Response:
    """One licence: its fields, quantity bar, verification and ledger (the ledger from the store: current)."""
    chosen = issuer if issuer in ISSUERS else None
    try:
        licence, ledger = licence_api.seen_licence(pages.hub, who, number, chosen)
    except ProblemError as error:  # 404 (unknown, or not the caller's to see) or 409 (name the issuer)
        raise PageError(error.status, "Not found" if error.status == 404 else "Several issuers",
                        f"There is no licence {number[:40]} for you to see." if error.status == 404 else
                        error.detail, who) from None
    resource = licence_api.resource(licence, ledger[-LEDGER_SHOWN:], pages.hub.declarations.today())
    return pages.render("licence.html", who, licence=resource, total=len(ledger),
                        bar=licensing.bar(resource["quantity"], resource["reserved"], resource["consumed"],
                                          resource["unit"]),
                        ledger=licensing.ledger_rows(pages.hub, who, resource["ledger"])[::-1],
                        why=licensing.verification(pages.hub, licence),
                        manages=visibility.may_issue_licence(who, licence.issuer))


# ---- the views of the agencies' work together, and alerts ---------------------------------------

@router.get("/recognition")
def recognition(who: Officer, pages: Site) -> Response:
    return pages.render("recognition.html", who, data=pages.see.recognition(who))


@router.get("/alerts")
def alerts(who: Officer, pages: Site, raised: str = "", cleared: str = "") -> Response:
    return alerts_page(pages, who, raised=raised[:100], cleared=cleared[:100])


@router.post("/alerts")
async def raise_alert(request: Request, who: Officer, pages: Site) -> Response:
    if not same_site(request):
        raise PageError(403, "Refused", "Alerts are raised from this site's own form only.", who)
    form = await form_of(request)
    values = {key: form.get(key, "").strip() for key in ("subject_kind", "subject", "reason")}
    try:
        alert = await run_in_threadpool(pages.hub.declarations.raise_alert, values["subject_kind"],
                                        values["subject"], values["reason"], who.subject)
    except AlertInvalid as error:
        return await run_in_threadpool(alerts_page, pages, who, 422, error=str(error), values=values)
    return see_other(f"/alerts?raised={alert.id}")


@router.post("/alerts/{alert_id}/clear")
async def clear_alert(alert_id: str, request: Request, who: SignedIn, pages: Site) -> Response:
    if not same_site(request):
        raise PageError(403, "Refused", "Alerts are cleared from this site's own pages only.", who)
    try:  # 404 unless the caller may see the alert, 403 unless it may clear it (I6)
        await run_in_threadpool(pages.see.alert_to_clear, who, alert_id)
    except visibility.Refused as refused:
        raise refused_page(refused, who, alert_id) from None
    alert = await run_in_threadpool(pages.hub.declarations.clear_alert, alert_id, who.subject)
    return see_other(f"/alerts?cleared={alert.id}")


def alerts_page(pages: Pages, who: Caller, status: int = 200, *, error: str = "",
                values: Mapping[str, str] | None = None, raised: str = "", cleared: str = "") -> HTMLResponse:
    """The alerts view; after the caller raised or cleared one (`raised`, `cleared`: its id), that alert as the
    store has it now, since the view may not have caught up with the command yet."""
    data = pages.see.alerts(who)
    notice = ""
    acted = stored_alert(pages, who, raised or cleared)
    if acted is not None:
        data = {**data, "alerts": present.with_alert(data["alerts"], acted)}
        if raised or acted["status"] == "cleared":
            notice = f"Alert {acted['id']} {'raised' if raised else 'cleared'}."
    clearable = {alert["id"] for alert in data["alerts"] if visibility.may_clear(who, alert["raised_by"])}
    return pages.render("alerts.html", who, status, data=data, clearable=clearable, error=error,
                        values=values or {}, notice=notice, subject_kinds=SUBJECT_KINDS)


def stored_alert(pages: Pages, who: Caller, alert_id: str) -> dict[str, Any] | None:
    """The alert from the store (read-your-writes), if there is one the alerts view would show the caller."""
    if not alert_id:
        return None
    try:
        alert = pages.hub.declarations.get_alert(alert_id)
    except AlertNotFound:
        return None
    if not visibility.may_see_alert(who, pages.hub.views, str(alert.id), alert.raised_by):
        return None
    return present.alert_row(alert)


@router.get("/stats")
def statistics(who: Officer, pages: Site) -> Response:
    data = pages.see.statistics(who)
    return pages.render("statistics.html", who, data=data, charts=statistics_charts(data))


def statistics_charts(data: Mapping[str, Any]) -> dict[str, charts.Chart]:
    """The statistics page's three charts: declarations by status, by agency and status, clearance times."""
    by_status = data.get("by_status", {})
    statuses = [s for s in OVERALL_STATUSES if s in by_status] + sorted(set(by_status) - set(OVERALL_STATUSES))
    status_chart = charts.bar_chart(
        [charts.Row(present.label(s), [charts.Segment(present.label(s), by_status[s], f"s-{s}")]) for s in statuses],
        fmt=_count)
    by_agency = data.get("by_agency", {})
    agency_statuses = [s for s in AGENCY_STATUSES if any(s in counts for counts in by_agency.values())]
    agency_statuses += sorted({s for counts in by_agency.values() for s in counts} - set(agency_statuses))
    agency_chart = charts.bar_chart(
        [charts.Row(agency, [charts.Segment(present.label(s), counts.get(s, 0), f"s-{s}") for s in agency_statuses])
         for agency, counts in _agency_order(by_agency)],
        fmt=_count, legend=[(present.label(s), f"s-{s}") for s in agency_statuses])
    clearance = data.get("clearance", {})
    rows = [("overall", clearance.get("overall") or {})] + list(_agency_order(clearance.get("agencies", {})))
    clearance_chart = charts.bar_chart(
        [charts.Row(name, [charts.Segment("p50", times.get("p50_seconds"), "q-p50"),
                           charts.Segment("p90", times.get("p90_seconds"), "q-p90")])
         for name, times in rows],
        stacked=False, fmt=present.duration, log_marks=charts.LOG_DURATION_MARKS,
        legend=[("p50 (median)", "q-p50"), ("p90", "q-p90")])
    return {"status": status_chart, "agency": agency_chart, "clearance": clearance_chart}


def _agency_order(by_agency: Mapping[str, Any]) -> list[tuple[str, Any]]:
    known = [(name, by_agency[name]) for name in AGENCIES if name in by_agency]
    return known + sorted((name, value) for name, value in by_agency.items() if name not in AGENCIES)


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
