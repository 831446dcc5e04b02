"""Parked dispatch: a declaration's messages to one agency held back after one could not be sent.

Dispatch (followers.dispatch) owns these tables and writes them in its own transactions, with its position, so
what is parked survives a restart or a kill -9 exactly as the position does. One row of `dispatch_parked` per
(agency, declaration) whose dispatch failed: the version that failed, why, how often it was tried and when it is
tried next. `dispatch_waiting` holds every version whose messages wait, the failed one first: they are
published in version order once the first goes through. Messages are not stored: a retry builds them again
from the log, so they carry the same ids (docs/dispatch.md).
"""

from __future__ import annotations

from typing import Any

from .database import Cursor, ViewDatabase

TABLES = (
    "CREATE TABLE IF NOT EXISTS dispatch_parked ("
    " agency TEXT NOT NULL, declaration_id TEXT NOT NULL, failed_version INTEGER NOT NULL, reason TEXT NOT NULL,"
    " failed_at TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (agency, declaration_id))",
    "CREATE TABLE IF NOT EXISTS dispatch_waiting ("
    " agency TEXT NOT NULL, declaration_id TEXT NOT NULL, version INTEGER NOT NULL,"
    " PRIMARY KEY (agency, declaration_id, version))",
)


def parked_declarations(cursor: Cursor, agency: str) -> set[str]:
    cursor.execute("SELECT declaration_id FROM dispatch_parked WHERE agency = ?", (agency,))
    return {declaration_id for (declaration_id,) in cursor.fetchall()}


def park(cursor: Cursor, agency: str, declaration_id: str, version: int, reason: str, failed_at: str,
         next_attempt: float) -> None:
    """Hold back `version`'s messages to `agency`, and every later one of the declaration, after a failure."""
    cursor.execute(
        "INSERT INTO dispatch_parked (agency, declaration_id, failed_version, reason, failed_at, attempts,"
        " next_attempt) VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (agency, declaration_id) DO NOTHING",
        (agency, declaration_id, version, reason, failed_at, next_attempt))
    wait(cursor, agency, declaration_id, version)


def wait(cursor: Cursor, agency: str, declaration_id: str, version: int) -> None:
    """`version`'s messages wait behind the declaration's failed ones."""
    cursor.execute("INSERT INTO dispatch_waiting (agency, declaration_id, version) VALUES (?, ?, ?)"
                   " ON CONFLICT (agency, declaration_id, version) DO NOTHING", (agency, declaration_id, version))


def due(cursor: Cursor, agency: str, now: float, limit: int = 100) -> list[tuple[str, int, int]]:
    """(declaration, failed version, attempts) of the parked declarations whose next attempt has come."""
    cursor.execute("SELECT declaration_id, failed_version, attempts FROM dispatch_parked"
                   " WHERE agency = ? AND next_attempt <= ? ORDER BY next_attempt LIMIT ?", (agency, now, limit))
    return [(declaration_id, version, attempts) for declaration_id, version, attempts in cursor.fetchall()]


def next_due(database: ViewDatabase, agency: str) -> float | None:
    """When the agency's next parked declaration is to be tried (seconds since the epoch), or None."""
    [(moment,)] = database.query("SELECT MIN(next_attempt) FROM dispatch_parked WHERE agency = ?", (agency,))
    return moment


def waiting_versions(cursor: Cursor, agency: str, declaration_id: str) -> list[int]:
    cursor.execute("SELECT version FROM dispatch_waiting WHERE agency = ? AND declaration_id = ? ORDER BY version",
                   (agency, declaration_id))
    return [version for (version,) in cursor.fetchall()]


def published(cursor: Cursor, agency: str, declaration_id: str, version: int) -> None:
    """`version`'s messages went out: it no longer waits."""
    cursor.execute("DELETE FROM dispatch_waiting WHERE agency = ? AND declaration_id = ? AND version = ?",
                   (agency, declaration_id, version))


def unpark(cursor: Cursor, agency: str, declaration_id: str) -> None:
    """Everything that waited went out."""
    cursor.execute("DELETE FROM dispatch_parked WHERE agency = ? AND declaration_id = ?", (agency, declaration_id))
    cursor.execute("DELETE FROM dispatch_waiting WHERE agency = ? AND declaration_id = ?", (agency, declaration_id))


def postpone(cursor: Cursor, agency: str, declaration_id: str, version: int, reason: str, failed_at: str | None,
             attempts: int, next_attempt: float) -> None:
    """Tried again and failed again (at `version`, the first still waiting): when to try next."""
    cursor.execute(
        "UPDATE dispatch_parked SET failed_version = ?, reason = ?, failed_at = COALESCE(?, failed_at),"
        " attempts = ?, next_attempt = ? WHERE agency = ? AND declaration_id = ?",
        (version, reason, failed_at, attempts, next_attempt, agency, declaration_id))


def retry_now(database: ViewDatabase, agency: str, declaration_id: str, now: float) -> bool:
    """Make a parked declaration's dispatch due at once (an admin's retry); False if it is not parked."""
    with database.transaction() as cursor:
        cursor.execute("UPDATE dispatch_parked SET next_attempt = ? WHERE agency = ? AND declaration_id = ?",
                       (now, agency, declaration_id))
        return cursor.rowcount == 1


_COLUMNS = ("agency", "declaration_id", "failed_version", "reason", "failed_at", "attempts", "next_attempt")


def parked(database: ViewDatabase, *, declaration_id: str | None = None, agency: str | None = None,
           limit: int = 500) -> list[dict[str, Any]]:
    """Parked dispatches, oldest failure first, with the versions waiting behind each."""
    where, params = [], []
    if declaration_id is not None:
        where.append("declaration_id = ?")
        params.append(declaration_id)
    if agency is not None:
        where.append("agency = ?")
        params.append(agency)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = database.query(f"SELECT {', '.join(_COLUMNS)} FROM dispatch_parked{clause}"
                          " ORDER BY failed_at, agency, declaration_id LIMIT ?", (*params, limit))
    found = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
    for entry in found:
        entry["waiting_versions"] = [version for (version,) in database.query(
            "SELECT version FROM dispatch_waiting WHERE agency = ? AND declaration_id = ? ORDER BY version",
            (entry["agency"], entry["declaration_id"]))]
    return found


def parked_counts(database: ViewDatabase) -> dict[str, int]:
    """How many declarations each agency's dispatch has parked (agencies with none left out)."""
    return dict(database.query("SELECT agency, COUNT(*) FROM dispatch_parked GROUP BY agency"))
