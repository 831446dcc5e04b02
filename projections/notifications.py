"""The notifications feed: each overall status change and each agency decision, in log order.

The notifications process (followers.notifications) writes these rows as it follows the log; the pull API,
the server-sent events and the webhooks read them. A notification's id is its cursor: the position of the
event in the log times `PER_EVENT`, plus its ordinal among that event's notifications. Ids therefore grow
with the log, and a rebuild gives every notification the id it had before.

A row carries only what a trader may know of its own declaration (docs/enforcement-visibility.md, I5): the
overall status as the trader's API shows it ("held" included, never why), an agency's status and code, and
the time. Who may read a row is stored with it: the declarant (`declarant`) and the agencies the declaration
was routed to when it was written (`notification_routes`, the officer's scope).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .database import Cursor, ViewDatabase

NAME = "notifications"
PER_EVENT = 8  # ids per log position: an event gives at most a decision and a status change
MAX_CURSOR = 2**63 - 1  # a BIGINT
STATUS, DECISION = "status", "decision"
TYPES = {STATUS: "declaration.status", DECISION: "declaration.decision"}

TABLES = (
    "CREATE TABLE IF NOT EXISTS notifications ("
    " id BIGINT PRIMARY KEY, declaration_id TEXT NOT NULL, declarant TEXT NOT NULL, consignee TEXT,"
    " routes TEXT NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL, reference TEXT NOT NULL,"
    " status TEXT NOT NULL, agency TEXT, code TEXT, time TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS notifications_by_declarant ON notifications (declarant, id)",
    # An officer's scope: one row per (agency, notification), so its feed is an index range too.
    "CREATE TABLE IF NOT EXISTS notification_routes ("
    " agency TEXT NOT NULL, id BIGINT NOT NULL, PRIMARY KEY (agency, id))",
)


class Notification(NamedTuple):
    """One row of `notifications`. `routes` is the agencies, comma-separated and sorted."""

    id: int
    declaration_id: str
    declarant: str
    consignee: str | None
    routes: str
    kind: str
    type: str
    reference: str
    status: str
    agency: str | None
    code: str | None
    time: str


_COLUMNS = ", ".join(f"n.{name}" for name in Notification._fields)


def notification_id(position: int, ordinal: int) -> int:
    """The cursor of the `ordinal`th notification of the event at `position` in the log."""
    if not 0 <= ordinal < PER_EVENT:
        raise ValueError(f"an event gives at most {PER_EVENT} notifications")
    return position * PER_EVENT + ordinal


def payload(row: Notification) -> dict[str, Any]:
    """The notification as the API, the event stream and the webhooks send it (docs/api.md)."""
    return {"id": str(row.id), "type": row.type, "declaration_id": row.declaration_id, "reference": row.reference,
            "status": row.status, "agency": row.agency, "code": row.code, "time": row.time}


def record(cursor: Cursor, rows: Sequence[Notification]) -> None:
    """Store these notifications inside the caller's transaction; one already stored (a batch applied again
    after a crash) is left as it is."""
    cursor.bulk(
        "INSERT INTO notifications (id, declaration_id, declarant, consignee, routes, kind, type, reference,"
        " status, agency, code, time) SELECT * FROM {rows} WHERE true ON CONFLICT (id) DO NOTHING",
        "id bigint, declaration_id text, declarant text, consignee text, routes text, kind text, type text,"
        " reference text, status text, agency text, code text, time text", rows)
    cursor.bulk(
        "INSERT INTO notification_routes (agency, id) SELECT * FROM {rows} WHERE true"
        " ON CONFLICT (agency, id) DO NOTHING",
        "agency text, id bigint",
        [(agency, row.id) for row in rows for agency in row.routes.split(",") if agency])


def _scope(party: str | None, agency: str | None) -> tuple[str, list[Any]]:
    """The join and condition that narrow the feed to a trader's own declarations, or to an agency's."""
    if party is not None and agency is not None:
        raise ValueError("a feed is scoped to a party or to an agency, not both")
    if party is not None:
        return "n.declarant = ?", [party]
    if agency is not None:
        return "n.id IN (SELECT r.id FROM notification_routes r WHERE r.agency = ? AND r.id > ?)", [agency]
    return "", []


def after(database: ViewDatabase, *, cursor: int, limit: int, party: str | None,
          agency: str | None) -> tuple[list[Notification], int | None]:
    """The notifications after `cursor` in scope, oldest first, at most `limit`, and the cursor to read on from
    (the last one's id; None when there were none, so the caller keeps its own).

    `party` is a trader's USCC (the declarations it declared: visibility.may_see), `agency` an officer's agency
    (the declarations routed to it), neither an admin's whole feed. Rows out of scope never shape the answer,
    so a cursor taken from someone else's feed teaches nothing.
    """
    if not 0 <= cursor <= MAX_CURSOR:
        raise ValueError(f"cursor must be between 0 and {MAX_CURSOR}")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    condition, params = _scope(party, agency)
    if agency is not None:
        params.append(cursor)  # the subquery's own bound keeps it an index range
    where = "n.id > ?" + (f" AND {condition}" if condition else "")
    rows = database.query(f"SELECT {_COLUMNS} FROM notifications n WHERE {where} ORDER BY n.id LIMIT ?",
                          (cursor, *params, limit))
    page = [Notification(*row) for row in rows]
    return page, (page[-1].id if page else None)


def latest_cursor(database: ViewDatabase, *, party: str | None, agency: str | None) -> int:
    """The id of the newest notification in scope (0 when there is none): a stream that starts now starts
    after it."""
    condition, params = _scope(party, agency)
    if agency is not None:
        params.append(0)
    rows = database.query(f"SELECT MAX(n.id) FROM notifications n{' WHERE ' + condition if condition else ''}",
                          params)
    return rows[0][0] or 0


def head(database: ViewDatabase) -> int:
    """The newest notification's id over every scope (0 when there is none): what a waiting stream watches,
    one cheap read for all of them, before reading its own scope."""
    return database.query("SELECT MAX(id) FROM notifications")[0][0] or 0


def newest(database: ViewDatabase, *, limit: int, party: str | None, agency: str | None,
           before: int | None = None) -> tuple[list[Notification], int | None]:
    """The newest notifications in scope (older than `before`, when given), newest first, at most `limit`; and
    the `before` of the next, older page (None on the last). What the pages list; the feed reads forwards."""
    if before is not None and not 0 <= before <= MAX_CURSOR:
        raise ValueError(f"cursor must be between 0 and {MAX_CURSOR}")
    condition, params = _scope(party, agency)
    if agency is not None:
        params.append(0)
    clauses = [clause for clause in (condition, "n.id < ?" if before is not None else "") if clause]
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = database.query(f"SELECT {_COLUMNS} FROM notifications n{where} ORDER BY n.id DESC LIMIT ?",
                          (*params, *([before] if before is not None else []), limit + 1))
    page = [Notification(*row) for row in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)
