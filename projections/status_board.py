"""The status board: overall and per-agency status of every declaration.

One row per declaration, one per (declaration, agency), rebuilt from the log.
The status is the domain model's own derivation (`Declaration.status`), run on
what the board keeps of each declaration: its agencies, holds, withdrawal and
outcome, folded from the events' fields (projections/board_fold.py) rather than
by replaying a copy of the aggregate, which was half the board's rebuild time.
tests/test_board_fold.py checks the fold against the replayed aggregate after
every event of random histories, so the board cannot quietly disagree with the
domain model about what "released" means.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from hub.declarations import Declaration, Declarations
from hub.declarations.replay import Replay

from .board_fold import Folded, fold
from .database import Cursor, ViewDatabase

NAME = "status_board"
# Declarations whose folded state is kept between events (about 1.5 KB each with five agencies); an event whose
# declaration has dropped out reads it back from the store.
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    kind: str | None = None
    agency: str | None = None
    declarant: str | None = None
    reference: str | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    visible_to_agency: str | None = None  # an officer's scope: declarations routed to this agency


class StatusBoard:
    name = NAME
    tables = (
        "CREATE TABLE IF NOT EXISTS board_declarations ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL, declarant TEXT NOT NULL,"
        " reference TEXT NOT NULL, status TEXT NOT NULL, version INTEGER NOT NULL,"
        " submitted_at TEXT NOT NULL, updated_at TEXT NOT NULL, released_at TEXT,"
        " agencies TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS board_by_submitted ON board_declarations (submitted_at, id)",
        "CREATE INDEX IF NOT EXISTS board_by_declarant ON board_declarations (declarant, submitted_at)",
        "CREATE TABLE IF NOT EXISTS board_agencies ("
        " declaration_id TEXT NOT NULL, agency TEXT NOT NULL, status TEXT NOT NULL,"
        " routed INTEGER NOT NULL, PRIMARY KEY (agency, declaration_id))",
    )

    def __init__(self, app: Declarations) -> None:
        self._folded = Replay(app, _CACHE_SIZE, Folded.of)

    def forget(self) -> None:
        self._folded.clear()

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        touched: dict[UUID, Folded] = {}
        submitted: dict[UUID, Any] = {}
        released: dict[UUID, str | None] = {}
        for _, event in events:
            if not isinstance(event, Declaration.Event):
                continue  # an alert's own events; the holds it places are declaration events
            ident = event.originator_id
            touched[ident] = folded = fold(self._folded.before(event), event)
            self._folded.keep(folded)
            if isinstance(event, Declaration.Submitted):
                submitted[ident] = event
            elif isinstance(event, Declaration.Released):
                released[ident] = stamp(event.timestamp)
            elif isinstance(event, Declaration.Amended):
                released[ident] = None
        rows, updates, agencies = [], [], []
        for ident, declaration in touched.items():
            key, updated = str(ident), stamp(declaration.modified_on)
            summary = json.dumps(declaration.agencies)
            status = declaration.status
            # Each row is written once a batch, its release time with it: set, cleared by an amendment, or kept.
            if ident in submitted:
                first = submitted[ident]
                rows.append((key, first.kind, first.declarant, first.reference, status, declaration.version,
                             stamp(first.timestamp), updated, released.get(ident), summary))
            else:
                updates.append((status, declaration.version, updated, summary, ident in released,
                                released.get(ident), key))
            agencies += [(key, name, state["status"], int(state["routed"]))
                         for name, state in declaration.agencies.items()]
        cursor.bulk(
            "INSERT INTO board_declarations (id, kind, declarant, reference, status, version, submitted_at,"
            " updated_at, released_at, agencies) SELECT * FROM {rows} WHERE true ON CONFLICT (id) DO NOTHING",
            "id text, kind text, declarant text, reference text, status text, version integer,"
            " submitted_at text, updated_at text, released_at text, agencies text", rows)
        cursor.bulk(
            "UPDATE board_declarations SET status = batch.status, version = batch.version,"
            " updated_at = batch.updated_at, agencies = batch.agencies, released_at = CASE WHEN batch.release"
            " THEN batch.released_at ELSE board_declarations.released_at END FROM {rows}"
            " WHERE board_declarations.id = batch.id",
            "status text, version integer, updated_at text, agencies text, release boolean, released_at text,"
            " id text", updates)
        cursor.bulk(
            "INSERT INTO board_agencies (declaration_id, agency, status, routed) SELECT * FROM {rows} WHERE true"
            " ON CONFLICT (agency, declaration_id) DO UPDATE SET status = excluded.status,"
            " routed = excluded.routed",
            "declaration_id text, agency text, status text, routed integer", agencies)


_COLUMNS = "d.id, d.kind, d.declarant, d.reference, d.status, d.version, d.submitted_at, " \
           "d.updated_at, d.released_at, d.agencies"


def encode_cursor(submitted_at: str, declaration_id: str) -> str:
    return base64.urlsafe_b64encode(f"{submitted_at}|{declaration_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (submitted_at, id) a page starts after; ValueError if the cursor is not one of ours."""
    try:
        submitted_at, declaration_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)) \
            .decode().split("|")
        datetime.fromisoformat(submitted_at)
        UUID(declaration_id)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("not a page cursor from this API") from error
    return submitted_at, declaration_id


