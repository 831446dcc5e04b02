"""Statistics: counts by status and agency, and clearance time, the seed's "data shows results".

Clearance time runs from submission to release: overall (the declaration's
release) and per agency (that agency's release). It keeps one row per
(declaration, agency), with '' for the declaration as a whole, so p50 and p90
are two indexed look-ups each, whatever the size of the board.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hub.declarations import Declaration
from hub.declarations.domainmodel import AGENCIES, RELEASED

from .database import Cursor, ViewDatabase
from .status_board import stamp

NAME = "statistics"
OVERALL = ""


class Statistics:
    name = NAME
    tables = (
        "CREATE TABLE IF NOT EXISTS clearance ("
        " declaration_id TEXT NOT NULL, agency TEXT NOT NULL, submitted_at TEXT NOT NULL,"
        " submitted_epoch DOUBLE PRECISION NOT NULL, released_at TEXT, seconds DOUBLE PRECISION,"
        " PRIMARY KEY (declaration_id, agency))",
        "CREATE INDEX IF NOT EXISTS clearance_by_time ON clearance (agency, seconds)",
    )

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        started, rerouted, released = [], [], []
        for _, event in events:
            declaration_id = str(event.originator_id)
            if isinstance(event, Declaration.Submitted):
                moment = event.timestamp
                started += [(declaration_id, agency, stamp(moment), moment.timestamp())
                            for agency in (OVERALL, *event.routes)]
            elif isinstance(event, Declaration.Amended):  # agencies routed by the amendment start their clock
                rerouted += [(agency, declaration_id) for agency in event.routes]
            elif isinstance(event, Declaration.Released):
                released.append((stamp(event.timestamp), event.timestamp.timestamp(), declaration_id, OVERALL))
            elif isinstance(event, Declaration.AgencyResponded) and event.status == RELEASED:
                released.append((stamp(event.timestamp), event.timestamp.timestamp(), declaration_id, event.agency))
        # In this order, as in the log: a declaration is submitted (or re-routed) before it is released.
        cursor.executemany("INSERT INTO clearance (declaration_id, agency, submitted_at, submitted_epoch)"
                           " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", started)
        cursor.executemany("INSERT INTO clearance (declaration_id, agency, submitted_at, submitted_epoch)"
                           " SELECT declaration_id, ?, submitted_at, submitted_epoch FROM clearance"
                           " WHERE declaration_id = ? AND agency = '' ON CONFLICT DO NOTHING", rerouted)
        cursor.executemany("UPDATE clearance SET released_at = ?, seconds = ? - submitted_epoch"
                           " WHERE declaration_id = ? AND agency = ? AND released_at IS NULL", released)


def statistics_view(database: ViewDatabase) -> dict[str, Any]:
    """Counts by overall status and by agency and status, and clearance time p50/p90, overall and per agency."""
    by_status = dict(database.query("SELECT status, COUNT(*) FROM board_declarations GROUP BY status"))
    by_agency: dict[str, dict[str, int]] = {}
    for agency, status, count in database.query(
            "SELECT agency, status, COUNT(*) FROM board_agencies WHERE routed = 1 GROUP BY agency, status"):
        by_agency.setdefault(agency, {})[status] = count
    return {"by_status": by_status,
            "by_agency": {agency: by_agency[agency] for agency in AGENCIES if agency in by_agency},
            "clearance": {"overall": _clearance(database, OVERALL),
                          "agencies": {agency: _clearance(database, agency) for agency in AGENCIES}}}


def _clearance(database: ViewDatabase, agency: str) -> dict[str, Any]:
    [(count,)] = database.query("SELECT COUNT(seconds) FROM clearance WHERE agency = ?", (agency,))
    return {"count": count, "p50_seconds": _percentile(database, agency, count, 0.5),
            "p90_seconds": _percentile(database, agency, count, 0.9)}


def _percentile(database: ViewDatabase, agency: str, count: int, fraction: float) -> float | None:
    """The nearest-rank percentile of the released clearance times, read by its rank from the index."""
    if not count:
        return None
    rank = max(1, math.ceil(fraction * count))
    [(seconds,)] = database.query("SELECT seconds FROM clearance WHERE agency = ? AND seconds IS NOT NULL"
                                  " ORDER BY seconds LIMIT 1 OFFSET ?", (agency, rank - 1))
    return round(seconds, 3)
