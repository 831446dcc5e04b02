"""Who sees what of a declaration and of enforcement (docs/enforcement-visibility.md): the one place that decides.

The API and the officer pages both read through these functions, so a route
and the page that shows the same thing can never disagree.

- I5, enforcement stays with officers: a trader sees that its declaration is
  held, and since when, as "held for control", and nothing of the alert
  behind it: not its reason, subject or id, nor who raised it, nor the alert
  notices the agencies exchanged about it. Officers and admins see everything.
- I6, an alert belongs to whoever raised it: only an officer of the agency
  that raised it, or an admin, may clear it. Who may see an alert follows the
  alerts view (projections/alerts.py): an officer sees the alerts its agency
  raised and those holding a declaration routed to its agency; a trader none.

Redaction is data: a declaration event whose details are enforcement's is
one line of `ENFORCEMENT_EVENTS`, a message a trader may not read one line of
`ENFORCEMENT_MESSAGES`. The stored events and messages keep everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from hub.declarations import Alert, AlertNotFound, Declaration, Declarations

from .auth import Caller

HELD_FOR_CONTROL = "held for control"

# Declaration events whose fields are enforcement detail, and the neutral note a trader sees instead of them.
ENFORCEMENT_EVENTS: Mapping[str, str] = {
    "HoldPlaced": HELD_FOR_CONTROL,  # alert_id, subject, alert (reason, raised_by, ...)
    "HoldLifted": "hold lifted",  # alert_id
    "GateOutRevoked": "gate-out revoked",  # reason, which may name the hold
}
# What a trader still sees of such an event.
_KEPT = ("type", "version", "time")

# Messages (and the exchange view's flows, by the same type) a trader never sees, as `fnmatch` patterns of their
# `type`. A port release revocation carries only a neutral reason: traders see it.
ENFORCEMENT_MESSAGES: tuple[str, ...] = (
    "alert-notice",  # the hub tells an agency of an alert's hold
    "alert-cleared-notice",  # and of its lifting
    "alert *",  # an agency's own alert, as the inbox records it ("alert party 9135...")
    "alert-*",  # any other alert notice, however it is named
)

# Personal data (crew and passenger lists) goes only to the agencies that need it.
PERSONAL_DATA = ("crew", "passengers")
PERSONAL_DATA_AGENCIES = ("border", "maritime")


def sees_enforcement(who: Caller) -> bool:
    """Officers and admins see alerts, holds and alert notices; traders do not (I5)."""
    return who.role in ("officer", "admin")


def document_for(who: Caller, document: dict[str, Any]) -> dict[str, Any]:
    """The document without crew and passengers, for an officer of an agency that does not need them."""
    if who.role == "officer" and who.agency not in PERSONAL_DATA_AGENCIES:
        return {key: value for key, value in document.items() if key not in PERSONAL_DATA}
    return document


def event_for(who: Caller, event: Mapping[str, Any]) -> dict[str, Any]:
    """One history entry as the caller may see it."""
    note = ENFORCEMENT_EVENTS.get(event["type"])
    if note is not None and not sees_enforcement(who):
        return {**{key: event[key] for key in _KEPT}, "note": note}
    shown = dict(event)
    if "document" in shown:
        shown["document"] = document_for(who, shown["document"])
    return shown


def history_for(who: Caller, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The declaration's events as the caller may see them, oldest first."""
    return [event_for(who, event) for event in events]


def is_enforcement_message(kind: str) -> bool:
    return any(fnmatchcase(kind, pattern) for pattern in ENFORCEMENT_MESSAGES)


