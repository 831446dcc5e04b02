"""/v1/notifications: the pull feed of notifications, and the same as server-sent events (docs/api.md).

A notification is an overall status change or an agency decision on a declaration (projections/notifications.py),
read by whoever may see the declaration: a trader its own, an officer those routed to its agency, an admin all
(`visibility.feed_scope`). The feed is paged by cursor, oldest first; the stream sends the same payloads as they
are written, each with its cursor as the event's `id`, and resumes after `Last-Event-ID`.

Streams wait on the server, never in the browser: one task per process reads the feed's newest id every
`WATCH_INTERVAL` while any stream is open, and wakes the streams when it grows; each then reads its own scope.
A stream ends when its client goes, when the server shuts down (tradehub/http_limits.py, `ON_SHUTDOWN`), or
when the views' database cannot be read; the client reconnects with `Last-Event-ID` and loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from projections import notifications as feed
from projections.database import ViewDatabase
from tradehub.auth import Caller
from tradehub.http_limits import ON_SHUTDOWN
from tradehub.visibility import feed_scope

from .common import Authenticated, State, answer
from .problems import ProblemError, documented

log = logging.getLogger(__name__)
router = APIRouter(tags=["notifications"])

WATCH_INTERVAL = 0.5  # seconds between reads of the feed's newest id, while any stream is open
HEARTBEAT = 15.0  # seconds of quiet before a stream sends a comment, so proxies and clients know it lives
RECONNECT_MS = 3000  # the `retry:` a stream asks its client to wait before reconnecting
STREAM_PAGE = 100  # notifications read at once while a stream catches up
MAX_STREAMS_PER_CALLER = 8  # a tab each, within reason
MAX_STREAMS = 1000  # per process
_CURSOR = re.compile(r"[0-9]{1,19}")


class Notification(BaseModel):
    id: str = Field(description="the cursor: pass it as `after` (or `Last-Event-ID`) to read on from here")
    type: str = Field(description="declaration.status (overall status changed) or declaration.decision (an agency "
                                  "decided)", examples=["declaration.decision"])
    declaration_id: str
    reference: str = Field(description="the declarant's own reference")
    status: str = Field(description="the overall status for declaration.status; the agency's status for "
                                    "declaration.decision")
    agency: str | None = Field(description="the agency that decided; null for declaration.status")
    code: str | None = Field(description="the agency's answer code, if it gave one")
    time: str = Field(description="when the hub recorded it, ISO 8601 UTC")


class NotificationPage(BaseModel):
    items: list[Notification] = Field(description="oldest first")
    next: str | None = Field(description="the last item's cursor, for the next `after`; null when the page is "
                                         "empty (keep the cursor you have)")


def cursor_of(value: str | None, field: str) -> int | None:
    """A cursor from the query or a header: None if absent; 422 naming `field` unless it is one of ours."""
    if value is None:
        return None
    if not _CURSOR.fullmatch(value) or int(value) > feed.MAX_CURSOR:
        raise ProblemError(422, "invalid-request", "Invalid request", errors=[
            {"path": field, "message": f"must be a notification id (digits, at most {feed.MAX_CURSOR})"}])
    return int(value)


AfterQuery = Annotated[str | None, Query(max_length=40, description="the cursor to read after; omitted: from the "
                                                                    "first notification")]


@router.get("/v1/notifications", response_model=NotificationPage, responses=documented(401, 422))
def list_(api: State, who: Authenticated, after: AfterQuery = None,
          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
    """The notifications the caller may see after a cursor, oldest first: the pull queue beside webhooks."""
    party, agency = feed_scope(who)
    rows, following = feed.after(api.hub.views, cursor=cursor_of(after, "query.after") or 0, limit=limit,
                                 party=party, agency=agency)
    return answer({"items": [feed.payload(row) for row in rows],
                   "next": None if following is None else str(following)})


@router.get("/v1/notifications/stream", responses={
    200: {"description": "server-sent events: each `data:` is a notification (as in the feed), its `id:` the "
                         "cursor; comments are heartbeats", "content": {"text/event-stream": {}}},
    **documented(401, 422), 429: {"description": "too many open streams for this caller"}})
async def stream(request: Request, who: Authenticated, after: AfterQuery = None,
                 last_event_id: Annotated[str | None, Header(max_length=40)] = None) -> Response:
    """The notifications as they come, as server-sent events. A client that reconnects sends `Last-Event-ID` and
    gets what it missed; without it, `after`, and without either, from now on."""
    return await open_stream(request, who, last_event_id, after)


async def open_stream(request: Request, who: Caller, last_event_id: str | None, after: str | None,
                      headers: dict[str, str] | None = None) -> Response:
    """The event stream for one caller (the API's and the pages'): where it starts, checked, and its slot taken."""
    start = cursor_of(last_event_id, "header.last-event-id")
    if start is None:
        start = cursor_of(after, "query.after")
    streams = streams_of(request)
    party, agency = feed_scope(who)
    if start is None:
        start = await asyncio.to_thread(feed.latest_cursor, streams.views, party=party, agency=agency)
    opened = streams.open(who, party, agency, start)
    if opened is None:
        raise ProblemError(429, "too-many-streams", "Too many open streams",
                           f"at most {MAX_STREAMS_PER_CALLER} streams per caller; close one first")
    request.scope[ON_SHUTDOWN] = streams.close_all
    return EventStream(opened, headers)


def streams_of(request: Request) -> Streams:
    """The app's streams, made on first use (on the event loop, which their events belong to)."""
    state = request.app.state
    if getattr(state, "notification_streams", None) is None:
        state.notification_streams = Streams(state.api.hub.views)
    return state.notification_streams


