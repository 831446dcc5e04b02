"""IMO FAL forms as Trafic2000 messages: what the maritime and border adapters share.

Both agencies get the FAL forms as the French maritime single window
exchanges them (Trafic2000 5.2, the published schema in
`tests/interop/fal-trafic2000`), and answer in the same way. What they
share is written once, here (xsd/maritime/README.md and xsd/border/README.md
say what goes where):

- the envelope: `Header` (`Version` 5.2, the value the published schema
  fixes; `LARefId` the hub's message id; `SentAt` the event's time in UTC;
  `From` the hub, `To` the agency) and the opening `VesselIdentification` and
  `ShipCallInformation` of the body, whose `ShipCallId` is the hub's
  declaration id, the same in every version;
- how a change becomes forms. Trafic2000 has no message function: a form
  sent again for the same ship call replaces the one the agency holds, and
  `NCA_Suppr_Not` deletes forms by the `LARefId` they were sent with. So an
  original sends every form the declaration needs; an amendment sends them
  all again under new LARefIds, plus an `NCA_Suppr_Not` ("deletion") for a
  form the declaration no longer needs; a cancellation is an `NCA_Suppr_Not`
  deleting every form the agency holds. `Message.function_code` records
  which (UN/EDIFACT 1225: 9 original, 5 replacement, 1 cancellation);
- the code lists and value formats both need;
- replies: receipts (`NCA_Receipt`) and formality decisions (`NCA_Form_Res`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from adapters.messages import AMENDED, AMENDMENT, CANCELLATION, Change, Message, Reply, ReplyError, message_id
from adapters.xml import SCHEMA_INVALID, Refused, Schema, admit_any, check_outbound, one_line
from hub.declarations.domainmodel import ACCEPTED, CANCELLED, RECEIVED, REJECTED, RELEASED

VERSION = "5.2"  # Header/@Version, fixed by the published schema: it is the schema's version, not the declaration's
HUB = "TRADEHUB"  # Header/@From of what the hub sends, @To of what it is sent
# UN/LOCODE of a port nobody declared, as SafeSeaNet writes it (and the Trafic2000 samples do).
UNKNOWN_PORT = "ZZUKN"
# What a FAL form requires and the hub's declarations do not collect (a place of birth, a stowage position).
NOT_DECLARED = "NOT DECLARED"
ENTRY, EXIT = "0", "1"  # FormInformation/@EntryOrExit: an arrival or import enters, a departure or export exits
# UN/EDIFACT 1225 message function, as Message.function_code: what a message does to the forms an agency holds.
ORIGINAL_FUNCTION, REPLACEMENT_FUNCTION, CANCELLATION_FUNCTION = "9", "5", "1"
# Identity document types as Trafic2000 enumerates them; "Pictureld" (sic, with a lower-case L) is the
# schema's spelling of a picture id, and a seafarer's identity document is a seaman's book (muster book).
IDENTITY_DOCUMENTS = {"passport": "Passport", "seafarer_id": "MusterBook", "identity_card": "Pictureld",
                      "other": "Other"}
_SubElement = etree.SubElement


# ---- values as Trafic2000 writes them -------------------------------------------------------

def moment(value: datetime | str) -> str:
    """A date and time in UTC, as Trafic2000's zsdateTime with the Z it allows."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mass(kilograms: str) -> tuple[str, str]:
    """(unit, quantity) of a mass: kilograms, or grams where a mass has more decimals than the 3 Trafic2000 keeps.

    Declared masses have up to 6 decimals of a kilogram, so grams carry any of them whole.
    """
    value = Decimal(kilograms)
    if value.normalize().as_tuple().exponent >= -3:
        return "KGM", kilograms
    return "GRM", format(value.scaleb(3).normalize(), "f")


# ---- the envelope ---------------------------------------------------------------------------

def envelope(root_name: str, ident: str, change: Change, agency: str) -> tuple[etree._Element, etree._Element]:
    """The message's root, with its `Header`, and its empty `Body`."""
    root = etree.Element(root_name)
    _SubElement(root, "Header", {"Version": VERSION, "LARefId": ident, "SentAt": moment(change.time), "From": HUB,
                                 "To": agency.upper()})
    return root, _SubElement(root, "Body")


