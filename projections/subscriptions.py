"""Webhook subscriptions and their deliveries, kept beside the views (docs/webhooks.md).

Three tables, owned here:

- `webhook_subscriptions`: a trader's endpoints. The signing secret is sealed under the hub's cipher key
  (projections.sealing, purpose "webhook-secrets", bound to the subscription's id) when it has one, so a
  copy of the views' database does not let anyone sign as the hub. `since` is the notification cursor when
  the subscription was made: it is sent what comes after, not the party's history.
- `webhook_deliveries`: one row per (subscription, notification), written by the webhooks follower in the
  same transaction as its cursor (never lost, never twice), with the payload as it will be signed on every
  attempt, its state (pending, delivered, failed, or suspended when its subscription was disabled), when it is
  next due, and a lease: a sender claims a delivery for `lease` seconds before it sends, so a sender killed
  mid-delivery leaves it due again once the lease runs out, and two senders never hold one delivery at once.
  A subscription's deliveries go one at a time, oldest first (`Deliveries.claim`): while its endpoint fails,
  only the oldest is retried and the rest wait behind it.
- `webhook_attempts`: every attempt, written when it starts ("in flight") and completed with its outcome,
  so one cut short by a crash stays in the log as "abandoned".

A subscription is not an event-sourced aggregate: it concerns one trader's endpoint, not a declaration, and
nothing in the log's order depends on it; what must not be lost (a delivery per notification) is tied to
the follower's cursor in this same database. A rebuild of the views never empties these tables (the
webhooks follower runs in its own runner, like dispatch), since that would send everything again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .database import Cursor, ViewDatabase
from .sealing import Sealer

log = logging.getLogger(__name__)
MAX_PER_PARTY = 10
PURPOSE = "webhook-secrets"
ACTIVE, DISABLED = "active", "disabled"
PENDING, DELIVERED, FAILED, SUSPENDED = "pending", "delivered", "failed", "suspended"  # a delivery's state
IN_FLIGHT, ABANDONED = "in_flight", "abandoned"  # an attempt's outcome besides delivered and failed
_DELIVERIES = uuid.UUID("9d0c6a52-0f7e-4a0c-9a1e-5f3d2b7c1e40")  # namespace of webhook ids

TABLES = (
    "CREATE TABLE IF NOT EXISTS webhook_subscriptions ("
    " id TEXT PRIMARY KEY, party TEXT NOT NULL, url TEXT NOT NULL, events TEXT NOT NULL, secret TEXT NOT NULL,"
    " created TEXT NOT NULL, since BIGINT NOT NULL, status TEXT NOT NULL, disabled_reason TEXT, disabled_at TEXT)",
    "CREATE INDEX IF NOT EXISTS webhook_subscriptions_by_party ON webhook_subscriptions (party, status)",
    # How many subscriptions each party has: the row every creation of that party updates, which serialises
    # them on either store, so two racing creations cannot both take the tenth place.
    "CREATE TABLE IF NOT EXISTS webhook_quota (party TEXT PRIMARY KEY, subscriptions INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS webhook_deliveries ("
    " id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, notification_id BIGINT NOT NULL, payload TEXT NOT NULL,"
    " state TEXT NOT NULL, attempts INTEGER NOT NULL, due DOUBLE PRECISION NOT NULL, lease_owner TEXT,"
    " lease_until DOUBLE PRECISION, UNIQUE (subscription_id, notification_id))",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, due)",
    # A subscription's oldest pending delivery (its head, the only one a sender may take): one index probe each.
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_head ON webhook_deliveries (subscription_id, state,"
    " notification_id)",
    "CREATE TABLE IF NOT EXISTS webhook_attempts ("
    " delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, subscription_id TEXT NOT NULL,"
    " notification_id BIGINT NOT NULL, at TEXT NOT NULL, outcome TEXT NOT NULL, status_code INTEGER,"
    " error TEXT, latency_ms INTEGER, next_try TEXT, PRIMARY KEY (delivery_id, attempt))",
    "CREATE INDEX IF NOT EXISTS webhook_attempts_log ON webhook_attempts (subscription_id, at, delivery_id, attempt)",
)


class LimitReached(Exception):
    """The party has `MAX_PER_PARTY` subscriptions already."""


class InvalidCursor(ValueError):
    """A delivery-log cursor this table never gave out."""


def stamp(seconds: float) -> str:
    """A POSIX time as the tables write it: UTC, fixed width, so that text order is time order."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def webhook_id(subscription_id: str, notification_id: int) -> str:
    """The `webhook-id` of a notification sent to a subscription: the same on every attempt and replay."""
    return "msg_" + uuid.uuid5(_DELIVERIES, f"{subscription_id}/{notification_id}").hex


