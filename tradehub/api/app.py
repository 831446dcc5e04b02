"""The HTTP API under /v1 (SPEC §6): parse, authorise, hand the command on, answer.

Declarations are read from the event store (read-your-writes); lists come
from the status board projection, a few milliseconds behind the log.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from eventsourcing.persistence import IntegrityError
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from followers.dispatch import DISPATCH_PREFIX
from hub.declarations import (
    AGENCIES,
    Alert,
    AlertInvalid,
    Conflict,
    Declaration,
    DeclarationError,
    DeclarationNotFound,
    InvalidDeclaration,
    NotDeclarant,
    VersionConflict,
)
from hub.declarations.documents import KINDS, GoodsDeclaration, MalformedJSON, VesselCall, json_path, load_json
from hub.declarations.domainmodel import OVERALL_STATUSES, IdentityChanged
from hub.declarations.groupcommit import AsyncGroupCommit
from hub.declarations.values import text
from projections.alerts import alerts_view
from projections.exchange import exchange_view
from projections.messages import recorded_messages
from projections.recognition import recognition_view
from projections.statistics import statistics_view
from projections.status_board import Filters, InvalidQuery, counts_by_status, list_declarations
from tradehub import visibility
from tradehub.auth import Caller, InvalidToken, TokenVerifier
from tradehub.bootstrap import Hub
from tradehub.visibility import document_for

from .middleware import Edge
from .problems import Problem, ProblemError, documented, problem

log = logging.getLogger("tradehub.api")

class AgencyState(BaseModel):
    status: str
    routed: bool
    reason: str
    code: str = ""
    text: str = ""
    updated_at: str = ""


class Hold(BaseModel):
    since: datetime | None = Field(description="since when the declaration has been held without a break")
    note: str = Field(description="always the neutral `held for control`; officers find the alerts in `holds`")


class DeclarationResource(BaseModel):
    id: UUID
    reference: str
    kind: Literal["goods", "vessel_call"]
    declarant: str
    version: int
    status: str
    agencies: dict[str, AgencyState]
    holds: list[str] = Field(description="the ids of the alerts holding it; empty for a trader (I5)")
    hold: Hold | None = Field(description="set while the declaration is held, for everyone who sees it")
    submitted_at: datetime
    updated_at: datetime
    document: dict[str, Any]


class DeclarationSummary(BaseModel):
    id: UUID
    reference: str
    kind: str
    declarant: str
    version: int
    status: str
    agencies: dict[str, dict[str, str]]
    submitted_at: datetime
    updated_at: datetime
    released_at: datetime | None


class DeclarationPage(BaseModel):
    items: list[DeclarationSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    version: int
    time: datetime
    note: str = Field(default="", description="for a trader, what an enforcement event did, in place of its "
                                              "details (`held for control`)")


class History(BaseModel):
    declaration_id: UUID
    events: list[HistoryEvent]


class AgencyMessage(BaseModel):
    direction: Literal["outbound", "inbound"]
    agency: Literal[AGENCIES]  # type: ignore[valid-type]
    message_id: str
    type: str = Field(description="what the message is, e.g. declaration, fal5, release-notice")
    time: datetime = Field(description="the event's time for outbound messages")
    version: int = Field(description="the declaration version the message reports")
    body: str = Field(description="the XML, as sent")


class AgencyMessages(BaseModel):
    declaration_id: UUID
    messages: list[AgencyMessage]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class AlertRequest(_Strict):
    subject_kind: Literal["party", "vessel", "container"] = Field(
        description="party: a USCC; vessel: an IMO number; container: an ISO 6346 number")
    subject: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=512)


class AlertResource(BaseModel):
    id: UUID
    subject_kind: str
    subject: str
    reason: str
    raised_by: str
    raised_at: datetime
    status: Literal["open", "cleared"]
    cleared_by: str = ""


class ExchangeRow(BaseModel):
    agency: str
    routed: bool
    status: str
    code: str
    text: str
    sent_at: datetime | None
    messages_sent: int
    acknowledged_at: datetime | None
    decided_at: datetime | None
    decision: str | None


class Flow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    type: str = Field(description="the message type carrying it: release-notice, recognition-notice, alert-notice, "
                                  "alert-cleared-notice")
    message: str
    time: datetime


class ExchangeView(BaseModel):
    declaration_id: UUID
    agencies: list[ExchangeRow]
    flows: list[Flow]


class Recognised(BaseModel):
    agency: str
    notified_at: datetime
    released_at: datetime | None
    saved: bool = Field(description="released on the recognised result without inspecting itself")


class InspectionRow(BaseModel):
    declaration_id: UUID
    reference: str
    agency: str = Field(description="the agency that inspected")
    result: Literal["pass", "fail"]
    inspected_at: str
    message_id: str
    findings: str
    recorded_at: datetime
    recognised_by: list[Recognised]


class RecognitionTotals(BaseModel):
    inspections: int
    recognitions: int
    inspections_saved: int


class RecognitionView(BaseModel):
    inspections: list[InspectionRow]
    totals: RecognitionTotals


class HeldDeclaration(BaseModel):
    declaration_id: UUID
    reference: str
    held_at: datetime
    lifted_at: datetime | None


class AlertRow(AlertResource):
    cleared_at: datetime | None
    cleared_by: str | None = None
    declarations: list[HeldDeclaration]


class AlertsView(BaseModel):
    alerts: list[AlertRow]


class Clearance(BaseModel):
    count: int
    p50_seconds: float | None
    p90_seconds: float | None


class ClearanceTimes(BaseModel):
    overall: Clearance
    agencies: dict[str, Clearance]


class StatisticsView(BaseModel):
    by_status: dict[str, int]
    by_agency: dict[str, dict[str, int]]
    clearance: ClearanceTimes


class AmendmentRequest(_Strict):
    expected_version: int = Field(ge=1)
    declaration: dict[str, Any]


class WithdrawalRequest(_Strict):
    # Free text that travels in agency messages: one line, no control characters.
    reason: Annotated[str, AfterValidator(lambda value: text(value, 512))] = Field(min_length=1, max_length=512)
    expected_version: int | None = Field(default=None, ge=1)


DECLARATION_SCHEMA = TypeAdapter(GoodsDeclaration | VesselCall)


async def current_caller(request: Request) -> Caller:
    """The caller named by the bearer token; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "Missing bearer token", "send Authorization: Bearer <token>")
    try:
        return request.app.state.verify(token.strip())
    except InvalidToken as error:
        raise ProblemError(401, "unauthenticated", "Invalid bearer token", str(error)) from None