class Streams:
    """The open event streams of one process, and the one task that watches the feed for all of them."""

    def __init__(self, views: ViewDatabase) -> None:
        self.views = views
        self.head = 0  # the feed's newest id as last read
        self._open: set[Stream] = set()
        self._per_caller: Counter[tuple[str, str]] = Counter()
        self._watch: asyncio.Task[None] | None = None
        self._closing = False

    def open(self, who: Caller, party: str | None, agency: str | None, start: int) -> Stream | None:
        """A new stream, or None if the caller (or the process) has as many open as it may."""
        key = (who.role, who.subject)
        if self._closing or self._per_caller[key] >= MAX_STREAMS_PER_CALLER or len(self._open) >= MAX_STREAMS:
            return None
        opened = Stream(self, key, party, agency, start)
        self._open.add(opened)
        self._per_caller[key] += 1
        if self._watch is None:
            self._watch = asyncio.create_task(self._watching(), name="notification-streams")
        return opened

    def release(self, opened: Stream) -> None:
        if opened in self._open:
            self._open.discard(opened)
            self._per_caller[opened.key] -= 1
            if not self._per_caller[opened.key]:
                del self._per_caller[opened.key]

    def close_all(self) -> None:
        """The server shuts down: every stream ends, and no new one opens."""
        self._closing = True
        for opened in list(self._open):
            opened.end()

    async def _watching(self) -> None:
        try:
            while self._open:
                try:
                    head = await asyncio.to_thread(feed.head, self.views)
                except Exception as error:  # noqa: BLE001 - the streams read on their own; try again in a beat
                    log.warning("cannot read the notifications' head: %s", error)
                else:
                    if head != self.head:
                        self.head = head
                        for opened in list(self._open):
                            opened.wake.set()
                await asyncio.sleep(WATCH_INTERVAL)
        finally:
            self._watch = None


class Stream:
    """One client's stream: its scope, where it stands, and what wakes it."""

    def __init__(self, streams: Streams, key: tuple[str, str], party: str | None, agency: str | None,
                 start: int) -> None:
        self.streams = streams
        self.key = key
        self.party = party
        self.agency = agency
        self.cursor = start
        self.wake = asyncio.Event()
        self.ended = False

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    async def events(self) -> AsyncIterator[bytes]:
        """The stream's bytes: the reconnection delay and where it starts, then notifications and heartbeats."""
        yield f"retry: {RECONNECT_MS}\nid: {self.cursor}\n\n".encode()
        while not self.ended:
            seen = self.streams.head
            try:
                rows, _ = await asyncio.to_thread(feed.after, self.streams.views, cursor=self.cursor,
                                                  limit=STREAM_PAGE, party=self.party, agency=self.agency)
            except Exception as error:  # noqa: BLE001 - the views' database is away: the client comes back later
                log.warning("a notification stream ends: %s", error)
                return  # and reconnects with Last-Event-ID
            if rows:
                self.cursor = rows[-1].id
                yield b"".join(message(row) for row in rows)
                continue
            if self.streams.head != seen:
                continue  # the feed grew while this stream read it
            self.wake.clear()
            if self.ended:
                break  # ended while it read, and the wake with it cleared just now
            try:
                await asyncio.wait_for(self.wake.wait(), HEARTBEAT)
            except TimeoutError:
                yield b": heartbeat\n\n"


def message(row: feed.Notification) -> bytes:
    """One notification as a server-sent event: its cursor as `id`, its payload as one line of `data`."""
    return f"id: {row.id}\ndata: {json.dumps(feed.payload(row), separators=(',', ':'))}\n\n".encode()


class EventStream(Response):
    """A `text/event-stream` response that ends when its client disconnects or its stream ends."""

    media_type = "text/event-stream"

    def __init__(self, opened: Stream, headers: dict[str, str] | None = None) -> None:
        # No body, so no Content-Length (as StreamingResponse): the body is what the stream sends.
        self.status_code = 200
        self.background = None
        self.init_headers({**(headers or {}), "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.opened = opened

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        listener = asyncio.create_task(self._until_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.opened.events():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went while we wrote
        finally:
            listener.cancel()
            self.opened.streams.release(self.opened)

    async def _until_disconnect(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.opened.end()
