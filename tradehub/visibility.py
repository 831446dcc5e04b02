"""Who sees what, and who may do what with it (docs/enforcement-visibility.md): the one place that decides.

The API and the officer pages both read through this module, `Visibility`
above all, so a route and the page that shows the same thing can never
disagree, and neither of them writes a rule of its own.

- Declarations: a trader sees its own (it is the declarant), an officer those
  routed to its agency, now or before an amendment, an admin all. Unknown and
  hidden ids are refused alike (`Hidden`, 404), so an id teaches nothing. Only
  the declarant or an admin may change one; officers do not declare.
- Personal data (the people on board: crew and passengers, their names, dates
  of birth and identity documents) goes to an officer as the agency's own
  messages carry it: border officers see the lists (FAL 5 and 6), maritime
  officers the master's name and the counts (FAL 1), the other agencies the
  counts. The declarant and admins see the whole document. An officer reads
  only its own agency's messages (docs/personal-data.md).
- Every answer that shows anyone a person is recorded first, in the access
  log (`Visibility.record`, hub/declarations/access.py): who, which
  declaration, which of its people, where. What it records is read off the
  answer itself (`personal_data_shown`), so counts, an erased list and a
  goods declaration record nothing.
- I5, enforcement stays with officers: a trader sees that its declaration is
  held, and since when, as "held for control", and nothing of the alert
  behind it: not its reason, subject or id, nor who raised it, nor the alert
  notices the agencies exchanged about it. Officers and admins see everything.
- The officer views (exchange aside) and alerts are for officers and admins:
  an officer's cover its own agency's declarations, an admin's all.
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
from dataclasses import replace
from fnmatch import fnmatchcase
from typing import Any

from adapters.maritime.forms import MASTER_RANKS
from hub.declarations import (
    ERASED,
    Alert,
    AlertNotFound,
    Declaration,
    DeclarationNotFound,
    Declarations,
    record_personal_data_read,
)
from projections.alerts import alerts_view
from projections.database import ViewDatabase
from projections.exchange import exchange_view
from projections.messages import recorded_messages
from projections.recognition import recognition_view
from projections.statistics import statistics_view
from projections.status_board import Filters, counts_by_status, list_declarations

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

# Personal data: the lists of people on board. An officer sees of them what its agency's messages carry
# (adapters/): border the lists, maritime the master's name and the counts, every other agency the counts.
PERSONAL_DATA = ("crew", "passengers")
LIST_AGENCIES = ("border",)  # FAL 5 and 6 name everyone on board
MASTER_AGENCIES = ("maritime",)  # FAL 1 names the master; everyone else, as the others, by count only
MASTER = "master"  # what an officer of MASTER_AGENCIES is shown of the crew, beside the counts
# The message bodies that name people (adapters/border/forms.py, adapters/maritime/forms.py): each type, with the
# personal data it carries and the mark in its body of someone named (FAL 1 names the master only if there is one).
PERSONAL_MESSAGES: Mapping[str, tuple[str, str]] = {
    "fal5": ("crew", "<CrewMember "),
    "fal6": ("passengers", "<Passenger "),
    "fal1": (MASTER, 'NameOfMaster="'),
}


# ---- refusals: what a caller may not have -------------------------------------------------------

class Refused(Exception):
    """The caller may not have what it asked for: `status` is 404 when it may not even learn that the thing
    exists, 403 when it may. The API and the pages each say so in their own words."""

    status = 403


class Hidden(Refused):
    """No such declaration for this caller: an unknown id and one the caller may not see are refused alike."""

    status = 404


class ReadOnly(Refused):
    """The caller sees the declaration but may not change it: only the declarant or an admin may."""


class NotDeclaring(Refused):
    """Officers do not declare."""


class OfficersOnly(Refused):
    """The officer views and alerts are for officers and admins; traders are refused them."""


class TradersOnly(Refused):
    """Webhook subscriptions are a trader's: its endpoints, for its own declarations' notifications."""


class NotClearable(Refused):
    """The caller may not clear this alert: `status` 404 if it cannot see it (or there is none), 403 if it can."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# ---- declarations -------------------------------------------------------------------------------

