"""The HTTP API under /v1 (docs/api.md): parse, authorise, hand the command on, answer.

The routes live in one module per resource (declarations, views, alerts,
system); what they share is in common.py, the documented shapes in
schemas.py, the problems they answer with in errors.py.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from tradehub.auth import Revocations, TokenVerifier
from tradehub.bootstrap import Hub

from . import (
    alerts,
    attachments,
    certificates,
    dead_letters,
    declarations,
    dispatch,
    licences,
    notifications,
    parties,
    personal_data,
    subscriptions,
    system,
    views,
)
from .common import ApiState
from .errors import install_error_handlers
from .middleware import Edge
from .schemas import install_openapi


def create_app(hub: Hub) -> FastAPI:
    """The API for one wired hub. Nothing here connects at import time."""
    api = ApiState(hub, system.metrics_registry(hub))
    app = FastAPI(title="Trade hub", version="1", summary="Single window for trade and port declarations",
                  docs_url=None, redoc_url=None, lifespan=_lifespan(api),
                  # No OpenTelemetry here: its per-request check of the providers costs more than
                  # the JSON parsing of a declaration. Prometheus at /metrics is the hub's telemetry.
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.verify = TokenVerifier(hub.settings.secret, Revocations(hub.views))
    app.state.api = api
    for module in (declarations, attachments, certificates, views, alerts, dead_letters, dispatch, parties, licences,
                   notifications, subscriptions, personal_data, system):
        app.include_router(module.router)
    install_error_handlers(app)
    install_openapi(app)
    # Document uploads alone may be larger than TRADEHUB_MAX_BODY_BYTES: 10 MB and their multipart framing.
    upload = (*attachments.UPLOAD_ROUTE, max(hub.settings.max_body_bytes, attachments.UPLOAD_LIMIT))
    app.add_middleware(Edge, limit=hub.settings.max_body_bytes, registry=api.registry, wider=[upload])
    return app


def _lifespan(api: ApiState) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every request for tens of milliseconds.
        gc.collect()
        gc.freeze()
        yield
        api.close()

    return lifespan
