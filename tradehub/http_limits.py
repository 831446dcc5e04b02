"""Limits on a request's head, which uvicorn's HTTP/1.1 protocol lacks (docs/api.md, "Limits").

uvicorn parses requests with httptools and sets no bound on the request line
and header fields, nor on the time a client may take to send them: one 16 MB
header was read whole, and a client that opens a connection and sends nothing,
or a byte now and then, held it open for good. This protocol is uvicorn's own
with three bounds on each request's head, checked as the bytes come:

- `MAX_HEAD_BYTES`: the request line and header fields together; more is
  refused with 431 and the connection closed, before the rest is read;
- `MAX_HEADER_FIELDS`: more header fields is refused with 431 too;
- `HEAD_TIMEOUT`: seconds from a connection's opening (or from the first byte
  of a later request on it) until its head is complete; then 408, closed.

The body has its own bound (TRADEHUB_MAX_BODY_BYTES, in the API's middleware).
Between requests, uvicorn's keep-alive timeout closes an idle connection.

It also tells a response that never ends by itself (an event stream) that the
server is shutting down: uvicorn would otherwise wait for it for good.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADER_FIELDS = 100
HEAD_TIMEOUT = 10.0
# A callable a long response leaves in its request's scope; called when a graceful shutdown begins.
ON_SHUTDOWN = "tradehub.on_shutdown"


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing; `send_400_response` then answers with the refusal."""


def _refusal(status: int, reason: bytes, slug: str, title: str, detail: str) -> bytes:
    body = json.dumps({"type": f"urn:tradehub:problem:{slug}", "title": title, "status": status,
                       "detail": detail}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, reason, len(body))) + body


TOO_LARGE = _refusal(431, b"Request Header Fields Too Large", "headers-too-large",
                     "Request header fields too large",
                     f"a request's line and header fields may take {MAX_HEAD_BYTES} bytes and "
                     f"{MAX_HEADER_FIELDS} fields at most")
TOO_SLOW = _refusal(408, b"Request Timeout", "head-timeout", "Request head too slow",
                    f"a request's line and header fields must arrive within {HEAD_TIMEOUT:g} s")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the bounds on a request's head above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True  # from a request's first byte (or the connection's opening) to its last header
        self._head_bytes = 0  # bytes received while reading the head, raw (a field the parser has not finished)
        self._field_bytes = 0  # the request line and the fields the parser has finished
        self._fields = 0
        self._head_clock: asyncio.TimerHandle | None = None
        self._refused = False

    # ---- the clock ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """A graceful shutdown begins: a response still going that asked (`ON_SHUTDOWN`) is told, so that it
        ends itself and the connection closes."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and (hook := cycle.scope.get(ON_SHUTDOWN)):
            hook()
        super().shutdown()

    def _start_clock(self) -> None:
        if self._head_clock is None:
            self._head_clock = self.loop.call_later(HEAD_TIMEOUT, self._too_slow)

    def _stop_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def _too_slow(self) -> None:
        self._head_clock = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request head took over %g s", HEAD_TIMEOUT)
            self._refuse(TOO_SLOW)

    # ---- the size -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A field still being read is buffered whole by the parser: stop it here, not once it is complete.
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES and not self._refused:
            self._refuse(TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._field_bytes = self._fields = 0
        self._start_clock()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url), 0)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, 1)  # "name: value\r\n", near enough
        super().on_header(name, value)

    def _count(self, size: int, fields: int) -> None:
        self._field_bytes += size
        self._fields += fields
        if self._field_bytes > MAX_HEAD_BYTES or self._fields > MAX_HEADER_FIELDS:
            self._refused = True
            raise _HeadRefused

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._stop_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True  # what comes next on this connection is the next request's head

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with 400; one raised by `_count` is a head over the limits.
        if self._refused:
            self._refuse(TOO_LARGE)
        else:
            super().send_400_response(msg)

    def _refuse(self, response: bytes) -> None:
        self._refused = True
        self._stop_clock()
        self.transport.write(response)
        self.transport.close()