Authenticated = Annotated[Caller, Depends(current_caller)]


def create_app(hub: Hub) -> FastAPI:
    """The API for one wired hub. Nothing here connects at import time."""
    settings = hub.settings
    registry = CollectorRegistry()
    registry.register(_BoardCollector(hub))
    app = FastAPI(title="Trade hub", version="1", summary="Single window for trade and port declarations",
                  docs_url=None, redoc_url=None,
                  # No OpenTelemetry here: its per-request check of the providers costs more than
                  # the JSON parsing of a declaration. Prometheus at /metrics is the hub's telemetry.
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.verify = TokenVerifier(settings.secret)
    # Commands block on the store (and group commit gathers them), so they run on threads;
    # a plain executor costs less per call than anyio's worker-thread machinery.
    executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="tradehub-api")
    committer = AsyncGroupCommit(hub.declarations.save)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every request for tens of milliseconds.
        gc.collect()
        gc.freeze()
        yield
        committer.close()
        executor.shutdown(wait=True)

    app.router.lifespan_context = lifespan

    async def offload(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, partial(function, *args, **kwargs))

    async def json_body(request: Request) -> Any:
        try:
            return load_json(await request.body())
        except MalformedJSON as error:
            raise ProblemError(400, "malformed-json", "Malformed JSON", str(error)) from None

    def visible(who: Caller, declaration_id: str) -> Declaration:
        try:
            declaration = hub.declarations.get(declaration_id)
        except DeclarationNotFound:
            declaration = None
        return seen_by(who, declaration, declaration_id)

    def with_history(who: Caller, declaration_id: str) -> tuple[Declaration, list[dict[str, Any]]]:
        try:
            declaration, events = hub.declarations.with_history(declaration_id)
        except DeclarationNotFound:
            declaration, events = None, []
        return seen_by(who, declaration, declaration_id), events

    def changeable(who: Caller, declaration_id: str) -> Declaration:
        declaration = visible(who, declaration_id)
        if not who.may_change(declaration):
            raise ProblemError(403, "forbidden", "Not allowed", "only the declarant or an admin may change it")
        return declaration

    def resource(declaration: Declaration, who: Caller) -> dict[str, Any]:
        """The declaration as the caller may see it; a held one reads its history for since when (blocks then)."""
        events = hub.declarations.history(declaration.id) if declaration.holds else []
        return _resource(declaration, who, events)

    declaration_body = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Declaration"}}}}}

    @app.post("/v1/declarations", status_code=201, response_model=DeclarationResource,
              responses={200: {"model": DeclarationResource, "description": "Already declared with this content"},
                         **documented(400, 401, 403, 409, 413, 422)},
              openapi_extra=declaration_body, tags=["declarations"])
    async def submit(request: Request) -> Response:
        """Declare once. Repeating the same (declarant, reference) with the same content returns 200."""
        who = await current_caller(request)  # not a dependency: this is the hot path
        if who.role == "officer":
            raise ProblemError(403, "forbidden", "Officers do not declare")
        raw = await json_body(request)
        # Validation is CPU work: done here; only the save leaves the loop, batched with others.
        declaration = hub.declarations.prepare_submission(
            raw, on_behalf_of=who.party if who.role == "trader" else None)
        try:
            await committer.save(declaration.collect_events())
            created = True
        except IntegrityError:
            declaration = (await offload(hub.declarations.settle_duplicate, declaration)).declaration
            created = False
        body = resource(declaration, who) if created else await offload(resource, declaration, who)
        return _json(body, 201 if created else 200, {"Location": f"/v1/declarations/{declaration.id}"})

    @app.get("/v1/declarations", response_model=DeclarationPage, responses=documented(401, 422),
             tags=["declarations"])
    def list_(
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
        if who.role == "trader":
            if declarant not in (None, who.party):
                return _json({"items": [], "next_cursor": None})
            declarant = who.party
        filters = Filters(status=status, kind=kind, agency=agency, declarant=declarant, reference=reference,
                          submitted_from=submitted_from, submitted_to=submitted_to,
                          visible_to_agency=who.agency if who.role == "officer" else None)
        try:
            items, following = list_declarations(hub.views, filters, limit=limit, after=cursor)
        except InvalidQuery as error:
            raise ProblemError(422, "invalid-request", "Invalid query",
                               errors=[{"path": f"query.{error.field}", "message": str(error)}]) from None
        return _json({"items": items, "next_cursor": following})

    @app.get("/v1/declarations/{declaration_id}", response_model=DeclarationResource,
             responses=documented(401, 404), tags=["declarations"])
    def get(declaration_id: str, who: Authenticated) -> Response:
        """One declaration, with its status at every agency."""
        return _json(resource(visible(who, declaration_id), who))

    @app.post("/v1/declarations/{declaration_id}/amendments", response_model=DeclarationResource,
              responses=documented(400, 401, 403, 404, 409, 413, 422), tags=["declarations"])
    async def amend(declaration_id: str, request: Request, who: Authenticated) -> Response:
        """Replace the document; `expected_version` must be the current version."""
        body = _envelope(AmendmentRequest, await json_body(request))
        await offload(changeable, who, declaration_id)
        try:
            declaration = await offload(
                hub.declarations.amend, declaration_id, body.expected_version, body.declaration)
        except InvalidDeclaration as error:
            raise _invalid(error, prefix="$.declaration") from None
        except IdentityChanged as error:
            path = "$.declaration.declarant.id" if error.field == "declarant" else f"$.declaration.{error.field}"
            raise ProblemError(422, "invalid-declaration", "Invalid declaration",
                               errors=[{"path": path, "message": str(error)}]) from None
        return _json(await offload(resource, declaration, who))

    @app.post("/v1/declarations/{declaration_id}/withdrawal", response_model=DeclarationResource,
              responses=documented(400, 401, 403, 404, 409, 413, 422), tags=["declarations"])
    async def withdraw(declaration_id: str, request: Request, who: Authenticated) -> Response:
        """Withdraw the declaration; the agencies get cancellations."""
        body = _envelope(WithdrawalRequest, await json_body(request))
        await offload(changeable, who, declaration_id)
        declaration = await offload(
            hub.declarations.withdraw, declaration_id, body.reason, body.expected_version)
        return _json(await offload(resource, declaration, who))

    @app.get("/v1/declarations/{declaration_id}/history", response_model=History,
             responses=documented(401, 404), tags=["declarations"])
    def history(declaration_id: str, who: Authenticated) -> Response:
        """Every event of the declaration, oldest first; a trader's without their enforcement details."""
        declaration, events = with_history(who, declaration_id)
        return _json({"declaration_id": declaration.id, "events": visibility.history_for(who, events)})

    @app.get("/v1/declarations/{declaration_id}/messages", response_model=AgencyMessages,
             responses=documented(401, 404), tags=["declarations"])
    def messages(declaration_id: str, who: Authenticated) -> Response:
        """The XML messages exchanged with the agencies, oldest first; an officer's agency's only, no alert's for a trader."""
        declaration, events = with_history(who, declaration_id)
        rows = visibility.messages_for(who, recorded_messages(hub.views, str(declaration.id), events))
        return _json({"declaration_id": declaration.id, "messages": rows})

    def officer_view(who: Caller) -> str | None:
        """The agency whose declarations an officer's views cover (None: all, for an admin); 403 for traders."""
        if who.role == "trader":
            raise ProblemError(403, "forbidden", "Officers only", "the officer views are for agencies and admins")
        return who.agency if who.role == "officer" else None

    @app.get("/v1/views/exchange/{declaration_id}", response_model=ExchangeView, responses=documented(401, 404),
             tags=["views"])
    def exchange(declaration_id: str, who: Authenticated) -> Response:
        """Each agency's messages sent, acknowledged and decided, with times, and the flows between agencies."""
        declaration = visible(who, declaration_id)
        return _json(visibility.exchange_for(who, exchange_view(hub.views, str(declaration.id))))

    @app.get("/v1/views/recognition", response_model=RecognitionView, responses=documented(401, 403),
             tags=["views"])
    def recognition(who: Authenticated) -> Response:
        """Each inspection result, who recognised it, and the inspections saved; an officer's agency's only."""
        return _json(recognition_view(hub.views, officer_view(who)))

    @app.get("/v1/views/alerts", response_model=AlertsView, responses=documented(401, 403), tags=["views"])
    def alerts(who: Authenticated) -> Response:
        """Alerts, newest first, with the declarations each holds; an officer sees its agency's declarations."""
        return _json(alerts_view(hub.views, officer_view(who)))

    @app.get("/v1/views/stats", response_model=StatisticsView, responses=documented(401, 403), tags=["views"])
    def stats(who: Authenticated) -> Response:
        """Counts by status and agency, and clearance time (submitted to released) p50 and p90."""
        officer_view(who)
        return _json(statistics_view(hub.views))

    @app.post("/v1/alerts", status_code=201, response_model=AlertResource,
              responses=documented(400, 401, 403, 413, 422), tags=["alerts"])
    async def raise_alert(request: Request, who: Authenticated) -> Response:
        """Raise a risk alert: every open declaration involving the subject, and every later one, is held."""
        officer_view(who)
        body = _envelope(AlertRequest, await json_body(request))
        try:
            alert = await offload(hub.declarations.raise_alert, body.subject_kind, body.subject, body.reason,
                                  who.subject)
        except AlertInvalid as error:
            raise ProblemError(422, "invalid-request", "Invalid alert",
                               errors=[{"path": f"$.{error.field}", "message": str(error)}]) from None
        return _json(_alert(alert), 201, {"Location": f"/v1/alerts/{alert.id}"})

    @app.post("/v1/alerts/{alert_id}/clearance", response_model=AlertResource, responses=documented(401, 403, 404),
              tags=["alerts"])
    async def clear_alert(alert_id: str, who: Authenticated) -> Response:
        """Clear an alert: its holds are lifted. Clearing it again changes nothing.

        Only an officer of the agency that raised it, or an admin, may: 403 for others who see it, else 404."""
        await offload(clearable, who, alert_id)
        alert = await offload(hub.declarations.clear_alert, alert_id, who.subject)
        return _json(_alert(alert))

    def clearable(who: Caller, alert_id: str) -> Alert:
        try:
            return visibility.alert_to_clear(who, hub.declarations, hub.views, alert_id)
        except visibility.NotClearable as refused:
            if refused.status == 403:
                raise ProblemError(403, "forbidden", "Not your alert",
                                   "only an officer of the agency that raised it, or an admin, may clear it") from None
            raise ProblemError(404, "not-found", "No such alert", f"no alert {alert_id}") from None

    unauthenticated = {"security": []}

    @app.get("/healthz", tags=["operations"], responses={503: {"description": "not healthy"}},
             openapi_extra=unauthenticated)
    def healthz() -> Response:
        """The store answers and every view is following the log."""
        checks: dict[str, Any] = {}
        try:
            checks["log_position"] = hub.declarations.recorder.max_notification_id() or 0
            checks["view_lag"] = _lag(hub, checks["log_position"])
            checks["view_errors"] = hub.views.failures()
        except Exception as error:  # noqa: BLE001 - reported, not raised
            checks["store"] = f"unavailable: {error}"
        healthy = "store" not in checks and not checks.get("view_errors")
        return JSONResponse({"status": "ok" if healthy else "failing", **checks},
                            status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response, openapi_extra=unauthenticated,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    _install_error_handlers(app)
    _install_openapi(app)
    app.add_middleware(Edge, limit=settings.max_body_bytes, registry=registry)
    return app


def _lag(hub: Hub, head: int | None = None) -> dict[str, int]:
    """Events each view is behind the log, and each agency's dispatch once it has dispatched."""
    if head is None:
        head = hub.declarations.recorder.max_notification_id() or 0
    lag = hub.runner.lag(head=head)
    lag.update({name: head - position for name, position in hub.views.positions(DISPATCH_PREFIX).items()})
    return lag


def seen_by(who: Caller, declaration: Declaration | None, declaration_id: str) -> Declaration:
    """The declaration, if the caller may see it; unknown and hidden ids both get the same 404."""
    if declaration is None or not who.may_see(declaration):
        raise ProblemError(404, "not-found", "No such declaration", f"no declaration {declaration_id}")
    return declaration


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON straight from the handler: the response models document the shapes, tests check them."""
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def _resource(declaration: Declaration, who: Caller, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": declaration.id, "reference": declaration.reference, "kind": declaration.kind,
        "declarant": declaration.declarant, "version": declaration.version, "status": declaration.status,
        "agencies": {name: {key: state[key] for key in ("status", "routed", "reason", "code", "text",
                                                         "updated_at")}
                     for name, state in declaration.agencies.items()},
        "holds": visibility.holds_for(who, declaration), "hold": visibility.hold_of(declaration, events),
        "submitted_at": declaration.created_on,
        "updated_at": declaration.modified_on, "document": document_for(who, declaration.document),
    }


def _alert(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "subject_kind": alert.subject_kind, "subject": alert.subject, "reason": alert.reason,
            "raised_by": alert.raised_by, "raised_at": alert.created_on, "status": alert.status,
            "cleared_by": alert.cleared_by}


def _envelope(model: type[_Strict], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except PydanticValidationError as error:
        errors = [{"path": json_path(e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
                  for e in error.errors()]
        raise ProblemError(422, "invalid-request", "Invalid request", errors=errors) from None


def _invalid(error: InvalidDeclaration, prefix: str = "$") -> ProblemError:
    errors = [{"path": prefix + e.path[1:], "message": e.message} for e in error.errors]
    return ProblemError(422, "invalid-declaration", "Invalid declaration",
                        f"{len(errors)} field(s) failed validation", errors=errors)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, error: ProblemError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return problem(error.status, error.slug, error.title, error.detail, headers=headers, **error.extra)

    @app.exception_handler(InvalidDeclaration)
    async def _invalid_declaration(request: Request, error: InvalidDeclaration) -> Response:
        return await _problem(request, _invalid(error))

    @app.exception_handler(NotDeclarant)
    async def _not_declarant(_: Request, error: NotDeclarant) -> Response:
        return problem(403, "forbidden", "Not your declarant", str(error))

    @app.exception_handler(VersionConflict)
    async def _stale(_: Request, error: VersionConflict) -> Response:
        return problem(409, "version-conflict", "Stale version", str(error),
                       expected_version=error.expected, current_version=error.actual)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, error: Conflict) -> Response:
        return problem(409, "conflict", "Conflict", str(error))

    @app.exception_handler(DeclarationError)
    async def _refused(_: Request, error: DeclarationError) -> Response:
        return problem(409, "refused", "Not allowed in the declaration's state", str(error))

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, error: RequestValidationError) -> Response:
        errors = [{"path": ".".join(str(part) for part in e["loc"]), "message": e["msg"]}
                  for e in error.errors()]
        return problem(422, "invalid-request", "Invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal", "Internal error",
                       "the hub failed to handle this request; it is logged on the server")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> Response:
        return problem(error.status_code, "http", str(error.detail), headers=error.headers)


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            declaration = DECLARATION_SCHEMA.json_schema(ref_template="#/components/schemas/{model}")
            components.update(declaration.pop("$defs", {}))
            components["Declaration"] = declaration
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(components["Problem"].pop("$defs", {}))
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                                   "bearerFormat": "JWT"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _BoardCollector:
    """Declarations by overall status, read from the status board at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Any:
        gauge = GaugeMetricFamily("tradehub_declarations", "Declarations by overall status", labels=["status"])
        counts = counts_by_status(self.hub.views)
        for status in OVERALL_STATUSES:
            gauge.add_metric([status], counts.get(status, 0))
        yield gauge
        lag = GaugeMetricFamily("tradehub_view_lag_events", "Events a view is behind the log", labels=["view"])
        for view, behind in _lag(self.hub).items():
            lag.add_metric([view], behind)
        yield lag

