"""Enforcement assistance: alerts hold the declarations they touch.

A process over the log that also writes the alerts read model
(projections.alerts). It keeps which open
declarations involve which subject (party, vessel, container) and which
alerts are open, and:

- when an alert is raised, holds every open declaration involving its subject;
- when a declaration is submitted or amended, holds it for every open alert
  on one of its subjects;
- when an alert is cleared, lifts its holds;
- when an agency's release or a lifted hold may have made gate-out or the
  release due, settles the declaration (`Declarations.settle`): having placed
  the holds of every alert before that point in the log, it is the one place
  where a hold cannot lose a race (I3, docs/lifecycle.md).

Alerts and declarations share one log, read in one order by one view, so a
declaration submitted while an alert is raised is held either way. The
commands it gives are idempotent (a hold placed twice is one hold), so a
batch applied again after a crash, or a rebuild, changes nothing; before it
holds, it checks that the alert is still open now, so replaying the log never
re-holds for an alert cleared since. The agencies hear of holds through
dispatch, which turns each hold placed or lifted into alert notices.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from hub.declarations import (
    Alert,
    Declaration,
    DeclarationError,
    DeclarationNotFound,
    Declarations,
    subject_key,
    subjects_of,
)
from hub.declarations.alert import OPEN
from hub.declarations.domainmodel import RELEASED
from projections.alerts import NAME, TABLES
from projections.database import Cursor
from projections.status_board import stamp

log = logging.getLogger(__name__)


class Enforcement:
    name = NAME
    tables = TABLES

    def __init__(self, app: Declarations) -> None:
        self.app = app

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        batch = _Batch(self, cursor)
        # Declarations whose gate-out or release may have become due, with the version through which every
        # alert before it in the log has placed its hold (I3): settled once the batch is read, so that the
        # holds of the batch's own alerts stand by then too.
        due: dict[UUID, int] = {}
        for _, event in events:
            if isinstance(event, Declaration.Submitted | Declaration.Amended):
                batch.declared(str(event.originator_id), subjects_of(event.document))
            elif isinstance(event, Declaration.Released | Declaration.Withdrawn):
                batch.declared(str(event.originator_id), set())  # no longer open: no longer involved
                due.pop(event.originator_id, None)  # nothing left to settle
            elif isinstance(event, Declaration.AgencyResponded) and event.status == RELEASED:
                due[event.originator_id] = event.originator_version
            elif isinstance(event, Declaration.HoldPlaced):
                batch.holds.append(("placed", stamp(event.timestamp), event.alert_id, str(event.originator_id)))
            elif isinstance(event, Declaration.HoldLifted):
                batch.holds.append(("lifted", stamp(event.timestamp), event.alert_id, str(event.originator_id)))
                due[event.originator_id] = event.originator_version
            elif isinstance(event, Alert.Raised):
                batch.flush()  # the alert must see every declaration before it
                self._raised(batch, event)
            elif isinstance(event, Alert.Cleared):
                batch.flush()
                self._cleared(batch, event)
        batch.flush()
        if due:
            self.app.settle(due)

    def _raised(self, batch: _Batch, event: Alert.Raised) -> None:
        alert = event.mutate(None).details()  # what agencies are told of it, as the aggregate says
        key = subject_key(event.subject_kind, event.subject)
        batch.cursor.execute(
            "INSERT INTO alerts (id, subject_kind, subject, subject_key, reason, raised_by, raised_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (alert["alert_id"], event.subject_kind, event.subject, key, event.reason, event.raised_by,
             alert["raised_at"]))
        batch.open.setdefault(key, []).append(alert)
        batch.cursor.execute("SELECT declaration_id FROM alert_subjects WHERE subject_key = ?", (key,))
        for (declaration_id,) in batch.cursor.fetchall():
            batch.hold(declaration_id, alert)

    def _cleared(self, batch: _Batch, event: Alert.Cleared) -> None:
        alert_id = str(event.originator_id)
        batch.cursor.execute("UPDATE alerts SET cleared_at = ?, cleared_by = ? WHERE id = ?",
                             (stamp(event.timestamp), event.cleared_by, alert_id))
        for alerts in batch.open.values():
            alerts[:] = [alert for alert in alerts if alert["alert_id"] != alert_id]
        # Its holds: those already seen in the log, and those it may have placed that the log has yet to show.
        batch.cursor.execute(
            "SELECT declaration_id FROM alert_holds WHERE alert_id = ? AND lifted_at IS NULL"
            " UNION SELECT s.declaration_id FROM alert_subjects s JOIN alerts a ON a.subject_key = s.subject_key"
            " WHERE a.id = ?", (alert_id, alert_id))
        for (declaration_id,) in batch.cursor.fetchall():
            try:
                self.app.lift_hold(declaration_id, alert_id)
            except DeclarationNotFound:
                log.warning("alert %s held declaration %s, which is not in the store", alert_id, declaration_id)


class _Batch:
    """One batch's writes, gathered into a few statements; flushed before an alert event reads them."""

    def __init__(self, process: Enforcement, cursor: Cursor) -> None:
        self.process = process
        self.cursor = cursor
        self.subjects: dict[str, set[str]] = {}  # declaration -> the subjects it now involves
        self.holds: list[tuple[str, str, str, str]] = []  # (placed or lifted, time, alert, declaration)
        self.still_open: dict[str, bool] = {}
        cursor.execute("SELECT id, subject_kind, subject, subject_key, reason, raised_by, raised_at FROM alerts"
                       " WHERE cleared_at IS NULL")
        self.open: dict[str, list[dict[str, str]]] = {}  # subject key -> the open alerts on it
        for alert_id, kind, subject, key, reason, raised_by, raised_at in cursor.fetchall():
            self.open.setdefault(key, []).append({
                "alert_id": alert_id, "subject_kind": kind, "subject": subject, "reason": reason,
                "raised_by": raised_by, "raised_at": raised_at})

    def declared(self, declaration_id: str, keys: set[str]) -> None:
        self.subjects[declaration_id] = keys
        for key in sorted(keys):
            for alert in self.open.get(key, ()):
                self.hold(declaration_id, alert)

    def hold(self, declaration_id: str, alert: dict[str, str]) -> None:
        """Hold a declaration for an alert that is still open now (a replay may read one cleared since)."""
        alert_id = alert["alert_id"]
        if alert_id not in self.still_open:
            self.still_open[alert_id] = self.process.app.get_alert(alert_id).status == OPEN
        if not self.still_open[alert_id]:
            return
        try:
            self.process.app.place_hold(declaration_id, alert)
        except DeclarationError:  # released or withdrawn meanwhile: nothing left to hold
            pass
        except DeclarationNotFound:
            log.warning("declaration %s is in the log but not in the store", declaration_id)

    def flush(self) -> None:
        if self.subjects:
            self.cursor.bulk("DELETE FROM alert_subjects WHERE declaration_id IN (SELECT id FROM {rows})", "id text",
                             [(declaration_id,) for declaration_id in self.subjects])
            self.cursor.bulk("INSERT INTO alert_subjects (subject_key, declaration_id) SELECT * FROM {rows}",
                             "subject_key text, declaration_id text",
                             [(key, declaration_id) for declaration_id, keys in self.subjects.items()
                              for key in sorted(keys)])
            self.subjects.clear()
        for kind, moment, alert_id, declaration_id in self.holds:
            if kind == "placed":
                self.cursor.execute(
                    "INSERT INTO alert_holds (alert_id, declaration_id, held_at) VALUES (?, ?, ?) ON CONFLICT"
                    " (alert_id, declaration_id) DO UPDATE SET held_at = excluded.held_at, lifted_at = NULL",
                    (alert_id, declaration_id, moment))
            else:
                self.cursor.execute("UPDATE alert_holds SET lifted_at = ? WHERE alert_id = ? AND declaration_id = ?",
                                    (moment, alert_id, declaration_id))
        self.holds.clear()