def ship_call(body: etree._Element, imo: str, port_of_call: str, change: Change) -> None:
    """The opening every FAL form's body has: the ship, and the call, which is the hub's declaration."""
    _SubElement(body, "VesselIdentification", {"IMONumber": imo})
    _SubElement(body, "ShipCallInformation", {"ShipCallId": change.declaration_id, "PortOfCall": port_of_call})


def form_information(body: etree._Element, entering: bool, voyage: str | None) -> etree._Element:
    attributes = {"EntryOrExit": ENTRY if entering else EXIT}
    if voyage:
        attributes["VoyageNumber"] = one_line(voyage, 35)
    return _SubElement(body, "FormInformation", attributes)


def ship_information(form: etree._Element, vessel: dict[str, Any], master: str | None = None) -> None:
    attributes = {"ShipName": one_line(vessel["name"], 35)}
    if len(vessel["call_sign"]) >= 4:  # Trafic2000 takes 4 to 7 characters; a 3-character call sign is left out
        attributes["CallSign"] = vessel["call_sign"]
    attributes["FlagStateOfShip"] = vessel["flag"]
    if master:
        attributes["NameOfMaster"] = one_line(master, 20)
    _SubElement(form, "ShipInformation", attributes)


# FAL voyage attributes, in the published order, from the vessel call's fields.
_VOYAGE_FIELDS = (("LastPort", "last_port"), ("NextPort", "next_port"), ("ETAToPortOfCall", "eta"),
                 ("ETDFromPortOfCall", "etd"))


def voyage_information(form: etree._Element, document: dict[str, Any], names: tuple[str, ...]) -> None:
    """`VoyageInformation` with those of `names` the vessel call declares (each form has its own set)."""
    attributes = {}
    for name, key in _VOYAGE_FIELDS:
        if name in names and document.get(key):
            attributes[name] = moment(document[key]) if key in ("eta", "etd") else document[key]
    _SubElement(form, "VoyageInformation", attributes)


# ---- forms and what a change sends ----------------------------------------------------------

@dataclass(frozen=True)
class Form:
    """One FAL form an agency gets: which declarations need it, and how its body is built."""

    name: str  # the message name, e.g. "fal1": with the version it makes the LARefId
    schema: Schema  # the hub's schema, whose root is the Trafic2000 message, e.g. NCA_FAL1
    needed: Callable[[dict[str, Any]], bool]
    build: Callable[[etree._Element, Change], None]  # fills the empty Body
    lacking: str  # what a declaration that no longer needs the form lacks, for the deletion's reason


def fal_messages(change: Change, action: str, agency: str, forms: tuple[Form, ...],
                 suppression: Schema) -> list[Message]:
    """The FAL messages `change` sends `agency`: its `forms`, or `NCA_Suppr_Not`s valid against `suppression`."""
    if action == CANCELLATION:
        held = change.previous_document if change.event == AMENDED else change.document
        return _suppression(change, agency, suppression, "cancellation", _held(change, agency, forms, held),
                            _cancellation_reason(change, agency))
    had = {form.name for form in forms if form.needed(change.previous_document)} if action == AMENDMENT else set()
    messages = [_form_message(change, agency, form, REPLACEMENT_FUNCTION if form.name in had else ORIGINAL_FUNCTION)
                for form in forms if form.needed(change.document)]
    dropped = tuple(form for form in forms if form.name in had and not form.needed(change.document))
    if dropped:
        lacking = " or ".join(form.lacking for form in dropped)
        messages += _suppression(change, agency, suppression, "deletion",
                                 _held(change, agency, dropped, change.previous_document),
                                 f"declaration {change.declaration_id} version {change.version} has no {lacking}")
    return messages


def _form_message(change: Change, agency: str, form: Form, function: str) -> Message:
    ident = message_id(change.declaration_id, change.version, agency, form.name)
    root, body = envelope(form.schema.root, ident, change, agency)
    form.build(body, change)
    data = check_outbound(root, form.schema)
    return Message(agency, form.name, ident, change.declaration_id, change.version, function, change.time, data)


