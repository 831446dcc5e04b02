"""What every route shares: the API's state, the caller from its bearer token, and reading and answering JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response
from prometheus_client import CollectorRegistry
from pydantic import ValidationError as PydanticValidationError

from hub.declarations import InvalidDeclaration
from hub.declarations.documents import MalformedJSON, json_path, load_json
from hub.declarations.groupcommit import AsyncGroupCommit
from tradehub.auth import Caller, InvalidToken
from tradehub.bootstrap import Hub
from tradehub.visibility import Visibility

from .problems import ProblemError
from .schemas import Strict


class ApiState:
    """What the routes of one app work with, kept in `app.state.api`."""

    def __init__(self, hub: Hub, registry: CollectorRegistry) -> None:
        self.hub = hub
        self.see = Visibility(hub.declarations, hub.views)
        self.registry = registry
        # Commands block on the store (and group commit gathers them), so they run on threads;
        # a plain executor costs less per call than anyio's worker-thread machinery.
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="tradehub-api")
        self.committer = AsyncGroupCommit(hub.declarations.save_events)

    async def offload(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking function on the API's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(function, *args, **kwargs))

    def close(self) -> None:
        self.committer.close()
        self.executor.shutdown(wait=True)


def state_of(request: Request) -> ApiState:
    return request.app.state.api


async def api_state(request: Request) -> ApiState:
    return state_of(request)


async def current_caller(request: Request) -> Caller:
    """The caller named by the bearer token; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "Missing bearer token", "send Authorization: Bearer <token>")
    verify = request.app.state.verify
    if verify.due():  # the revoked ids are read again about once a second, on a thread: never on the loop
        await state_of(request).offload(verify.revocations.refresh)
    try:
        return verify(token.strip())
    except InvalidToken as error:
        raise ProblemError(401, "unauthenticated", "Invalid bearer token", str(error)) from None


State = Annotated[ApiState, Depends(api_state)]
Authenticated = Annotated[Caller, Depends(current_caller)]


async def json_body(request: Request) -> Any:
    try:
        return load_json(await request.body())
    except MalformedJSON as error:
        raise ProblemError(400, "malformed-json", "Malformed JSON", str(error)) from None


def envelope(model: type[Strict], raw: Any) -> Any:
    """The request body as `model`; 422 naming every field at fault."""
    try:
        return model.model_validate(raw)
    except PydanticValidationError as error:
        errors = [{"path": json_path(e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
                  for e in error.errors()]
        raise ProblemError(422, "invalid-request", "Invalid request", errors=errors) from None


def invalid(error: InvalidDeclaration, prefix: str = "$") -> ProblemError:
    errors = [{"path": prefix + e.path[1:], "message": e.message} for e in error.errors]
    return ProblemError(422, "invalid-declaration", "Invalid declaration",
                        f"{len(errors)} field(s) failed validation", errors=errors)


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON straight from the handler: the response models document the shapes, tests check them."""
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")
