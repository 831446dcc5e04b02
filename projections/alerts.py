"""The alerts read model: the alerts, the open declarations involving each subject, and the holds placed.

The enforcement process (followers.enforcement) writes these tables as it
follows the log; the API and the pages read them through `alerts_view`.
"""

from __future__ import annotations

from typing import Any

from .database import ViewDatabase

NAME = "alerts"
TABLES = (
    "CREATE TABLE IF NOT EXISTS alerts ("
    " id TEXT PRIMARY KEY, subject_kind TEXT NOT NULL, subject TEXT NOT NULL, subject_key TEXT NOT NULL,"
    " reason TEXT NOT NULL, raised_by TEXT NOT NULL, raised_at TEXT NOT NULL,"
    " cleared_at TEXT, cleared_by TEXT)",
    "CREATE INDEX IF NOT EXISTS alerts_by_subject ON alerts (subject_key, cleared_at)",
    "CREATE INDEX IF NOT EXISTS alerts_by_raised ON alerts (raised_at)",
    # The open declarations (not released, not withdrawn) involving each subject.
    "CREATE TABLE IF NOT EXISTS alert_subjects ("
    " subject_key TEXT NOT NULL, declaration_id TEXT NOT NULL, PRIMARY KEY (subject_key, declaration_id))",
    "CREATE INDEX IF NOT EXISTS alert_subjects_by_declaration ON alert_subjects (declaration_id)",
    "CREATE TABLE IF NOT EXISTS alert_holds ("
    " alert_id TEXT NOT NULL, declaration_id TEXT NOT NULL, held_at TEXT NOT NULL, lifted_at TEXT,"
    " PRIMARY KEY (alert_id, declaration_id))",
)


def alerts_view(database: ViewDatabase, agency: str | None = None, *, limit: int = 500) -> dict[str, Any]:
    """Alerts, newest first, each with the declarations it holds or held.

    For an officer (`agency`), only declarations routed to that agency are listed, and only alerts that
    touch one of them or that its own agency raised.
    """
    alerts = database.query(
        "SELECT id, subject_kind, subject, reason, raised_by, raised_at, cleared_at, cleared_by FROM alerts"
        " ORDER BY raised_at DESC, id LIMIT ?", (limit,))
    if not alerts:
        return {"alerts": []}
    ids = [row[0] for row in alerts]
    visible = ("" if agency is None else
               " JOIN board_agencies v ON v.declaration_id = h.declaration_id AND v.agency = ?")
    rows = database.query(
        "SELECT h.alert_id, h.declaration_id, COALESCE(d.reference, ''), h.held_at, h.lifted_at FROM alert_holds h"
        f" LEFT JOIN board_declarations d ON d.id = h.declaration_id{visible}"
        f" WHERE h.alert_id IN ({', '.join('?' * len(ids))}) ORDER BY h.held_at, h.declaration_id",
        ([agency] if agency else []) + ids)
    held: dict[str, list[dict[str, Any]]] = {}
    for alert_id, declaration_id, reference, held_at, lifted_at in rows:
        held.setdefault(alert_id, []).append({"declaration_id": declaration_id, "reference": reference,
                                              "held_at": held_at, "lifted_at": lifted_at})
    return {"alerts": [
        {"id": alert_id, "subject_kind": kind, "subject": subject, "reason": reason, "raised_by": raised_by,
         "raised_at": raised_at, "status": "cleared" if cleared_at else "open", "cleared_at": cleared_at,
         "cleared_by": cleared_by, "declarations": held.get(alert_id, [])}
        for alert_id, kind, subject, reason, raised_by, raised_at, cleared_at, cleared_by in alerts
        if agency is None or alert_id in held or raised_by.endswith(f":{agency}")]}
