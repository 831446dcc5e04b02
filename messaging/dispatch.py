"""Dispatch: the hub's event log, followed per agency, published as that agency's messages.

Each agency's dispatch is a view for the projection runner (projections.runner),
with its own tracked position, so one agency's trouble never holds up the
others. For a batch of events it builds the agency's messages with
`adapters.outbound.messages_for` (the path `tradehub render` uses), publishes
them all and waits until the broker has acknowledged every one, then records
them and moves its position in one transaction.

- A crash after publishing and before committing publishes the batch again on
  restart, with the same message ids: the broker drops the repeats inside its
  duplicate window, and agencies de-duplicate by id beyond it.
- A message that cannot be built or validated is a bug: the runner reports it
  in the log and on /healthz and retries the batch, so the agency's dispatch
  stops there, loudly. Nothing is ever skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from adapters.messages import Change, Message, advance
from adapters.outbound import messages_for
from hub.declarations import Declaration, Declarations, RoutingRules
from hub.declarations.replay import Replay
from projections.database import Cursor

MESSAGES_TABLE = (
    "CREATE TABLE IF NOT EXISTS agency_messages ("
    " direction TEXT NOT NULL, agency TEXT NOT NULL, message_id TEXT NOT NULL,"
    " declaration_id TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, function_code TEXT NOT NULL,"
    " time TEXT NOT NULL, body TEXT NOT NULL, recorded_at TEXT NOT NULL,"
    " PRIMARY KEY (direction, agency, message_id))",
    "CREATE INDEX IF NOT EXISTS agency_messages_by_declaration ON agency_messages (declaration_id, recorded_at)",
)
OUTBOUND, INBOUND = "outbound", "inbound"
_CACHE_SIZE = 20_000  # declarations (and events) remembered


class Publisher(Protocol):
    def publish(self, messages: Sequence[Message]) -> int: ...


DISPATCH_PREFIX = "dispatch:"


def view_name(agency: str) -> str:
    return DISPATCH_PREFIX + agency


class Changes:
    """What each event of the log changed, worked out once for every agency's dispatch that follows it.

    Working it out needs the declaration as it was before the event: kept from the event before, else
    read back from the store. The results depend on the log alone, so they stay valid whatever happens
    to the transactions of the views that use them. One follower thread uses it.
    """

    def __init__(self, app: Declarations, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self._states = Replay(app, size)
        self._changes: OrderedDict[tuple[UUID, int], Change | None] = OrderedDict()

    def of(self, event: Any) -> Change | None:
        if not isinstance(event, Declaration.Event):
            return None  # an alert's own events: agencies hear of an alert by the holds it places
        key = (event.originator_id, event.originator_version)
        if key in self._changes:
            return self._changes[key]
        change, after = advance(event, self._states.before(event))
        self._states.keep(after)
        self._changes[key] = change
        if len(self._changes) > self.size:
            self._changes.popitem(last=False)
        return change


class AgencyDispatch:
    """One agency's dispatch, as a view: its messages published, then recorded with the position."""

    tables = MESSAGES_TABLE

    def __init__(self, app: Declarations, agency: str, publisher: Publisher, rules: RoutingRules | None = None,
                 *, changes: Changes | None = None):
        self.app = app
        self.agency = agency
        self.name = view_name(agency)
        self.publisher = publisher
        self.rules = rules or app.routing
        self.changes = changes or Changes(app)  # share one between the agencies of a runner

    def forget(self) -> None:
        """Nothing to drop: what `changes` holds follows from the log, not from this view's transactions."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        messages: list[Message] = []
        for _, event in events:
            change = self.changes.of(event)
            if change is not None and change.action_for(self.agency) is not None:
                messages.extend(messages_for(change, self.rules, [self.agency]))
        if not messages:
            return
        self.publisher.publish(messages)  # returns only once the broker acknowledged every one
        cursor.executemany(
            "INSERT INTO agency_messages (message_id, declaration_id, version, agency, direction, type,"
            " function_code, time, body, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (direction, agency, message_id) DO NOTHING",
            [(message.message_id, message.declaration_id, message.version, message.agency, OUTBOUND, message.name,
              message.function_code, message.issued_at.isoformat(), message.body.decode(), recorded_now())
             for message in messages])


def dispatches(app: Declarations, agencies: Sequence[str], publisher: Publisher) -> list[AgencyDispatch]:
    """Each agency's dispatch, sharing what the events changed."""
    changes = Changes(app)
    return [AgencyDispatch(app, agency, publisher, changes=changes) for agency in agencies]


def recorded_now() -> str:
    """When the hub recorded a message: the record's order, since agencies' clocks keep whole seconds at best."""
    return datetime.now(UTC).isoformat()


def recorded_messages(database: Any, declaration_id: str,
                      history: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every message recorded for a declaration, oldest first, in the order it happened (SPEC §6).

    Neither clock gives that order: an inbound message's `time` is the agency's, and `recorded_at` is when the
    hub wrote the record, which dispatch does once the broker acknowledged a message, and the inbox once it has
    applied a whole batch, so a message caused by an answer can be recorded before that answer. The declaration's
    own log does: an outbound message happened at the event it reports (its `version`); an inbound one at the
    first event it caused (its replies' events in `history`, the declaration's events as the hub describes them),
    before what that event sent; one that changed nothing (a notice's acknowledgement, say) right after the
    messages of the version it answers, whenever it was recorded: a batch of answers is recorded at once. Without
    `history`, every inbound message comes there, which is the same causal order (an answer is about a version it
    got, and what it causes comes at a later version) less exact.
    """
    rows = database.query(
        "SELECT direction, agency, message_id, type, time, body, version, recorded_at FROM agency_messages"
        " WHERE declaration_id = ?", (declaration_id,))
    messages = [{"direction": direction, "agency": agency, "message_id": message_id, "type": kind, "time": time,
                 "body": body, "version": version}
                for direction, agency, message_id, kind, time, body, version, _ in rows]
    order = sorted(zip(log_places(messages, history or ()), rows, messages, strict=True),
                   key=lambda entry: (entry[0], entry[1][7], entry[1][1], entry[1][2]))
    return [message for _, _, message in order]


def log_places(messages: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Where each message happened in the declaration's log (`recorded_messages` says why): (version, rank).

    Outbound at the event it reports (rank 1); inbound at the first event of `history` its replies made (rank 0,
    before what that event sent), else right after the messages of the version it answers (rank 2).
    """
    caused: dict[tuple[str, str], int] = {}
    for event in history:
        if "message_id" in event and "agency" in event:
            caused.setdefault((event["agency"], str(event["message_id"]).split(":")[0]), event["version"])
    places = []
    for message in messages:
        key = (message["agency"], message["message_id"])
        if message["direction"] == OUTBOUND:
            places.append((message["version"], 1))
        elif key in caused:
            places.append((caused[key], 0))
        else:
            places.append((message["version"], 2))
    return places
