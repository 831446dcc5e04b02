"""/v1/subscriptions: a trader's webhook endpoints, and the log of what was sent to them (docs/webhooks.md).

A trader registers an endpoint for some notification types; the hub answers with a signing secret, shown this
once (Standard Webhooks' `whsec_` form). Each notification of the party's declarations (the pull feed's, see
projections/notifications.py) is then POSTed to each matching active endpoint, signed, and retried on a
schedule; the delivery log lists every attempt. Subscriptions are a trader's alone (`visibility.subscriber`):
officers and admins are refused, and another party's subscription is not found, as an unknown id is.

The URL is checked when it is registered (messaging/webhooks.py: https only, no private, loopback or
link-local address, also after resolving its name), and again before every delivery.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, field_validator

from messaging.webhooks import MAX_URL, Refused
from projections import notifications as feed
from projections.subscriptions import MAX_PER_PARTY, InvalidCursor, LimitReached, Subscriptions
from tradehub import visibility
from tradehub.bootstrap import Hub, webhook_guard

from .common import ApiState, Authenticated, State, answer, envelope, json_body
from .problems import ProblemError, documented
from .schemas import Strict

router = APIRouter(tags=["webhooks"])

EventType = Literal[tuple(feed.TYPES.values())]  # type: ignore[valid-type]
SECRET_BYTES = 32
SubscriptionId = Annotated[str, Path(max_length=64, description="the subscription's id")]


class SubscriptionRequest(Strict):
    url: str = Field(max_length=MAX_URL, description="the endpoint: https://, on a public address",
                     examples=["https://hooks.example.com/tradehub"])
    events: list[EventType] = Field(min_length=1, max_length=len(feed.TYPES),  # type: ignore[valid-type]
                                    description="the notification types to send")

    @field_validator("events")
    @classmethod
    def _once_each(cls, events: list[str]) -> list[str]:
        if len(set(events)) != len(events):
            raise ValueError("names an event type twice")
        return events


class SubscriptionResource(BaseModel):
    id: str
    url: str
    events: list[str]
    created: str = Field(description="ISO 8601 UTC")
    status: Literal["active", "disabled"]
    disabled_reason: str | None = Field(description="why the hub stopped sending (its retries were spent), or null")
    disabled_at: str | None


class CreatedSubscription(SubscriptionResource):
    secret: str = Field(description="the Standard Webhooks signing secret (whsec_ and base64): shown this once; "
                                    "verify each delivery's webhook-signature with it")


class SubscriptionList(BaseModel):
    items: list[SubscriptionResource] = Field(description="oldest first")


class Attempt(BaseModel):
    webhook_id: str = Field(description="the webhook-id header: the same on every attempt of one notification")
    notification_id: str = Field(description="the notification's id in the pull feed")
    attempt: int = Field(description="from 1")
    time: str = Field(description="when the attempt started, ISO 8601 UTC")
    outcome: Literal["delivered", "failed", "in_flight", "abandoned"] = Field(
        description="abandoned: the sending process stopped before an answer; the delivery was sent again")
    status_code: int | None = Field(description="the endpoint's HTTP status, if it answered")
    error: str | None = Field(description="why the attempt failed without a 2xx: no answer, a refused address, a "
                                          "redirect (never followed)")
    latency_ms: int | None
    next_try: str | None = Field(description="when the delivery is tried again after this failure; null if it "
                                             "will not be")


class AttemptPage(BaseModel):
    items: list[Attempt] = Field(description="by time, oldest first")
    next: str | None = Field(description="pass as `after` for the next page; null on the last")


def _store(api: ApiState) -> Subscriptions:
    return Subscriptions(api.hub.views, api.hub.settings.cipher_key)


def _not_found(ident: str) -> ProblemError:
    """The same answer for an unknown id and another party's."""
    return ProblemError(404, "not-found", "No such subscription", f"no subscription {ident[:64]}")


_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": SubscriptionRequest.model_json_schema()}}}}


@router.post("/v1/subscriptions", status_code=201, response_model=CreatedSubscription,
             responses=documented(400, 401, 403, 409, 413, 422), openapi_extra=_BODY)
async def create(request: Request, api: State, who: Authenticated) -> Response:
    """Register an endpoint (traders; at most 10 per party). The answer holds the signing secret, shown this
    once. The endpoint is sent the notifications that come after this moment."""
    party = visibility.subscriber(who)
    body = envelope(SubscriptionRequest, await json_body(request))
    try:
        made = await api.offload(register, api.hub, party, body.url, body.events)
    except Refused as error:
        raise ProblemError(422, "invalid-request", "Invalid request",
                           errors=[{"path": "$.url", "message": f"the URL {error}"}]) from None
    except LimitReached:
        raise ProblemError(409, "too-many-subscriptions", "Too many subscriptions",
                           f"a party may have at most {MAX_PER_PARTY} subscriptions; delete one first") from None
    # The secret is in this answer: no cache on the way may keep it.
    return answer(made, 201, {"Location": f"/v1/subscriptions/{made['id']}", "Cache-Control": "no-store"})


def register(hub: Hub, party: str, url: str, events: Sequence[str]) -> dict[str, Any]:
    """Check the URL (again after resolving its name), make a signing secret and store the subscription; the
    created subscription with its secret. `Refused` names what is wrong with the URL; `LimitReached` when the
    party has MAX_PER_PARTY already. Shared by the API and the trader desk's page."""
    guard = webhook_guard(hub.settings)
    guard.addresses(guard.check(url))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    since = feed.latest_cursor(hub.views, party=party, agency=None)
    made = Subscriptions(hub.views, hub.settings.cipher_key).create(party, url, events, secret, now=time.time(),
                                                                    since=since)
    return {**made, "secret": secret}


@router.get("/v1/subscriptions", response_model=SubscriptionList, responses=documented(401, 403))
def list_(api: State, who: Authenticated) -> Response:
    """The caller's party's subscriptions (without their secrets)."""
    return answer({"items": _store(api).listed(visibility.subscriber(who))})


@router.get("/v1/subscriptions/{ident}", response_model=SubscriptionResource, responses=documented(401, 403, 404))
def read(ident: SubscriptionId, api: State, who: Authenticated) -> Response:
    """One subscription: active, or disabled with the reason."""
    found = _store(api).get(visibility.subscriber(who), ident)
    if found is None:
        raise _not_found(ident)
    return answer(found)


@router.delete("/v1/subscriptions/{ident}", status_code=204, responses=documented(401, 403, 404))
def delete(ident: SubscriptionId, api: State, who: Authenticated) -> Response:
    """Stop sending to this endpoint, and drop its deliveries and their log."""
    if not _store(api).delete(visibility.subscriber(who), ident):
        raise _not_found(ident)
    return Response(status_code=204)


@router.get("/v1/subscriptions/{ident}/deliveries", response_model=AttemptPage,
            responses=documented(401, 403, 404, 422))
def deliveries(
    ident: SubscriptionId,
    api: State,
    who: Authenticated,
    after: Annotated[str | None, Query(max_length=400, description="a page's `next`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Every delivery attempt to this endpoint, oldest first: its webhook id, status code or error, latency
    and next try."""
    try:
        page = _store(api).attempts(visibility.subscriber(who), ident, after=after, limit=limit)
    except InvalidCursor as error:
        raise ProblemError(422, "invalid-request", "Invalid query",
                           errors=[{"path": "query.after", "message": str(error)}]) from None
    if page is None:
        raise _not_found(ident)
    items, following = page
    return answer({"items": items, "next": following})
