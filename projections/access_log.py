"""The access log of personal data as a view: every `PersonalDataRead` in the log, for admins to list.

One row per read, keyed by its position in the log, so the rows come in the order the reads were recorded, a
row's position is its cursor, and a rebuild writes every row as it was. Admins list them by declaration or by
reader (`GET /v1/personal-data/reads`, `tradehub personal-data reads`); the reads themselves are in the log,
this is their index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from hub.declarations import PersonalDataRead

from .database import Cursor, ViewDatabase
from .status_board import stamp

NAME = "access_log"
MAX_CURSOR = 2**63 - 1  # a BIGINT

TABLES = (
    "CREATE TABLE IF NOT EXISTS personal_data_reads ("
    " position BIGINT PRIMARY KEY, id TEXT NOT NULL, declaration_id TEXT NOT NULL, reader TEXT NOT NULL,"
    " role TEXT NOT NULL, agency TEXT NOT NULL, party TEXT NOT NULL, token_id TEXT NOT NULL,"
    " fields TEXT NOT NULL, messages TEXT NOT NULL, route TEXT NOT NULL, time TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS personal_data_reads_by_declaration ON personal_data_reads (declaration_id, position)",
    "CREATE INDEX IF NOT EXISTS personal_data_reads_by_reader ON personal_data_reads (reader, position)",
)


class Read(NamedTuple):
    """One row: `fields` and `messages` comma-separated, as recorded (sorted)."""

    position: int
    id: str
    declaration_id: str
    reader: str
    role: str
    agency: str
    party: str
    token_id: str
    fields: str
    messages: str
    route: str
    time: str


class AccessLog:
    name = NAME
    tables = TABLES

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        rows = [_row(position, event) for position, event in events if isinstance(event, PersonalDataRead.Recorded)]
        cursor.bulk(
            "INSERT INTO personal_data_reads (position, id, declaration_id, reader, role, agency, party, token_id,"
            " fields, messages, route, time) SELECT * FROM {rows} WHERE true ON CONFLICT (position) DO NOTHING",
            "position bigint, id text, declaration_id text, reader text, role text, agency text, party text,"
            " token_id text, fields text, messages text, route text, time text", rows)


def _row(position: int, event: PersonalDataRead.Recorded) -> Read:
    return Read(position, str(event.originator_id), event.declaration_id, event.reader, event.role, event.agency,
                event.party, event.token_id, ",".join(event.fields), ",".join(event.messages), event.route,
                stamp(event.timestamp))


def payload(row: Read) -> dict[str, Any]:
    """A read as the API lists it (docs/api.md)."""
    return {"cursor": str(row.position), "id": row.id, "declaration_id": row.declaration_id, "reader": row.reader,
            "role": row.role, "agency": row.agency or None, "party": row.party or None,
            "token_id": row.token_id or None, "fields": row.fields.split(",") if row.fields else [],
            "messages": row.messages.split(",") if row.messages else [], "route": row.route, "time": row.time}


def reads(database: ViewDatabase, *, declaration_id: str | None = None, reader: str | None = None, after: int = 0,
          limit: int = 100) -> tuple[list[Read], int | None]:
    """The reads after the cursor `after`, oldest first, at most `limit`, of one declaration and/or one reader
    (both None: all); and the cursor of the next page (None on the last)."""
    if not 0 <= after <= MAX_CURSOR:
        raise ValueError(f"after must be between 0 and {MAX_CURSOR}")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    conditions, params = ["position > ?"], [after]
    if declaration_id is not None:
        conditions.append("declaration_id = ?")
        params.append(declaration_id)
    if reader is not None:
        conditions.append("reader = ?")
        params.append(reader)
    rows = database.query(f"SELECT {', '.join(Read._fields)} FROM personal_data_reads"
                          f" WHERE {' AND '.join(conditions)} ORDER BY position LIMIT ?", (*params, limit + 1))
    page = [Read(*row) for row in rows[:limit]]
    return page, (page[-1].position if len(rows) > limit else None)