def messages_for(who: Caller, rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    """The recorded messages the caller may read: an officer its own agency's, a trader none about alerts."""
    if who.role == "officer":
        return [row for row in rows if row["agency"] == who.agency]
    if not sees_enforcement(who):
        return [row for row in rows if not is_enforcement_message(row["type"])]
    return list(rows)


def exchange_for(who: Caller, view: Mapping[str, Any]) -> dict[str, Any]:
    """The information exchange view without the alert flows, for a trader."""
    if sees_enforcement(who):
        return dict(view)
    return {**view, "flows": [flow for flow in view["flows"] if not is_enforcement_message(flow["type"])]}


def holds_for(who: Caller, declaration: Declaration) -> list[str]:
    """The ids of the alerts holding the declaration; none for a trader, who sees only that it is held."""
    return sorted(declaration.holds) if sees_enforcement(who) else []


def held_since(events: Sequence[Mapping[str, Any]], version: int | None = None) -> str | None:
    """When the holds standing at `version` (default: the last event) began to stand without a break."""
    standing: set[str] = set()
    since = None
    for event in events:
        if version is not None and event["version"] > version:
            break
        if event["type"] == "HoldPlaced":
            since = since if standing else event["time"]
            standing.add(event["alert_id"])
        elif event["type"] == "HoldLifted":
            standing.discard(event["alert_id"])
            since = since if standing else None
    return since


def hold_of(declaration: Declaration, events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What everyone may know of the declaration's holds: since when it is held, and a neutral note."""
    if not declaration.holds:
        return None
    return {"since": held_since(events, declaration.version), "note": HELD_FOR_CONTROL}


def standing_holds(database: Any, declaration_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """The alerts holding each of these declarations now, from the alerts view: id, subject, reason, raised by."""
    if not declaration_ids:
        return {}
    rows = database.query(
        "SELECT h.declaration_id, a.id, a.subject_kind, a.subject, a.reason, a.raised_by FROM alert_holds h"
        " JOIN alerts a ON a.id = h.alert_id WHERE h.lifted_at IS NULL"
        f" AND h.declaration_id IN ({', '.join('?' * len(declaration_ids))}) ORDER BY h.held_at, a.id",
        list(declaration_ids))
    holds: dict[str, list[dict[str, str]]] = {}
    for declaration_id, alert_id, kind, subject, reason, raised_by in rows:
        holds.setdefault(declaration_id, []).append({"alert_id": alert_id, "subject_kind": kind, "subject": subject,
                                                     "reason": reason, "raised_by": raised_by})
    return holds


# ---- I6: an alert belongs to whoever raised it -------------------------------------------------

def alert_owner(raised_by: str) -> str | None:
    """The agency an alert belongs to: `officer:<agency>` and `agency:<agency>` raise for one; an admin for none."""
    role, _, name = raised_by.partition(":")
    return name if role in ("officer", "agency") and name else None


def may_clear(who: Caller, raised_by: str) -> bool:
    """An admin, or an officer of the agency that raised the alert."""
    if who.role == "admin":
        return True
    return who.role == "officer" and who.agency is not None and alert_owner(raised_by) == who.agency


def may_see_alert(who: Caller, database: Any, alert_id: str, raised_by: str) -> bool:
    """The alerts view's rule for one alert: an admin sees all; an officer its agency's own and those holding,
    or having held, a declaration routed to its agency; a trader none."""
    if who.role == "admin":
        return True
    if who.role != "officer":
        return False
    if alert_owner(raised_by) == who.agency:
        return True
    return bool(database.query(
        "SELECT 1 FROM alert_holds h JOIN board_agencies v ON v.declaration_id = h.declaration_id AND v.agency = ?"
        " WHERE h.alert_id = ? LIMIT 1", (who.agency, alert_id)))


def clearance_refusal(who: Caller, database: Any, alert_id: str, raised_by: str) -> int | None:
    """None if the caller may clear the alert; else 404 if it may not even see it, 403 if it may."""
    if may_clear(who, raised_by):
        return None
    return 403 if may_see_alert(who, database, alert_id, raised_by) else 404


class NotClearable(Exception):
    """The caller may not clear this alert: `status` 404 if it cannot see it (or there is none), 403 if it can."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def alert_to_clear(who: Caller, declarations: Declarations, database: Any, alert_id: str) -> Alert:
    """The alert, if the caller may clear it; `NotClearable` otherwise. The API and the pages both ask here."""
    try:
        alert = declarations.get_alert(alert_id)
    except AlertNotFound:
        raise NotClearable(404) from None
    refusal = clearance_refusal(who, database, str(alert.id), alert.raised_by)
    if refusal is not None:
        raise NotClearable(refusal)
    return alert