def _held(change: Change, agency: str, forms: tuple[Form, ...], document: dict[str, Any]) -> list[str]:
    """The LARefIds of the forms the agency holds: those `document` needed, sent at the version it was given."""
    version = change.previous_versions[agency]
    return [message_id(change.declaration_id, version, agency, form.name) for form in forms if form.needed(document)]


def _cancellation_reason(change: Change, agency: str) -> str:
    if change.event == AMENDED:
        return f"declaration {change.declaration_id} version {change.version} is no longer routed to {agency}"
    reason = one_line(change.reason, 255)
    return f"declaration {change.declaration_id} withdrawn" + (f": {reason}" if reason else " by the declarant")


def _suppression(change: Change, agency: str, schema: Schema, name: str, deleted: list[str],
                 reason: str) -> list[Message]:
    """An `NCA_Suppr_Not` deleting the forms `deleted` names, or nothing when there are none."""
    if not deleted:
        return []
    ident = message_id(change.declaration_id, change.version, agency, name)
    root, body = envelope(schema.root, ident, change, agency)
    notification = _SubElement(body, "Notification", {"Reason": one_line(reason, 255)})
    for reference in deleted:
        _SubElement(notification, "LARefIdToDelete").text = reference
    data = check_outbound(root, schema)
    return [Message(agency, name, ident, change.declaration_id, change.version, CANCELLATION_FUNCTION, change.time,
                    data)]


# ---- replies ---------------------------------------------------------------------------------

# Receipt StatusCode -> (hub status, what it means): the agency took the message in, or could not.
RECEIPTS: dict[str, tuple[str, str]] = {
    "OK": (RECEIVED, "received"),
    "Error": (REJECTED, "refused on receipt"),
}
# Formality decision StatusCode -> (hub status, what it means).
DECISIONS: dict[str, tuple[str, str]] = {
    "Accepted": (ACCEPTED, "accepted"),
    "Rejected": (REJECTED, "rejected"),
    "Cleared": (RELEASED, "cleared"),
    "Cancelled": (CANCELLED, "cancellation done"),
}
# A reason's Entry names a list entry of the form it answers; the hub's field for it.
ENTRIES = {"CrewMember": "$.crew", "Passenger": "$.passengers"}
_ENTRY = re.compile(r"(\w+)\[(\d+)\]")


def parse_replies(data: bytes, agency: str, receipt: Schema, decision: Schema) -> list[Reply]:
    """The reply in one inbound message from `agency`, or `Refused` from the gate.

    A message is one receipt or one decision, valid against its schema.
    Trafic2000 forms carry no declaration version, so no reply names one:
    `answers`, the LARefId of the form answered, is what pins the version.
    """
    root = admit_any(data, (receipt, decision))
    header, body = root.find("Header"), root.find("Body")
    if root.tag == receipt.root:
        code = header.get("StatusCode")
        status, meaning = RECEIPTS[code]
        message = one_line(header.get("StatusMessage", ""), 255)
        if status == REJECTED and not message:
            raise Refused(SCHEMA_INVALID, "a receipt reporting an error must give it in StatusMessage")
        text, errors = "; ".join(filter(None, (meaning, message))), ()
    else:
        code = body.get("StatusCode")
        status, meaning = DECISIONS[code]
        errors = tuple(_reason(reason) for reason in body.iterchildren("Reason"))
        if status == REJECTED and not errors:
            raise Refused(SCHEMA_INVALID, "a rejection must give its reasons")
        text = meaning
    return [Reply(agency=agency, message_id=header.get("LARefId"), declaration_id=body.get("ShipCallId"), version=None,
                  answers=header.get("NCARefId"), issued_at=header.get("SentAt"), code=code, status=status, text=text,
                  errors=errors)]


def _reason(reason: etree._Element) -> ReplyError:
    entry = reason.get("Entry")
    field = ""
    if entry:
        name, position = _ENTRY.fullmatch(entry).groups()
        field = f"{ENTRIES[name]}[{int(position) - 1}]"
    return ReplyError(code=reason.get("ReasonCode"), text=one_line(reason.get("Description"), 255), field=field)
