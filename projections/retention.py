"""The retention view: each declaration with personal data, when its purpose was served, and whether it is erased.

Personal data is kept for the purpose it was given for, and erased `days` (TRADEHUB_PERSONAL_DATA_DAYS) after
that purpose was served (docs/personal-data.md, "Retention"). What serves it depends on the declaration:

- a vessel call that gives a departure (its document's `etd`): the departure, since the border and the port
  need the people on board until the ship has left; a withdrawal before it ends the call sooner;
- any other declaration (a goods declaration, or an arrival without `etd`): its release, when every routed
  agency has cleared it; else its rejection while it stands (an amendment reopens it, and the clock with it);
  else its withdrawal. An arrival that never comes to one of these has no due date: it is kept until it does,
  or until an admin erases it by hand.

Only declarations with a data key of their own appear (`Submitted.data_key`): the others name no one, or were
stored before keys, and no key's deletion could erase them. A standing enforcement hold suspends erasure: the
people on board may be what the alert is about. The due date is not stored: it is `served_at` plus the days
configured at the time of asking, so changing the setting needs no rebuild.

Each row is a fold of its declaration's events (`fold`), which the sweep (tradehub/retention.py) can compare with
the declaration as the store has it now: `version` is the last event folded, so a row the view has not brought up
to date is seen to be behind, never trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from hub.declarations import Declaration

from .database import Cursor, ViewDatabase
from .status_board import stamp

NAME = "retention"
POLICY = "retention"  # who the sweep erases as (`erased_by`): any other eraser is an admin, by hand
DEPARTURE, RELEASE, REJECTION, WITHDRAWAL = "departure", "release", "rejection", "withdrawal"

TABLES = (
    "CREATE TABLE IF NOT EXISTS personal_data_retention ("
    " declaration_id TEXT PRIMARY KEY, kind TEXT NOT NULL, declarant TEXT NOT NULL, reference TEXT NOT NULL,"
    " version INTEGER NOT NULL, departure TEXT, released TEXT, rejected TEXT, withdrawn TEXT,"
    " holds TEXT NOT NULL, served_at TEXT, served_by TEXT, erased_at TEXT, erased_by TEXT)",
    # What is still kept, by when its purpose was served: the due rows are a range of it.
    "CREATE INDEX IF NOT EXISTS personal_data_kept ON personal_data_retention (served_at, declaration_id)"
    " WHERE erased_at IS NULL",
)


class Retained(NamedTuple):
    """One row. Times are fixed-width UTC stamps (they sort as text); `holds` the standing alerts' ids,
    comma-separated and sorted ("" for none); `served_by` one of DEPARTURE, RELEASE, REJECTION, WITHDRAWAL."""

    declaration_id: str
    kind: str
    declarant: str
    reference: str
    version: int
    departure: str | None = None
    released: str | None = None
    rejected: str | None = None
    withdrawn: str | None = None
    holds: str = ""
    served_at: str | None = None
    served_by: str | None = None
    erased_at: str | None = None
    erased_by: str | None = None

    def due_at(self, days: int) -> datetime | None:
        """When the policy of `days` erases it (None: never, for now)."""
        return due_at(self.served_at, days)

    def due(self, days: int, now: datetime) -> bool:
        """Whether the policy of `days` erases it at `now`: its purpose served `days` ago or more, not erased, no
        hold standing. Never with `days` 0 (keep)."""
        due = self.due_at(days)
        return due is not None and due <= now and self.erased_at is None and not self.holds


def purpose_served(kind: str, departure: str | None, released: str | None, rejected: str | None,
                   withdrawn: str | None) -> tuple[str, str] | None:
    """(when, by what) the declaration's purpose was served, per the rules above; None while it is not."""
    if kind == "vessel_call" and departure is not None:
        candidates = ((departure, DEPARTURE), (withdrawn, WITHDRAWAL))
    else:
        candidates = ((released, RELEASE), (rejected, REJECTION), (withdrawn, WITHDRAWAL))
    served = [(moment, why) for moment, why in candidates if moment is not None]
    return min(served) if served else None


def due_at(served_at: str | None, days: int) -> datetime | None:
    if days <= 0 or served_at is None:
        return None
    return datetime.fromisoformat(served_at) + timedelta(days=days)


def fold(row: Retained | None, event: Any) -> Retained | None:
    """The row after `event`; None for a declaration without personal data of its own (and for alerts)."""
    if isinstance(event, Declaration.Submitted):
        if not event.data_key:
            return None
        row = Retained(str(event.originator_id), event.kind, event.declarant, event.reference, 1,
                       departure=_departure(event.kind, event.document))
        return _served(row)
    if row is None or not isinstance(event, Declaration.Event):
        return None
    row = row._replace(version=event.originator_version)
    when = stamp(event.timestamp)
    if isinstance(event, Declaration.Amended):  # assessed afresh: a rejection no longer stands
        row = row._replace(departure=_departure(row.kind, event.document), rejected=None)
    elif isinstance(event, Declaration.Released):
        row = row._replace(released=when)
    elif isinstance(event, Declaration.Rejected):
        row = row._replace(rejected=when)
    elif isinstance(event, Declaration.Withdrawn):
        row = row._replace(withdrawn=when)
    elif isinstance(event, Declaration.HoldPlaced):
        row = row._replace(holds=",".join(sorted({*_ids(row.holds), event.alert_id})))
    elif isinstance(event, Declaration.HoldLifted):
        row = row._replace(holds=",".join(sorted(_ids(row.holds) - {event.alert_id})))
    elif isinstance(event, Declaration.PersonalDataErased):
        row = row._replace(erased_at=event.erased_at, erased_by=event.erased_by)
    return _served(row)


