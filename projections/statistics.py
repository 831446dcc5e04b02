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

from .database import Cursor, ViewDatabase, rounds
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
        # Clocks started in this batch are kept here, released here, and written once; those started in an
        # earlier batch are re-routed and released in the table.
        clocks: dict[tuple[str, str], list[Any]] = {}  # -> [id, agency, submitted_at, epoch, released_at, seconds]
        rerouted, released = [], []
        for _, event in events:
            declaration_id = str(event.originator_id)
            if isinstance(event, Declaration.Submitted):
                moment, epoch = stamp(event.timestamp), event.timestamp.timestamp()
                for agency in (OVERALL, *event.routes):
                    clocks.setdefault((declaration_id, agency), [declaration_id, agency, moment, epoch, None, None])
            elif isinstance(event, Declaration.Amended):  # agencies routed by the amendment start their clock
                overall = clocks.get((declaration_id, OVERALL))
                if overall is None:
                    rerouted += [(agency, declaration_id) for agency in event.routes]
                else:
                    for agency in event.routes:
                        clocks.setdefault((declaration_id, agency),
                                          [declaration_id, agency, *overall[2:4], None, None])
            elif isinstance(event, Declaration.Released) or (
                    isinstance(event, Declaration.AgencyResponded) and event.status == RELEASED):
                agency = OVERALL if isinstance(event, Declaration.Released) else event.agency
                clock = clocks.get((declaration_id, agency))
                if clock is None:
                    released.append((stamp(event.timestamp), event.timestamp.timestamp(), declaration_id, agency))
                elif clock[4] is None:  # the first release stops the clock
                    clock[4:] = [stamp(event.timestamp), event.timestamp.timestamp() - clock[3]]
        # In this order, as in the log: a declaration is submitted (or re-routed) before it is released.
        cursor.bulk("INSERT INTO clearance (declaration_id, agency, submitted_at, submitted_epoch, released_at,"
                    " seconds) SELECT * FROM {rows} WHERE true ON CONFLICT DO NOTHING",
                    "declaration_id text, agency text, submitted_at text, submitted_epoch double precision,"
                    " released_at text, seconds double precision", list(clocks.values()))
        cursor.bulk("INSERT INTO clearance (declaration_id, agency, submitted_at, submitted_epoch)"
                    " SELECT c.declaration_id, batch.agency, c.submitted_at, c.submitted_epoch"
                    " FROM clearance c JOIN {rows} ON c.declaration_id = batch.declaration_id"
                    " WHERE c.agency = '' ON CONFLICT DO NOTHING", "agency text, declaration_id text", rerouted)
        for releases in rounds(released, key=lambda row: row[2:]):  # the first release stops the clock
            cursor.bulk("UPDATE clearance SET released_at = batch.released_at,"
                        " seconds = batch.epoch - clearance.submitted_epoch FROM {rows}"
                        " WHERE clearance.declaration_id = batch.declaration_id AND clearance.agency = batch.agency"
                        " AND clearance.released_at IS NULL",
                        "released_at text, epoch double precision, declaration_id text, agency text", releases)


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
    return {"count": count, "p50_seconds": clearance_percentile(database, agency, count, 0.5),
            "p90_seconds": clearance_percentile(database, agency, count, 0.9)}


def clearance_percentile(database: ViewDatabase, agency: str, count: int, fraction: float) -> float | None:
    """The nearest-rank percentile of the released clearance times, read by its rank from the index."""
    if not count:
        return None
    rank = max(1, math.ceil(fraction * count))
    [(seconds,)] = database.query("SELECT seconds FROM clearance WHERE agency = ? AND seconds IS NOT NULL"
                                  " ORDER BY seconds LIMIT 1 OFFSET ?", (agency, rank - 1))
    return round(seconds, 3)