_SUBSCRIPTION = "id, url, events, created, status, disabled_reason, disabled_at"


def _subscription(row: Sequence[Any]) -> dict[str, Any]:
    ident, url, events, created, status, reason, disabled_at = row
    return {"id": ident, "url": url, "events": events.split(), "created": created, "status": status,
            "disabled_reason": reason, "disabled_at": disabled_at}


class Subscriptions:
    """A party's subscriptions: made, listed, read and deleted only through its own party, so another party's
    id is not found, exactly as an unknown one."""

    def __init__(self, database: ViewDatabase, cipher_key: str | None = None) -> None:
        self.database = database
        self.sealer = Sealer(cipher_key or None, PURPOSE)

    def create(self, party: str, url: str, events: Sequence[str], secret: str, *, now: float,
               since: int) -> dict[str, Any]:
        """A new active subscription, or `LimitReached`."""
        ident = str(uuid.uuid4())
        with self.database.transaction() as cursor:
            cursor.execute(
                "INSERT INTO webhook_quota (party, subscriptions) VALUES (?, 1) ON CONFLICT (party) DO UPDATE"
                " SET subscriptions = webhook_quota.subscriptions + 1 WHERE webhook_quota.subscriptions < ?",
                (party, MAX_PER_PARTY))
            if cursor.rowcount != 1:
                raise LimitReached(party)
            cursor.execute(
                "INSERT INTO webhook_subscriptions (id, party, url, events, secret, created, since, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ident, party, url, " ".join(events), self.sealer.seal_text(secret, ident.encode()), stamp(now),
                 since, ACTIVE))
        return self.get(party, ident)  # type: ignore[return-value]

    def listed(self, party: str) -> list[dict[str, Any]]:
        rows = self.database.query(f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions WHERE party = ?"
                                   " ORDER BY created, id", (party,))
        return [_subscription(row) for row in rows]

    def get(self, party: str, ident: str) -> dict[str, Any] | None:
        rows = self.database.query(f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions WHERE party = ? AND id = ?",
                                   (party, ident))
        return _subscription(rows[0]) if rows else None

    def delete(self, party: str, ident: str) -> bool:
        """Remove the subscription with its deliveries and their log; False if the party has none by this id.

        A sender holding one of its deliveries then finds it gone and records nothing.
        """
        with self.database.transaction() as cursor:
            cursor.execute("DELETE FROM webhook_subscriptions WHERE party = ? AND id = ?", (party, ident))
            if cursor.rowcount != 1:
                return False
            cursor.execute("UPDATE webhook_quota SET subscriptions = subscriptions - 1 WHERE party = ?", (party,))
            cursor.execute("DELETE FROM webhook_deliveries WHERE subscription_id = ?", (ident,))
            cursor.execute("DELETE FROM webhook_attempts WHERE subscription_id = ?", (ident,))
        return True

    def attempts(self, party: str, ident: str, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]],
                                                                                           str | None] | None:
        """The subscription's delivery attempts by time, oldest first, after the cursor `after`, and the cursor
        of the next page; None if the party has no subscription by this id. `InvalidCursor` for a cursor
        this table never gave out."""
        if self.get(party, ident) is None:
            return None
        where, params = "subscription_id = ?", [ident]
        if after:
            at, delivery, attempt = decode_cursor(after)
            where += (" AND (at > ? OR (at = ? AND delivery_id > ?)"
                      " OR (at = ? AND delivery_id = ? AND attempt > ?))")
            params += [at, at, delivery, at, delivery, attempt]
        rows = self.database.query(
            "SELECT delivery_id, notification_id, attempt, at, outcome, status_code, error, latency_ms, next_try"
            f" FROM webhook_attempts WHERE {where} ORDER BY at, delivery_id, attempt LIMIT ?", (*params, limit + 1))
        items = [{"webhook_id": delivery, "notification_id": str(notification), "attempt": attempt, "time": at,
                  "outcome": outcome, "status_code": status, "error": error, "latency_ms": latency,
                  "next_try": next_try}
                 for delivery, notification, attempt, at, outcome, status, error, latency, next_try in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return items, (encode_cursor(last[3], last[0], last[2]) if last else None)


def encode_cursor(at: str, delivery: str, attempt: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, delivery, attempt]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, int]:
    try:
        at, delivery, attempt = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("not a delivery-log cursor from this API") from None
    if not (isinstance(at, str) and isinstance(delivery, str) and isinstance(attempt, int)):
        raise InvalidCursor("not a delivery-log cursor from this API")
    return at, delivery, attempt