class InvalidQuery(ValueError):
    """A list query the board cannot answer; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def list_declarations(database: ViewDatabase, filters: Filters, *, limit: int,
                      after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the board, newest first, and the cursor of the next page (or None)."""
    try:
        return _page(database, filters, limit, after)
    except ValueError as error:
        raise InvalidQuery(getattr(error, "field", "cursor"), str(error)) from None


def _page(database: ViewDatabase, filters: Filters, limit: int,
          after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    where, params = [], []
    join = ""
    if filters.agency:
        join += " JOIN board_agencies a ON a.declaration_id = d.id AND a.agency = ? AND a.routed = 1"
        params.append(filters.agency)
    if filters.visible_to_agency:
        join += " JOIN board_agencies v ON v.declaration_id = d.id AND v.agency = ?"
        params.append(filters.visible_to_agency)
    for column, value in (("d.status", filters.status), ("d.kind", filters.kind),
                          ("d.declarant", filters.declarant), ("d.reference", filters.reference)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    for field, bound, operator in (("submitted_from", filters.submitted_from, ">="),
                                   ("submitted_to", filters.submitted_to, "<")):
        if bound is not None:
            try:
                params.append(stamp(bound))
            except ValueError as error:
                raise InvalidQuery(field, str(error)) from None
            where.append(f"d.submitted_at {operator} ?")
    if after is not None:
        submitted_at, declaration_id = decode_cursor(after)
        where.append("(d.submitted_at < ? OR (d.submitted_at = ? AND d.id < ?))")
        params += [submitted_at, submitted_at, declaration_id]
    sql = f"SELECT {_COLUMNS} FROM board_declarations d{join}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY d.submitted_at DESC, d.id DESC LIMIT ?"
    rows = database.query(sql, (*params, limit + 1))
    page = [_row(row) for row in rows[:limit]]
    following = encode_cursor(rows[limit - 1][6], rows[limit - 1][0]) if len(rows) > limit else None
    return page, following


def counts_by_status(database: ViewDatabase) -> dict[str, int]:
    return dict(database.query("SELECT status, COUNT(*) FROM board_declarations GROUP BY status"))


def stamp(moment: datetime) -> str:
    """Times are stored as fixed-width UTC ISO 8601 strings, so they sort as text.

    ValueError for a moment that has no UTC equivalent (year 1 at +14:00, say).
    """
    if moment.tzinfo is timezone.utc:  # every event's timestamp: no conversion to make
        return moment.isoformat(timespec="microseconds")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside the range of UTC times") from None


def _row(row: tuple) -> dict[str, Any]:
    agencies = json.loads(row[9])
    return {
        "id": row[0], "kind": row[1], "declarant": row[2], "reference": row[3], "status": row[4],
        "version": row[5], "submitted_at": row[6], "updated_at": row[7], "released_at": row[8],
        "agencies": {name: {"status": state["status"]} for name, state in agencies.items()
                     if state["routed"]},
    }
