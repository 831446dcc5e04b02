"""Every error the API answers with is a problem (docs/api.md): the exceptions of the hub, of the visibility
rules and of FastAPI each map to one here."""

from __future__ import annotations

import logging

from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.declarations import (
    Conflict,
    DeclarationError,
    InvalidDeclaration,
    InvalidLicence,
    LicenceNotFound,
    NotDeclarant,
    VersionConflict,
)
from hub.declarations.licence import LicenceClosed
from hub.storage import StoreUnavailable
from tradehub.visibility import Hidden, NotClearable, NotDeclaring, OfficersOnly, ReadOnly, Refused, TradersOnly

from .common import invalid
from .problems import ProblemError, problem

log = logging.getLogger("tradehub.api")

# What the store raises when the database cannot be reached now: each answers 503 with Retry-After.
UNAVAILABLE: tuple[type[Exception], ...] = (StoreUnavailable, OperationalError, InterfaceError)

# What the API says of each refusal: the problem's slug, title and detail (formatted with the path's parameters).
REFUSALS: dict[type[Refused], tuple[str, str, str]] = {
    Hidden: ("not-found", "No such declaration", "no declaration {declaration_id}"),
    ReadOnly: ("forbidden", "Not allowed", "only the declarant or an admin may change it"),
    NotDeclaring: ("forbidden", "Officers do not declare", ""),
    OfficersOnly: ("forbidden", "Officers only", "the officer views are for agencies and admins"),
    TradersOnly: ("forbidden", "Traders only", "webhook subscriptions are made with a trader's token, for its "
                                               "party's declarations"),
}
NOT_CLEARABLE = {
    403: ("forbidden", "Not your alert", "only an officer of the agency that raised it, or an admin, may clear it"),
    404: ("not-found", "No such alert", "no alert {alert_id}"),
}


async def refusal(request: Request, error: Exception) -> Response:
    """The caller may not have this (tradehub/visibility.py): 404 or 403, as the rule says."""
    assert isinstance(error, Refused)
    slug, title, detail = NOT_CLEARABLE[error.status] if isinstance(error, NotClearable) else REFUSALS[type(error)]
    return problem(error.status, slug, title, detail.format(**request.path_params))


def unavailable(request: Request, error: Exception) -> Response:
    """503 with Retry-After while the database cannot be reached: the client tries again, nothing is half done.

    eventsourcing's OperationalError and InterfaceError are the store's own "not now" (what it raises once its
    retries are spent), so they answer the same.
    """
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, error)
    seconds = StoreUnavailable.retry_after
    return problem(503, "unavailable", "Store unavailable",
                   f"the hub cannot reach its database just now; try again in {seconds} s",
                   headers={"Retry-After": str(seconds)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, error: ProblemError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return problem(error.status, error.slug, error.title, error.detail, headers=headers, **error.extra)

    app.add_exception_handler(Refused, refusal)

    @app.exception_handler(InvalidDeclaration)
    async def _invalid_declaration(request: Request, error: InvalidDeclaration) -> Response:
        return await _problem(request, invalid(error))

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

    @app.exception_handler(InvalidLicence)
    async def _invalid_licence(_: Request, error: InvalidLicence) -> Response:
        return problem(422, "invalid-licence", "Invalid licence", f"{len(error.errors)} field(s) failed validation",
                       errors=[{"path": e.path, "message": e.message} for e in error.errors])

    @app.exception_handler(LicenceClosed)
    async def _licence_closed(_: Request, error: LicenceClosed) -> Response:
        return problem(409, "refused", "Not allowed in the licence's state", str(error))

    @app.exception_handler(LicenceNotFound)
    async def _no_licence(_: Request, error: LicenceNotFound) -> Response:
        return problem(404, "not-found", "No such licence", str(error))

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, error: RequestValidationError) -> Response:
        errors = [{"path": ".".join(str(part) for part in e["loc"]), "message": e["msg"]}
                  for e in error.errors()]
        return problem(422, "invalid-request", "Invalid request", errors=errors)

    async def _unavailable(request: Request, error: Exception) -> Response:
        return unavailable(request, error)

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal", "Internal error",
                       "the hub failed to handle this request; it is logged on the server")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> Response:
        return problem(error.status_code, "http", str(error.detail), headers=error.headers)