# ---- deliveries: the follower's and the sender's side ------------------------------------------------

@dataclass(frozen=True)
class Active:
    """An active subscription, as the follower matches notifications against it."""

    id: str
    party: str
    events: frozenset[str]
    since: int


def active(cursor: Cursor, parties: Iterable[str]) -> list[Active]:
    """The active subscriptions of these parties, read inside the caller's transaction."""
    wanted = sorted(set(parties))
    if not wanted:
        return []
    cursor.execute("SELECT id, party, events, since FROM webhook_subscriptions WHERE status = ? AND party IN"
                   f" ({', '.join('?' * len(wanted))})", (ACTIVE, *wanted))
    return [Active(ident, party, frozenset(events.split()), since) for ident, party, events, since in cursor.fetchall()]


def add_deliveries(cursor: Cursor, deliveries: Sequence[tuple[str, int, str]], *, due: float) -> None:
    """Pending deliveries of (subscription id, notification id, payload JSON), due at `due`; one that exists
    already (the same notification for the same subscription) is left as it is."""
    cursor.bulk(
        "INSERT INTO webhook_deliveries (id, subscription_id, notification_id, payload, state, attempts, due)"
        " SELECT id, subscription_id, notification_id, payload, 'pending', 0, due FROM {rows} WHERE true"
        " ON CONFLICT DO NOTHING",
        "id text, subscription_id text, notification_id bigint, payload text, due double precision",
        [(webhook_id(subscription, notification), subscription, notification, body, due)
         for subscription, notification, body in deliveries])


@dataclass(frozen=True)
class Claim:
    """A delivery a sender holds until `lease_until`, with what it needs to send it."""

    id: str  # the webhook id
    subscription_id: str
    notification_id: int
    url: str
    secret: str = field(repr=False)  # never in a log line or a traceback's locals
    payload: str
    attempt: int  # this attempt's number, from 1