def may_see(who: Caller, declaration: Declaration) -> bool:
    """A trader its own declarations, an officer those routed to its agency (now or before an amendment),
    an admin all."""
    if who.role == "admin":
        return True
    if who.role == "trader":
        return declaration.declarant == who.party
    return who.agency in declaration.agencies


def may_change(who: Caller, declaration: Declaration) -> bool:
    """The declarant or an admin."""
    return who.role == "admin" or (who.role == "trader" and declaration.declarant == who.party)


def declaring_for(who: Caller) -> str | None:
    """The party whose declarations the caller may submit: a trader its own, an admin any (None).
    `NotDeclaring` for an officer."""
    if who.role == "officer":
        raise NotDeclaring
    return who.party if who.role == "trader" else None


def listing(who: Caller, filters: Filters) -> Filters | None:
    """List filters narrowed to the declarations the caller may see; None if it asked only for others'
    (a trader naming another declarant)."""
    if who.role == "trader":
        if filters.declarant not in (None, who.party):
            return None
        filters = replace(filters, declarant=who.party)
    return replace(filters, visible_to_agency=who.agency if who.role == "officer" else None)


def feed_scope(who: Caller) -> tuple[str | None, str | None]:
    """The notifications a caller may read, as (party, agency) for `projections.notifications.after`: a trader
    those of the declarations it declared, an officer those of the declarations routed to its agency, an admin
    all (None, None). A token without its party or agency reads nothing ("" matches no row)."""
    if who.role == "trader":
        return who.party or "", None
    if who.role == "officer":
        return None, who.agency or ""
    return None, None


def subscriber(who: Caller) -> str:
    """The party whose webhook subscriptions the caller manages: a trader its own, and only its own (another
    party's subscription is not found); `TradersOnly` for officers and admins, whose notifications are the
    pull feed's."""
    if who.role != "trader" or not who.party:
        raise TradersOnly
    return who.party


def view_scope(who: Caller) -> str | None:
    """The agency whose declarations an officer's views cover (None: all, for an admin); `OfficersOnly` for a
    trader. Raising an alert asks here too."""
    if who.role == "trader":
        raise OfficersOnly
    return who.agency if who.role == "officer" else None


def sees_enforcement(who: Caller) -> bool:
    """Officers and admins see alerts, holds and alert notices; traders do not (I5)."""
    return who.role in ("officer", "admin")


def sees_lists(who: Caller) -> bool:
    """The crew and passenger lists: for the declarant (whoever may see a declaration and is a trader is its
    declarant), admins and border officers."""
    return who.role != "officer" or who.agency in LIST_AGENCIES


def document_for(who: Caller, document: dict[str, Any]) -> dict[str, Any]:
    """The document as the caller may see it: for an officer whose agency does not get the lists, the lists
    replaced by their counts (`crew_count`, `passenger_count`) and, for maritime, the master's name (`master`)."""
    if sees_lists(who) or not any(key in document for key in PERSONAL_DATA):
        return document
    shown = {key: value for key, value in document.items() if key not in PERSONAL_DATA}
    crew = document.get("crew") or []
    shown["crew_count"] = len(crew)
    shown["passenger_count"] = len(document.get("passengers") or [])
    if who.agency in MASTER_AGENCIES:
        master = next((member for member in crew if str(member.get("rank", "")).strip().casefold() in MASTER_RANKS),
                      None)
        if master is not None:
            shown[MASTER] = {"family_name": master.get("family_name", ""),
                             "given_names": master.get("given_names", "")}
    return shown


# ---- the access log: what of the people on board an answer shows -------------------------------

