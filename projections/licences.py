"""The licences read model: every licence with its remaining quantity and ledger, and what each declaration cites.

The licensing process (followers.licensing) writes these tables as it follows the log; the API's lists and
the /licences page read them. A single licence with its exact ledger is read from the store itself
(`Declarations.licence_with_ledger`): this view is for lists, a few milliseconds behind.
"""

from __future__ import annotations

from typing import Any

from .database import ViewDatabase

NAME = "licensing"
TABLES = (
    "CREATE TABLE IF NOT EXISTS licences ("
    " id TEXT PRIMARY KEY, number TEXT NOT NULL, issuer TEXT NOT NULL, type TEXT NOT NULL, holder TEXT NOT NULL,"
    " hs_scope TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL, valid_from TEXT NOT NULL,"
    " valid_to TEXT NOT NULL, reserved TEXT NOT NULL, consumed TEXT NOT NULL, suspended_at TEXT, revoked_at TEXT,"
    " revocation_reason TEXT, source TEXT NOT NULL, issued_by TEXT NOT NULL, issued_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS licences_by_holder ON licences (holder, number)",
    "CREATE INDEX IF NOT EXISTS licences_by_number ON licences (number)",
    "CREATE TABLE IF NOT EXISTS licence_ledger ("
    " licence_id TEXT NOT NULL, position BIGINT NOT NULL, kind TEXT NOT NULL, declaration_id TEXT NOT NULL,"
    " declaration_version INTEGER NOT NULL, quantity TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,"
    " PRIMARY KEY (licence_id, position))",
    "CREATE INDEX IF NOT EXISTS licence_ledger_by_declaration ON licence_ledger (licence_id, declaration_id, position)",
    # The licences each declaration cites now (its latest version), to settle when it is released or closed.
    "CREATE TABLE IF NOT EXISTS licence_citations ("
    " declaration_id TEXT NOT NULL, licence_id TEXT NOT NULL, PRIMARY KEY (declaration_id, licence_id))",
)


def cited_by(database_cursor: Any, declaration_id: str) -> list[str]:
    database_cursor.execute("SELECT licence_id FROM licence_citations WHERE declaration_id = ?", (declaration_id,))
    return [row[0] for row in database_cursor.fetchall()]


_COLUMNS = ("id", "number", "issuer", "type", "holder", "hs_scope", "quantity", "unit", "valid_from", "valid_to",
            "reserved", "consumed", "suspended_at", "revoked_at", "revocation_reason", "source", "issued_by",
            "issued_at")


def licences_view(database: ViewDatabase, *, holder: str | None = None, number: str | None = None,
                  limit: int = 200, after: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Licences, by number; a holder's own only when `holder` is given; those after (number, issuer) `after`
    (a page's last) when it is given."""
    where, parameters = [], []
    if after is not None:
        where.append("(number > ? OR (number = ? AND issuer > ?))")
        parameters += [after[0], after[0], after[1]]
    if holder is not None:
        where.append("holder = ?")
        parameters.append(holder)
    if number is not None:
        where.append("number = ?")
        parameters.append(number)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = database.query(f"SELECT {', '.join(_COLUMNS)} FROM licences{clause} ORDER BY number, issuer LIMIT ?",
                          (*parameters, limit))
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


def ledger_view(database: ViewDatabase, licence_id: str) -> list[dict[str, Any]]:
    rows = database.query(
        "SELECT kind, declaration_id, declaration_version, quantity, reason, at FROM licence_ledger"
        " WHERE licence_id = ? ORDER BY position", (licence_id,))
    return [{"kind": kind, "declaration_id": declaration_id, "declaration_version": version, "quantity": quantity,
             "reason": reason, "time": at} for kind, declaration_id, version, quantity, reason, at in rows]