class Deliveries:
    """The deliveries of one views database, as senders claim them, and the log of their attempts."""

    def __init__(self, database: ViewDatabase, cipher_key: str | None = None) -> None:
        self.database = database
        self.sealer = Sealer(cipher_key or None, PURPOSE)

    def claim(self, owner: str, *, now: float, lease: float, limit: int, per_party: int | None = None) -> list[Claim]:
        """Up to `limit` due deliveries of active subscriptions, each leased to `owner` for `lease` seconds.

        Fair, so that one trader's slow or failing endpoints delay only their own deliveries:

        - a subscription has at most one delivery in flight, its oldest pending one (its head); the others wait
          behind it, so while an endpoint fails only its head is retried, on the schedule, and the rest follow
          once it is delivered;
        - the heads are taken in turn across parties (every party's first due, then every party's second), and
          no party holds more than `per_party` leases at once, counting every sender's.

        Each is taken by a compare-and-set on its lease, so two senders never hold the same delivery, and
        its attempt is logged as in flight in the same transaction. An attempt still in flight under an
        expired lease was cut short (its sender died): it is logged as abandoned. One delivery that cannot be
        taken (say its secret no longer opens) is logged and skipped; the others are still taken.
        """
        heads = self.database.query(
            "SELECT d.id, s.party, d.due, d.lease_until FROM webhook_subscriptions s JOIN webhook_deliveries d"
            " ON d.id = (SELECT h.id FROM webhook_deliveries h WHERE h.subscription_id = s.id AND h.state = ?"
            " ORDER BY h.notification_id LIMIT 1) WHERE s.status = ? ORDER BY d.due, d.id", (PENDING, ACTIVE))
        claims = []
        for ident in _in_turn(heads, now=now, limit=limit, per_party=per_party or limit):
            try:
                with self.database.transaction() as cursor:
                    claim = self._take(cursor, ident, owner, now, lease)
            except Exception:  # noqa: BLE001 - one bad delivery must not stop the others being sent
                log.exception("cannot claim webhook delivery %s; skipped this round", ident)
                continue
            if claim is not None:
                claims.append(claim)
        return claims

    def _take(self, cursor: Cursor, ident: str, owner: str, now: float, lease: float) -> Claim | None:
        cursor.execute(
            "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ?, attempts = attempts + 1"
            " WHERE id = ? AND state = ? AND due <= ? AND (lease_until IS NULL OR lease_until < ?)",
            (owner, now + lease, ident, PENDING, now, now))
        if cursor.rowcount != 1:
            return None  # another sender took it first
        cursor.execute(
            "SELECT d.subscription_id, d.notification_id, d.payload, d.attempts, s.url, s.secret"
            " FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE d.id = ?",
            (ident,))
        subscription, notification, payload, attempt, url, secret = cursor.fetchone()
        cursor.execute("UPDATE webhook_attempts SET outcome = ?, error = ? WHERE delivery_id = ? AND outcome = ?",
                       (ABANDONED, "no answer recorded: the delivering process stopped before it had one, and "
                                   "its lease ran out", ident, IN_FLIGHT))
        cursor.execute("INSERT INTO webhook_attempts (delivery_id, attempt, subscription_id, notification_id, at,"
                       " outcome) VALUES (?, ?, ?, ?, ?, ?)",
                       (ident, attempt, subscription, notification, stamp(now), IN_FLIGHT))
        return Claim(ident, subscription, notification, url, self.sealer.open_text(secret, subscription.encode()),
                     payload, attempt)

    def record(self, claim: Claim, owner: str, *, status: int | None, error: str | None, latency_ms: int,
               delivered: bool, next_due: float | None, disable: str | None, now: float) -> None:
        """The outcome of `claim`'s attempt: delivered; failed and due again at `next_due`; or failed for good,
        with the subscription disabled for the reason `disable`.

        A delivery that is gone (its subscription deleted meanwhile) records nothing. One whose lease this
        sender lost (it took longer than the lease) records its attempt, and a success, but leaves a retry's
        scheduling to the sender that holds it now.
        """
        outcome = DELIVERED if delivered else FAILED
        with self.database.transaction() as cursor:
            cursor.execute("UPDATE webhook_attempts SET outcome = ?, status_code = ?, error = ?, latency_ms = ?,"
                           " next_try = ? WHERE delivery_id = ? AND attempt = ?",
                           (outcome, status, error, latency_ms, None if next_due is None else stamp(next_due),
                            claim.id, claim.attempt))
            if delivered:
                cursor.execute("UPDATE webhook_deliveries SET state = ?, lease_owner = NULL, lease_until = NULL"
                               " WHERE id = ? AND state = ?", (DELIVERED, claim.id, PENDING))
                return
            cursor.execute(
                "UPDATE webhook_deliveries SET state = ?, due = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND state = ? AND lease_owner = ? AND attempts = ?",
                (PENDING if next_due is not None else FAILED, now if next_due is None else next_due, claim.id,
                 PENDING, owner, claim.attempt))
            if cursor.rowcount == 1 and disable is not None:
                cursor.execute("UPDATE webhook_subscriptions SET status = ?, disabled_reason = ?, disabled_at = ?"
                               " WHERE id = ? AND status = ?",
                               (DISABLED, disable, stamp(now), claim.subscription_id, ACTIVE))
                # What waited behind it is kept (the log shows it was never sent) but no sender looks at it again.
                cursor.execute("UPDATE webhook_deliveries SET state = ? WHERE subscription_id = ? AND state = ?",
                               (SUSPENDED, claim.subscription_id, PENDING))


def _in_turn(heads: Sequence[Sequence[Any]], *, now: float, limit: int, per_party: int) -> list[str]:
    """Of the subscriptions' heads (id, party, due, lease_until), by due time: the ids to take now, parties in
    turn, each party's leases (those held already included) at most `per_party`."""
    held: dict[str, int] = {}
    due: dict[str, list[str]] = {}
    for ident, party, due_at, lease_until in heads:
        if lease_until is not None and lease_until >= now:
            held[party] = held.get(party, 0) + 1
        elif due_at <= now:
            due.setdefault(party, []).append(ident)
    queues = {party: idents[:max(0, per_party - held.get(party, 0))] for party, idents in due.items()}
    taken: list[str] = []
    for turn in range(max(map(len, queues.values()), default=0)):
        taken += [idents[turn] for idents in queues.values() if turn < len(idents)]
    return taken[:limit]