def personal_data_shown(*, document: Mapping[str, Any] | None = None, history: Iterable[Mapping[str, Any]] = (),
                        messages: Iterable[Mapping[str, Any]] = ()) -> tuple[list[str], list[str]]:
    """The personal data these parts of an answer show, as they are shown (`document_for`, `history_for`,
    `messages_for`): the lists and the master's name that name someone, in a document or in the history's
    documents, and the message types whose bodies name someone, with what they carry. Counts, entries erased
    field by field and bodies that do not open show no one."""
    fields: set[str] = set()
    documents = [document] if document is not None else []
    documents += [event["document"] for event in history if "document" in event]
    for shown in documents:
        fields.update(key for key in PERSONAL_DATA if any(map(_names_someone, shown.get(key) or ())))
        if _names_someone(shown.get(MASTER)):
            fields.add(MASTER)
    types: set[str] = set()
    for message in messages:
        carried = PERSONAL_MESSAGES.get(message["type"])
        body = message.get("body")
        if carried is not None and isinstance(body, str) and carried[1] in body:
            fields.add(carried[0])
            types.add(message["type"])
    return sorted(fields), sorted(types)


def _names_someone(value: Any) -> bool:
    """Whether an entry of a list of people (or the master) still names someone: any of its fields not erased."""
    if isinstance(value, Mapping):
        return any(map(_names_someone, value.values()))
    return value not in (None, "", ERASED)


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


def may_see_alert(who: Caller, database: ViewDatabase, alert_id: str, raised_by: str) -> bool:
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


def clearance_refusal(who: Caller, database: ViewDatabase, alert_id: str, raised_by: str) -> int | None:
    """None if the caller may clear the alert; else 404 if it may not even see it, 403 if it may."""
    if may_clear(who, raised_by):
        return None
    return 403 if may_see_alert(who, database, alert_id, raised_by) else 404


# ---- licences and certificates (docs/licences.md) -----------------------------------------------

def may_see_licence(who: Caller, holder: str) -> bool:
    """Admins and officers see every licence (agencies recognise each other's documents); a trader those its
    party holds. Any other licence is refused as an unknown one is (404), so a number teaches nothing."""
    return who.role in ("admin", "officer") or (who.role == "trader" and who.party == holder)


def may_issue_licence(who: Caller, issuer: str) -> bool:
    """Issuing, revoking, suspending and reinstating: an admin, or an officer of the issuing agency."""
    return who.role == "admin" or (who.role == "officer" and who.agency is not None and who.agency == issuer)


def licence_holder(who: Caller, holder: str | None) -> str | None:
    """The holder a licence list is narrowed to: a trader's own party, whatever it asked (`""` when it asked for
    another's: nothing); anyone else's choice (None: all)."""
    if who.role != "trader":
        return holder
    return who.party if holder in (None, who.party) else ""


# ---- the service: every read a caller makes, through the rules above ----------------------------

class Seen:
    """One declaration as one caller may see it, with the events of its stream as stored (kept here, never
    handed out: `history` is what the caller may read of them)."""

    __slots__ = ("who", "declaration", "_events")

    def __init__(self, who: Caller, declaration: Declaration, events: Sequence[Mapping[str, Any]]) -> None:
        self.who = who
        self.declaration = declaration
        self._events = events

    @property
    def document(self) -> dict[str, Any]:
        return document_for(self.who, self.declaration.document)

    @property
    def holds(self) -> list[str]:
        """The ids of the alerts holding it; none for a trader."""
        return holds_for(self.who, self.declaration)

    @property
    def hold_details(self) -> list[dict[str, Any]]:
        """What each alert holding it says (subject, reason, who raised it); none for a trader."""
        return [self.declaration.holds[alert_id] for alert_id in self.holds]

    @property
    def hold(self) -> dict[str, Any] | None:
        """Since when it is held, and the neutral note: for everyone who sees it."""
        return hold_of(self.declaration, self._events)

    @property
    def history(self) -> list[dict[str, Any]]:
        return history_for(self.who, self._events)


