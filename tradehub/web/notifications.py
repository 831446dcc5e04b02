"""/notifications/stream: the notifications feed as server-sent events for the pages' session (docs/api.md).

The same stream as the API's `/v1/notifications/stream` (tradehub/api/notifications.py), for a browser signed in
with the session cookie: the trader desk's one script (static/live.js) opens it with `EventSource`, which
reconnects by itself with `Last-Event-ID`. The page may pass `?after=` the cursor it was rendered at, so that
nothing written between the page and the stream is missed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from tradehub.api.notifications import open_stream

from .pages import SECURITY_HEADERS, SignedIn

router = APIRouter(include_in_schema=False)


@router.get("/notifications/stream")
async def notification_stream(request: Request, who: SignedIn,
                              after: Annotated[str | None, Query(max_length=40)] = None,
                              last_event_id: Annotated[str | None, Header(max_length=40)] = None) -> Response:
    return await open_stream(request, who, last_event_id, after,
                             {key: value for key, value in SECURITY_HEADERS.items() if key != "Cache-Control"})
