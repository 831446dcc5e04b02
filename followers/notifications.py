"""Notifications: what a trader is told of its declarations, derived from the log (projections.notifications).

Each declaration event is folded into what is kept of the declaration as it stood just before it
(projections/board_fold.py, the status board's own fold: statuses, routes, declarant, reference, consignee),
and compared:

- the overall status changed (the domain model's own `Declaration.status`, "submitted" on submission
  included): a "declaration.status" notification;
- an agency's answer (`AgencyResponded`) or inspection (`InspectionRecorded`) changed that agency's status:
  a "declaration.decision" notification, with the agency, its new status and its answer's code (none for an
  inspection, which carries no code).

An event that changes both gives the decision first, then the status it caused. Nothing else of an event is
kept: not an answer's text, not an inspection's findings, nothing of a hold but the "held" status every
reader of the declaration sees (docs/enforcement-visibility.md, I5). Ids come from log positions, so
applying a batch again, or rebuilding, writes the same rows.

Replaying a copy of the aggregate was half of this view's rebuild time (issue 20); the fold gives the same
statuses, and tests/test_board_fold.py checks that the notifications it gives are those the replayed
aggregate gives, for random histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.declarations import Declaration, Declarations
from hub.declarations.replay import Replay
from projections.board_fold import Folded, fold
from projections.database import Cursor
from projections.notifications import DECISION, NAME, STATUS, TABLES, TYPES, Notification, notification_id, record
from projections.status_board import stamp

_CACHE_SIZE = 10_000
_DECISIONS = (Declaration.AgencyResponded, Declaration.InspectionRecorded)


class Notifications:
    name = NAME
    tables = TABLES

    def __init__(self, app: Declarations) -> None:
        self._folded = Replay(app, _CACHE_SIZE, Folded.of)

    def forget(self) -> None:
        self._folded.clear()

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        rows: list[Notification] = []
        for position, event in events:
            if isinstance(event, Declaration.Event):
                rows += self._notifications(position, event)
        record(cursor, rows)

    def _notifications(self, position: int, event: Any) -> list[Notification]:
        before = self._folded.before(event)
        status = before.status if before is not None else None
        agency = event.agency if isinstance(event, _DECISIONS) else None
        answered = _agency_status(before, agency)
        declaration = fold(before, event)
        self._folded.keep(declaration)
        changes: list[dict[str, Any]] = []
        decided = _agency_status(declaration, agency)
        if decided not in (None, answered):
            code = (event.code or None) if isinstance(event, Declaration.AgencyResponded) else None
            changes.append({"kind": DECISION, "status": decided, "agency": agency, "code": code})
        now = declaration.status
        if now != status:
            changes.append({"kind": STATUS, "status": now, "agency": None, "code": None})
        time = stamp(event.timestamp) if changes else ""
        return [_row(notification_id(position, ordinal), event, declaration, time, **change)
                for ordinal, change in enumerate(changes)]


def _agency_status(declaration: Folded | None, agency: str | None) -> str | None:
    if declaration is None or agency is None:
        return None
    state = declaration.agencies.get(agency)
    return state["status"] if state is not None else None


def _row(ident: int, event: Any, declaration: Folded, time: str, *, kind: str, status: str, agency: str | None,
         code: str | None) -> Notification:
    return Notification(
        id=ident, declaration_id=str(event.originator_id), declarant=declaration.declarant,
        consignee=declaration.consignee, routes=",".join(sorted(declaration.agencies)), kind=kind,
        type=TYPES[kind], reference=declaration.reference, status=status, agency=agency, code=code,
        time=time)
