"""Webhooks: each notification of a party's declaration, POSTed to the party's endpoints (docs/webhooks.md).

Two halves, run together by `tradehub worker webhooks`:

- `Webhooks`, a follower in a runner of its own (followers.runner, as dispatch is): it reads the
  notifications the notifications follower wrote (projections.notifications, in another process) after its
  own cursor, and writes one pending delivery per matching active subscription, moving the cursor in the same
  transaction: a notification is never lost and never gets two deliveries. Its cursor is a notification id,
  not a log position, because the rows it reads are written by another runner; it looks for them when the
  log grows and about once a second besides (`retry`), so nothing waits for the next event. It is not a view:
  a rebuild must never empty its tables, which would send everything again.
- `Sender`: outside any transaction of the log, it claims due deliveries with a lease, POSTs each, signed
  by the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`), through
  messaging.webhooks (the SSRF guard, a pinned address, one deadline), and logs the attempt. A subscription
  has one delivery in flight at most, its oldest (projections.subscriptions.Deliveries.claim), and parties
  take turns, so a slow endpoint delays only its own deliveries. A failed delivery is tried again on the
  `Schedule` (exponential back-off with jitter, two weeks by default) while the subscription's later ones wait
  behind it; when the schedule is spent, the subscription is disabled with the reason. Delivery is at least once: a sender
  killed mid-delivery leaves the delivery due again when its lease runs out, and it is sent again with the
  same `webhook-id`, which a receiver uses to drop the repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from messaging.webhooks import Answer, Guard, post, tls_context
from projections.database import Cursor, StaleTracking, ViewDatabase
from projections.notifications import after, payload
from projections.subscriptions import Claim, Deliveries, active, add_deliveries

log = logging.getLogger(__name__)
NAME = "webhooks"
CURSOR = "webhooks:notifications"  # the last notification turned into deliveries, in projection_tracking
PUMP_BATCH = 500  # notifications per read
PUMP_ROUNDS = 4  # reads per transaction at most: a backlog moves 2,000 notifications a second
USER_AGENT = "tradehub-webhooks/1"

# ---- the retry schedule -----------------------------------------------------------------------------

DEFAULT_SCHEDULE = "first=30s,max=1h,window=14d,jitter=0.2"
MAX_RETRIES = 10_000
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScheduleError(ValueError):
    """TRADEHUB_WEBHOOK_RETRY cannot be read as a schedule."""


@dataclass(frozen=True)
class Schedule:
    """When a failed delivery is tried again: after `first` seconds, then twice as long each time up to `max`
    (`ceiling`), for as many retries as fit in `window` seconds in all. Each wait is its base shortened by up to
    `jitter` (a fraction), at random, so endpoints that failed together are not all tried again together;
    jitter only shortens, so the retries always end within the window.

    CDS (the UK's customs system) retries a callback for two weeks; the default does too, starting at 30 s and
    settling at one retry an hour: about 350 attempts.
    """

    first: float = 30.0
    ceiling: float = 3600.0
    window: float = 14 * 86400.0
    jitter: float = 0.2
    bases: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.first > 0:
            raise ScheduleError("first must be more than 0 s")
        if self.ceiling < self.first:
            raise ScheduleError("max must be at least first")
        if self.window < 0:
            raise ScheduleError("window must be 0 (no retries) or more")
        if not 0 <= self.jitter < 1:
            raise ScheduleError("jitter must be a fraction from 0 up to (not including) 1")
        bases, total, wait = [], 0.0, self.first
        while total + wait <= self.window:
            bases.append(wait)
            if len(bases) > MAX_RETRIES:
                raise ScheduleError(f"more than {MAX_RETRIES} retries fit in the window: raise first or max")
            total += wait
            wait = min(self.ceiling, wait * 2)
        object.__setattr__(self, "bases", tuple(bases))

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """`first=30s,max=1h,window=14d,jitter=0.2` (any of them; the others keep their defaults)."""
        given: dict[str, float] = {}
        names = {"first": "first", "max": "ceiling", "window": "window", "jitter": "jitter"}
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in names:
                raise ScheduleError(f"unknown setting {key[:20]!r}; the settings are first, max, window and jitter")
            if key in given:
                raise ScheduleError(f"{key} is given twice")
            given[key] = _fraction(value.strip()) if key == "jitter" else _duration(key, value.strip())
        return cls(**{names[key]: value for key, value in given.items()})

    @property
    def attempts(self) -> int:
        """Attempts of one delivery at most: the first and each retry."""
        return 1 + len(self.bases)

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (from 1); None when no retry is left."""
        if not 1 <= attempt <= len(self.bases):
            return None
        return self.bases[attempt - 1] * (1 - self.jitter * draw())

    def describe(self) -> str:
        return f"{self.attempts} attempts over {_spoken(sum(self.bases))}"


def _duration(key: str, text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ScheduleError(f"{key} must be a duration such as 30s, 5m, 1h or 14d, got {text[:20]!r}")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ScheduleError(f"jitter must be a fraction such as 0.2, got {text[:20]!r}") from None


def _spoken(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"


# ---- the follower: notifications into deliveries ----------------------------------------------------

class Webhooks:
    """Turns each new notification into a pending delivery for every active subscription it matches."""

    name = NAME
    tables: Sequence[str] = ()  # projections.subscriptions.TABLES, created with the hub: never a view's to empty

    def __init__(self, database: ViewDatabase, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        """The log grew: take whatever notifications have been written since (the events themselves are the
        notifications follower's to read)."""
        self.pump(cursor)

    def retry(self, cursor: Cursor) -> int:
        """About once a second: notifications written since the log last grew."""
        return self.pump(cursor)

    def forget(self) -> None:
        """Nothing kept in memory."""

    def pump(self, cursor: Cursor) -> int:
        """Deliveries for the notifications after the cursor, and the cursor moved past them, in the caller's
        transaction; the number of notifications taken."""
        taken = 0
        for _ in range(PUMP_ROUNDS):
            start = self._cursor(cursor)
            rows, end = after(self.database, cursor=start, limit=PUMP_BATCH, party=None, agency=None)
            if end is None:
                break
            try:
                # The cursor moves first: a runner beside this one that moved it already makes this a no-op
                # here (and its row stays locked until this transaction ends on PostgreSQL).
                ViewDatabase.advance(cursor, CURSOR, start, end)
            except StaleTracking:
                break
            subscriptions = active(cursor, (row.declarant for row in rows))
            # A notification is the declarant's (notifications.after's party scope, visibility.may_see).
            add_deliveries(cursor, [(subscription.id, row.id, json.dumps(payload(row), separators=(",", ":")))
                                    for row in rows for subscription in subscriptions
                                    if subscription.party == row.declarant and row.type in subscription.events
                                    and row.id > subscription.since], due=self.clock())
            taken += len(rows)
            if len(rows) < PUMP_BATCH:
                break
        return taken

    @staticmethod
    def _cursor(cursor: Cursor) -> int:
        cursor.execute("SELECT position FROM projection_tracking WHERE name = ?", (CURSOR,))
        row = cursor.fetchone()
        return row[0] if row else 0


# ---- the sender: due deliveries to their endpoints --------------------------------------------------

class Sender:
    """Claims due deliveries, sends each, logs each attempt and schedules the next; `parallel` at a time, and at
    most `per_party` of one party's (a quarter of `parallel` unless given)."""

    def __init__(self, deliveries: Deliveries, guard: Guard, schedule: Schedule, *, timeout: float = 10.0,
                 parallel: int = 16, per_party: int | None = None, tls: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.time, draw: Callable[[], float] = random.random,
                 idle: float = 0.5) -> None:
        self.deliveries = deliveries
        self.guard = guard
        self.schedule = schedule
        self.timeout = timeout
        self.lease = lease_for(timeout)
        self.parallel = parallel
        self.per_party = per_party or max(1, parallel // 4)
        self.tls = tls or tls_context()  # one for every attempt
        self.clock = clock
        self.draw = draw
        self.idle = idle  # seconds between looks for due deliveries when none is
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def run(self, stop: threading.Event) -> None:
        """Send what comes due until `stop` is set; then let the attempts under way finish."""
        sending: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            free = self.parallel - len(sending)
            claims = await self._claim(free) if free > 0 else []
            sending |= {asyncio.create_task(self.send(claim)) for claim in claims}
            if claims and len(sending) < self.parallel:
                continue  # more may be due at once
            if sending:
                done, sending = await asyncio.wait(sending, timeout=self.idle, return_when=asyncio.FIRST_COMPLETED)
                _report(done)
            else:
                await asyncio.sleep(self.idle)
        if sending:
            done, _ = await asyncio.wait(sending)
            _report(done)

    async def send_due(self) -> int:
        """One round: every delivery due now (up to `parallel`) sent, and its attempt logged; how many."""
        claims = await self._claim(self.parallel)
        await asyncio.gather(*(self.send(claim) for claim in claims))
        return len(claims)

    async def _claim(self, limit: int) -> list[Claim]:
        try:
            return await asyncio.to_thread(self.deliveries.claim, self.owner, now=self.clock(), lease=self.lease,
                                           limit=limit, per_party=self.per_party)
        except Exception:  # noqa: BLE001 - the database is away: try again at the next look
            log.exception("cannot claim webhook deliveries; trying again")
            return []

    async def send(self, claim: Claim) -> None:
        """One attempt, and its outcome logged. An error of the hub's own while sending is a failed attempt too,
        retried on the schedule: left unrecorded, the delivery would stay leased and be resent as abandoned."""
        started = time.monotonic()
        try:
            answer = await post(self.guard, claim.url, claim.payload.encode(), self.headers(claim),
                                timeout=self.timeout, verify=self.tls)
        except Exception:  # noqa: BLE001 - logged here, recorded as the attempt's failure
            log.exception("webhook %s: the attempt failed inside the hub", claim.id)
            answer = Answer(None, "the hub could not make this attempt (an internal error); it will be tried again",
                            round((time.monotonic() - started) * 1000))
        await asyncio.to_thread(self._record, claim, answer)

    def headers(self, claim: Claim) -> dict[str, str]:
        """The Standard Webhooks headers, signed now: a retry carries the same id and body, a fresh time."""
        signed_at = datetime.fromtimestamp(int(self.clock()), UTC)
        return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": claim.id,
                "webhook-timestamp": str(int(signed_at.timestamp())),
                "webhook-signature": Webhook(claim.secret).sign(claim.id, signed_at, claim.payload)}

    def _record(self, claim: Claim, answer: Answer) -> None:
        now = self.clock()
        delay = None if answer.delivered else self.schedule.delay(claim.attempt, self.draw)
        reason = None
        if not answer.delivered and delay is None:
            last = answer.error or f"HTTP {answer.status}"
            reason = (f"disabled after delivery {claim.id} failed {claim.attempt} times "
                      f"({self.schedule.describe()}); last: {last}")[:500]
            log.warning("webhook subscription %s disabled: %s", claim.subscription_id, reason)
        try:
            self.deliveries.record(claim, self.owner, status=answer.status, error=answer.error,
                                   latency_ms=answer.latency_ms, delivered=answer.delivered,
                                   next_due=None if delay is None else now + delay, disable=reason, now=now)
        except Exception:  # noqa: BLE001 - its lease runs out and it is sent again: at least once
            log.exception("cannot record the attempt of webhook %s; it will be sent again", claim.id)


def _report(done: set[asyncio.Task[None]]) -> None:
    """Log what a finished sending task raised (`send` records its own failures: this is the last resort)."""
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("a webhook sending task failed", exc_info=task.exception())


def lease_for(timeout: float) -> float:
    """How long a claim lasts: three deadlines, so that only a sender that died (or hangs) loses its claim."""
    return 3 * timeout