def _served(row: Retained) -> Retained:
    served = purpose_served(row.kind, row.departure, row.released, row.rejected, row.withdrawn)
    return row._replace(served_at=served[0] if served else None, served_by=served[1] if served else None)


def _departure(kind: str, document: dict[str, Any]) -> str | None:
    etd = document.get("etd") if kind == "vessel_call" else None
    return stamp(datetime.fromisoformat(etd)) if isinstance(etd, str) else None


def _ids(holds: str) -> set[str]:
    return set(holds.split(",")) if holds else set()


class Retention:
    """The follower that keeps the view: each batch reads the rows it touches once, folds, writes them once."""

    name = NAME
    tables = TABLES

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        declarations = [event for _, event in events if isinstance(event, Declaration.Event)]
        rows = _select(cursor, {str(event.originator_id) for event in declarations
                                if not isinstance(event, Declaration.Submitted)})
        changed: set[str] = set()
        for event in declarations:
            ident = str(event.originator_id)
            row = fold(rows.get(ident), event)
            if row is not None:
                rows[ident] = row
                changed.add(ident)
        cursor.bulk(
            f"INSERT INTO personal_data_retention ({', '.join(Retained._fields)}) SELECT * FROM {{rows}} WHERE true"
            " ON CONFLICT (declaration_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in Retained._fields[1:]),
            "declaration_id text, kind text, declarant text, reference text, version integer, departure text,"
            " released text, rejected text, withdrawn text, holds text, served_at text, served_by text,"
            " erased_at text, erased_by text",
            [rows[ident] for ident in sorted(changed)])


_CHUNK = 500  # ids per IN (...): well under either database's limit on parameters
_COLUMNS = ", ".join(Retained._fields)


def _select(cursor: Cursor, ids: set[str]) -> dict[str, Retained]:
    """The stored rows of these declarations (those that have one)."""
    found: dict[str, Retained] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        cursor.execute(f"SELECT {_COLUMNS} FROM personal_data_retention"
                       f" WHERE declaration_id IN ({', '.join('?' * len(chunk))})", chunk)
        found.update((row[0], Retained(*row)) for row in cursor.fetchall())
    return found


# ---- reading ------------------------------------------------------------------------------------------------------

def _cutoff(days: int, now: datetime) -> str:
    """Purposes served at or before this were served `days` ago or more at `now`."""
    return stamp(now - timedelta(days=days))


def due(database: ViewDatabase, *, days: int, now: datetime, after: tuple[str, str] | None = None,
        limit: int = 500) -> list[Retained]:
    """The rows due for erasure at `now` under a policy of `days`, longest overdue first, at most `limit`, after
    the (served_at, declaration_id) of the previous page's last. None with `days` 0 (keep)."""
    if days <= 0:
        return []
    where, params = "erased_at IS NULL AND holds = '' AND served_at <= ?", [_cutoff(days, now)]
    if after is not None:
        where += " AND (served_at, declaration_id) > (?, ?)"
        params += list(after)
    rows = database.query(f"SELECT {_COLUMNS} FROM personal_data_retention WHERE {where}"
                          " ORDER BY served_at, declaration_id LIMIT ?", (*params, limit))
    return [Retained(*row) for row in rows]


def row(database: ViewDatabase, declaration_id: str) -> Retained | None:
    rows = database.query(f"SELECT {_COLUMNS} FROM personal_data_retention WHERE declaration_id = ?",
                          (declaration_id,))
    return Retained(*rows[0]) if rows else None


class Summary(NamedTuple):
    """What /metrics shows of the policy at one moment (docs/personal-data.md, "Retention")."""

    due: int  # due now and not erased, no hold standing
    held: int  # due now but for a standing hold
    oldest_overdue_seconds: float  # how long the longest-overdue of `due` has been due; 0 when none is
    erased: dict[str, int]  # erased so far, by POLICY and by "hand"


def summary(database: ViewDatabase, *, days: int, now: datetime) -> Summary:
    erased = {POLICY: 0, "hand": 0}
    for by, count in database.query("SELECT erased_by, COUNT(*) FROM personal_data_retention"
                                    " WHERE erased_at IS NOT NULL GROUP BY erased_by"):
        erased[POLICY if by == POLICY else "hand"] += count
    if days <= 0:
        return Summary(0, 0, 0.0, erased)
    [(due_now, oldest, held)] = database.query(
        "SELECT COUNT(CASE WHEN holds = '' THEN 1 END), MIN(CASE WHEN holds = '' THEN served_at END),"
        " COUNT(CASE WHEN holds <> '' THEN 1 END) FROM personal_data_retention"
        " WHERE erased_at IS NULL AND served_at <= ?", (_cutoff(days, now),))
    overdue = (now - due_at(oldest, days)).total_seconds() if oldest is not None else 0.0
    return Summary(due_now, held, max(overdue, 0.0), erased)