class Visibility:
    """What a caller may see of the hub: declarations from the event store, everything else from the views.

    Each read either answers within the rules or raises `Refused`. The reads block (the store, the views),
    so async callers run them on a thread.
    """

    def __init__(self, declarations: Declarations, views: ViewDatabase) -> None:
        self.declarations = declarations
        self.views = views

    # ---- declarations ----

    def declaration(self, who: Caller, declaration_id: str, *, history: bool = True) -> Seen:
        """The declaration with its history, from one read of its stream; `Hidden` if unknown or not the
        caller's to see. Without `history` it is read from its latest snapshot on (a long stream's document in
        a fraction of the time), and its history only if it is held (`seen`)."""
        try:
            if history:
                declaration, events = self.declarations.with_history(declaration_id)
            else:
                declaration = self.declarations.get(declaration_id)
        except DeclarationNotFound:
            raise Hidden from None
        if not may_see(who, declaration):
            raise Hidden
        return Seen(who, declaration, events) if history else self.seen(who, declaration)

    def seen(self, who: Caller, declaration: Declaration) -> Seen:
        """A declaration the caller has just changed or submitted, as it may see it. Only a held one needs its
        history (for since when), and only then is its stream read."""
        events = self.declarations.history(declaration.id) if declaration.holds else []
        return Seen(who, declaration, events)

    def record(self, who: Caller, declaration_id: Any, route: str, *, document: Mapping[str, Any] | None = None,
               history: Iterable[Mapping[str, Any]] = (), messages: Iterable[Mapping[str, Any]] = ()) -> None:
        """Record in the access log that `route` shows the caller what of the people on board these parts of its
        answer show (`personal_data_shown`), if anyone. Called once per answer, after it is made and before it
        is sent: a store that cannot record raises, and the caller is shown nothing."""
        fields, types = personal_data_shown(document=document, history=history, messages=messages)
        if fields:
            record_personal_data_read(self.declarations, str(declaration_id), reader=who.subject, role=who.role,
                                      agency=who.agency or "", party=who.party or "", token_id=who.token_id,
                                      fields=fields, messages=types, route=route)

    def to_change(self, who: Caller, declaration_id: str) -> Declaration:
        """The declaration, if the caller may change it: `Hidden` if it may not see it, `ReadOnly` if it may."""
        try:
            declaration = self.declarations.get(declaration_id)
        except DeclarationNotFound:
            raise Hidden from None
        if not may_see(who, declaration):
            raise Hidden
        if not may_change(who, declaration):
            raise ReadOnly
        return declaration

    def listed(self, who: Caller, filters: Filters, *, limit: int,
               after: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the declarations the caller may see, newest first, and the cursor of the next page.
        `InvalidQuery` (from the status board) for a cursor or bounds it cannot use."""
        scoped = listing(who, filters)
        if scoped is None:
            return [], None
        return list_declarations(self.views, scoped, limit=limit, after=after)

    def status_counts(self, who: Caller) -> dict[str, int]:
        """Declarations by overall status across the hub: for officers and admins; none for a trader."""
        return counts_by_status(self.views) if who.role != "trader" else {}

    def standing_holds(self, who: Caller, items: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
        """For each held one of these listed declarations, the alerts holding it now; none for a trader."""
        held = [item["id"] for item in items if item["status"] == "held"]
        return _standing_holds(self.views, held) if sees_enforcement(who) and held else {}

    def messages(self, seen: Seen) -> list[Any]:
        """The messages exchanged with the agencies about a declaration that the caller may read, oldest first."""
        rows = recorded_messages(self.views, str(seen.declaration.id), seen._events)
        return messages_for(seen.who, rows)

    def exchange(self, seen: Seen) -> dict[str, Any]:
        """The information exchange view of a declaration, as the caller may see it."""
        return exchange_for(seen.who, exchange_view(self.views, str(seen.declaration.id)))

    # ---- the officer views ----

    def recognition(self, who: Caller) -> dict[str, Any]:
        return recognition_view(self.views, view_scope(who))

    def alerts(self, who: Caller) -> dict[str, Any]:
        return alerts_view(self.views, view_scope(who))

    def statistics(self, who: Caller) -> dict[str, Any]:
        view_scope(who)  # for officers and admins; the figures are the whole hub's
        return statistics_view(self.views)

    # ---- alerts ----

    def alert_to_clear(self, who: Caller, alert_id: str) -> Alert:
        """The alert, if the caller may clear it; `NotClearable` (404 or 403) otherwise."""
        try:
            alert = self.declarations.get_alert(alert_id)
        except AlertNotFound:
            raise NotClearable(404) from None
        refusal = clearance_refusal(who, self.views, str(alert.id), alert.raised_by)
        if refusal is not None:
            raise NotClearable(refusal)
        return alert


def _standing_holds(database: ViewDatabase, declaration_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
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
