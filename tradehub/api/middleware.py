"""The API's one ASGI middleware: a cap on request bodies, and request metrics.

Both jobs sit in one layer because every layer wraps `receive` and `send` for
every request, and on the submit path those wrappers are a measurable share of
the CPU.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

Scope = dict[str, Any]


class _BodyTooLarge(Exception):
    pass


# (method, path pattern, limit): a route whose bodies may be larger than the API's limit (a document upload).
WiderLimit = tuple[str, re.Pattern[str], int]


class Edge:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length says so; count
    requests and their latency per route template (not per raw path).

    `wider` names the few routes with a limit of their own (method and a pattern the whole path must match):
    every other route keeps `limit`."""

    def __init__(self, app: Any, limit: int, registry: CollectorRegistry, wider: Sequence[WiderLimit] = ()) -> None:
        self.app = app
        self.limit = limit
        self.wider = tuple(wider)
        self.requests = Counter("tradehub_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("tradehub_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 0
        received = 0
        limit = self._limit_for(scope) if self.wider else self.limit

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge
            return message

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                raise _BodyTooLarge
            await self.app(scope, counting_receive, recording_send)
        except _BodyTooLarge:
            if not status:
                status = 413
                await self._refuse(send, limit, page=not scope["path"].startswith("/v1/"))
        except BaseException:
            status = status or 500
            raise
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status or 500)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)

    def _limit_for(self, scope: Scope) -> int:
        for method, pattern, limit in self.wider:
            if scope["method"] == method and pattern.fullmatch(scope["path"]):
                return limit
        return self.limit

    async def _refuse(self, send: Any, limit: int, *, page: bool) -> None:
        """413: a problem document for the API, a plain page for a browser's form post (the pages)."""
        if page:
            body = (f"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Too large · Trade hub</title>"
                    f"<h1>Too large</h1><p>What was sent is larger than {limit:,} bytes, the most this hub takes. "
                    f"Nothing was stored. Go back and send less: a smaller file, or the declaration through the "
                    f"API.</p></html>").encode()
            headers = [(b"content-type", b"text/html; charset=utf-8"),
                       (b"content-security-policy", b"default-src 'none'")]
        else:
            body = json.dumps({"type": "urn:tradehub:problem:too-large", "title": "Request body too large",
                               "status": 413, "detail": f"the limit is {limit} bytes"}).encode()
            headers = [(b"content-type", b"application/problem+json")]
        await send({"type": "http.response.start", "status": 413,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
