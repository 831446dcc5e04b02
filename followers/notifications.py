"""Notifications: what a trader is told of its declarations, derived from the log (projections.notifications).

Each declaration event is applied to a copy of the declaration as it stood just before it (`Replay`, as the
status board does), and compared:

- the overall status changed (the domain model's own `Declaration.status`, "submitted" on submission
  included): a "declaration.status" notification;
- an agency's answer (`AgencyResponded`) or inspection (`InspectionRecorded`) changed that agency's status:
  a "declaration.decision" notification, with the agency, its new status and its answer's code (none for an
  inspection, which carries no code).

An event that changes both gives the decision first, then the status it caused. Nothing else of an event is
kept: not an answer's text, not an inspection's findings, nothing of a hold but the "held" status every
reader of the declaration sees (docs/enforcement-visibility.md, I5). Ids come from log positions, so
applying a batch again, or rebuilding, writes the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.declarations import Declaration, Declarations
from hub.declarations.replay import Replay
from projections.database import Cursor
from projections.notifications import DECISION, NAME, STATUS, TABLES, TYPES, Notification, notification_id, record
from projections.status_board import stamp

_CACHE_SIZE = 10_000
_DECISIONS = (Declaration.AgencyResponded, Declaration.InspectionRecorded)


class Notifications:
    name = NAME
    tables = TABLES

    def __init__(self, app: Declarations) -> None:
        self._copies = Replay(app, _CACHE_SIZE)

    def forget(self) -> None:
        self._copies.clear()

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        rows: list[Notification] = []
        for position, event in events:
            if isinstance(event, Declaration.Event):
                rows += self._notifications(position, event)
        record(cursor, rows)

    def _notifications(self, position: int, event: Any) -> list[Notification]:
        before = self._copies.before(event)
        status = before.status if before is not None else None
        agency = event.agency if isinstance(event, _DECISIONS) else None
        answered = _agency_status(before, agency)
        declaration = event.mutate(before)
        self._copies.keep(declaration)
        changes: list[dict[str, Any]] = []
        decided = _agency_status(declaration, agency)
        if decided not in (None, answered):
            code = (event.code or None) if isinstance(event, Declaration.AgencyResponded) else None
            changes.append({"kind": DECISION, "status": decided, "agency": agency, "code": code})
        if declaration.status != status:
            changes.append({"kind": STATUS, "status": declaration.status, "agency": None, "code": None})
        return [_row(notification_id(position, ordinal), declaration, event, **change)
                for ordinal, change in enumerate(changes)]


def _agency_status(declaration: Declaration | None, agency: str | None) -> str | None:
    if declaration is None or agency is None:
        return None
    state = declaration.agencies.get(agency)
    return state["status"] if state is not None else None


def _consignee(document: dict[str, Any]) -> str | None:
    consignee = document.get("consignee")
    return consignee.get("id") if isinstance(consignee, dict) else None


def _row(ident: int, declaration: Declaration, event: Any, *, kind: str, status: str, agency: str | None,
         code: str | None) -> Notification:
    return Notification(
        id=ident, declaration_id=str(declaration.id), declarant=declaration.declarant,
        consignee=_consignee(declaration.document), routes=",".join(sorted(declaration.agencies)), kind=kind,
        type=TYPES[kind], reference=declaration.reference, status=status, agency=agency, code=code,
        time=stamp(event.timestamp))
