"""Dispatch: the hub's event log, followed per agency, published as that agency's messages.

Each agency's dispatch is a view for the projection runner (followers.runner),
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
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from adapters.messages import Change, Message, advance
from adapters.outbound import messages_for
from hub.declarations import Declaration, Declarations, RoutingRules
from hub.declarations.replay import Replay
from projections.database import Cursor
from projections.messages import OUTBOUND, TABLES, Record, record

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

    tables = TABLES

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
        record(cursor, [Record(OUTBOUND, message.agency, message.message_id, message.declaration_id, message.version,
                               message.name, message.function_code, message.issued_at.isoformat(),
                               message.body.decode()) for message in messages])


def dispatches(app: Declarations, agencies: Sequence[str], publisher: Publisher) -> list[AgencyDispatch]:
    """Each agency's dispatch, sharing what the events changed."""
    changes = Changes(app)
    return [AgencyDispatch(app, agency, publisher, changes=changes) for agency in agencies]
