"""Outbound port messages: cargo notices, visit requests and release notices (xsd/port/messages.xsd).

Pure functions of a `Change`. The port gets what it needs to plan berths, yards
and gates, and nothing more (see xsd/port/README.md):

- goods (routed to the port when they travel by sea in containers) become a
  cargo notice: ship and voyage, bill of lading, containers, ports, parties and
  each item's description, gross mass and UN number. HS codes, values, origins
  and licences stay with customs;
- vessel calls become a visit request: ship, voyage, ports, ETA/ETD, crew and
  passenger *counts* and the dangerous goods on board. Never a name, a birth
  date or an identity document: personal data goes to border and maritime only;
- an amendment is a replacement (function 5) carrying the whole new message and
  the fields that changed; a cancellation (1) carries the reason;
- once customs and inspection (where routed) have both released the goods and
  no enforcement hold stands, a release notice tells the port that gate-out is
  allowed, who released and when. That is information exchange: the trader
  never has to tell the port. If a hold, an amendment or a rejection comes
  after it, a release revocation (function 1) names the notice it revokes and
  why, and the port stops the goods at the gate until a new notice comes.

Function codes are UN/EDIFACT 1225 (9 original, 5 replacement, 1 cancellation),
as EMSWe's `PurposeCode` uses them, so conformance to EMSWe later is a renaming.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache, partial
from typing import Any

from lxml import etree

from adapters.attachments import add_references
from adapters.codes import IMO_NUMBER, MODE_CODES
from adapters.messages import (
    AMENDMENT,
    CANCELLATION,
    ORIGINAL,
    RELEASE_NOTICE,
    RELEASE_REVOCATION,
    WITHDRAWN,
    Change,
    Message,
    listing,
    message_id,
)
from adapters.parties import add_declarant, add_party
from adapters.xml import Schema, Stencil, builders, check_outbound, one_line, wco_recorded_time, wco_time
from hub.declarations import RoutingRules
from hub.declarations.domainmodel import GATE_OUT_AGENCIES, RELEASED

AGENCY = "port"
NS = "urn:tradehub:port:1"
CARGO_NOTICE_SCHEMA = Schema("port/messages.xsd", f"{{{NS}}}CargoNotice")
VISIT_REQUEST_SCHEMA = Schema("port/messages.xsd", f"{{{NS}}}VisitRequest")
RELEASE_NOTICE_SCHEMA = Schema("port/messages.xsd", f"{{{NS}}}ReleaseNotice")
RELEASE_REVOCATION_SCHEMA = Schema("port/messages.xsd", f"{{{NS}}}ReleaseRevocation")

# UN/EDIFACT 1225 message function codes, as EMSWe's PurposeCode.
FUNCTION_CODES = {ORIGINAL: "9", AMENDMENT: "5", CANCELLATION: "1", RELEASE_NOTICE: "9", RELEASE_REVOCATION: "1"}
# What each kind of declaration is to the port; an amendment or cancellation names the message it replaces.
MESSAGES = {"goods": ("cargo-notice", CARGO_NOTICE_SCHEMA), "vessel_call": ("visit-request", VISIT_REQUEST_SCHEMA)}
SUFFIXES = {ORIGINAL: "", AMENDMENT: "-amendment", CANCELLATION: "-cancellation"}
RELEASE_NOTICE_NAME, RELEASE_REVOCATION_NAME = "release-notice", "release-revocation"
# The port's messages about a release, which are no cargo notice or visit request of their own.
RELEASES = {RELEASE_NOTICE: (RELEASE_NOTICE_NAME, RELEASE_NOTICE_SCHEMA),
            RELEASE_REVOCATION: (RELEASE_REVOCATION_NAME, RELEASE_REVOCATION_SCHEMA)}
CATEGORIES = {"import": "IMP", "export": "EXP", "arrival": "ARR", "departure": "DEP"}
BILL_OF_LADING = "705"
# Fields of people on board: a replacement names the list that changed, never an entry of it.


def port_messages(change: Change, action: str, rules: RoutingRules) -> list[Message]:
    """The port message for `change`: a cargo notice or visit request (original, replacement,
    cancellation), or the release notice of goods.

    `rules` is not consulted: unlike inspection, the port is told about the
    whole consignment, whichever rule routed it.
    """
    if action in RELEASES:
        name, schema = RELEASES[action]
    else:
        base, schema = MESSAGES[change.kind]
        name = base + SUFFIXES[action]
    ident = message_id(change.declaration_id, change.version, AGENCY, name)
    function = FUNCTION_CODES[action]
    root = _HEADERS[schema.root].stamp({
        "function": function, "message_id": ident, "declaration_id": change.declaration_id,
        "version": str(change.version), "issued": wco_time(change.time),
        "category": CATEGORIES[change.document["direction"]]})
    document = change.document
    if action == RELEASE_NOTICE:
        _release_notice(root, change)
    elif action == RELEASE_REVOCATION:
        _release_revocation(root, change)
    elif action == CANCELLATION:
        _statement(root, "REASON", _cancellation_reason(change))
        add_declarant(_add, _add_with, root, document["declarant"])
    else:
        _statement(root, "ROUTING", change.routes[AGENCY])
        if action == AMENDMENT:
            _statement(root, "CHANGES", listing("replaced by the declarant, changing", change.changed_fields()))
        if change.kind == "goods":
            _cargo(root, document)
        else:
            _visit(root, document)
        _supporting_documents(root, change)
    body = check_outbound(root, schema)
    return [Message(AGENCY, name, ident, change.declaration_id, change.version, function, change.time, body)]


# ---- building ------------------------------------------------------------------------------

# Tags in Clark notation, made once: the builders below run for every message.
T = {name: f"{{{NS}}}{name}" for name in (
    "AdditionalInformation", "Address", "AgencyCode", "ArrivalDateTime", "BorderTransportMeans", "CallSignID",
    "CargoNotice", "CategoryCode", "Commodity", "Consignee", "Consignment", "Consignor", "CountryCode",
    "CrewQuantity", "DangerousGoods", "DateTimeString", "Declarant", "DepartureDateTime", "Description",
    "FunctionCode", "FunctionalReferenceID", "GoodsMeasure", "GoodsShipment", "GovernmentAgencyGoodsItem",
    "GrossMassMeasure", "ID", "IMDGClassCode", "IdentificationTypeCode", "IssueDateTime", "JourneyID",
    "LastPortOfCall", "LoadingLocation", "ModeCode", "Name", "NameCode", "NextPortOfCall", "PackingGroupCode",
    "PassengerQuantity", "PortOfCall", "RegistrationNationalityCode", "ReleaseDateTime", "ReleaseNotice",
    "ReleaseRevocation",
    "SequenceNumeric", "StatementCode", "StatementDescription", "Status", "TraderAssignedReferenceID",
    "TransportContractDocument", "TransportEquipment", "TypeCode", "UCR", "UNDGID", "UnloadingLocation",
    "VersionID", "VisitRequest",
)}
_KILOGRAMS = {"unitCode": "KGM"}
_FORMAT_304 = {"formatCode": "304"}
_SubElement = etree.SubElement


_add, _add_with = builders(T)


def _supporting_documents(root: etree._Element, change: Change) -> None:
    """The documents attached at the hub, by SHA-256, name, media type and size."""
    add_references(root, NS, change.documents)


def _header(tag: str, holder: etree._Element, values: Mapping[str, str]) -> None:
    """The root and what identifies the message, up to its CategoryCode."""
    root = _SubElement(holder, tag, nsmap={None: NS})
    _add(root, "FunctionCode", values["function"])
    _add(root, "FunctionalReferenceID", values["message_id"])
    _add(root, "ID", values["declaration_id"])
    _add(root, "VersionID", values["version"])
    _add_with(_add(root, "IssueDateTime"), "DateTimeString", values["issued"], _FORMAT_304)
    _add(root, "CategoryCode", values["category"])


def _statement(parent: etree._Element, code: str, text: str) -> None:
    statement = _add(parent, "AdditionalInformation")
    _add(statement, "StatementCode", code)
    _add(statement, "StatementDescription", one_line(text, 512))


def _cancellation_reason(change: Change) -> str:
    if change.event == WITHDRAWN:
        return change.reason if one_line(change.reason, 512) else "withdrawn by the declarant"
    return f"version {change.version} of the declaration is no longer routed to the port"


def _location(parent: etree._Element, name: str, locode: str) -> None:
    _add(_add(parent, name), "ID", locode)


def _date_time(parent: etree._Element, name: str, moment: datetime) -> None:
    _add_with(_add(parent, name), "DateTimeString", wco_time(moment), _FORMAT_304)


def _recorded_time(parent: etree._Element, name: str, text: str, what: str) -> None:
    """A time the hub recorded (ISO 8601), as WCO writes it; an unreadable one fails loudly, never goes out."""
    value, code = wco_recorded_time(text, what)
    _add_with(_add(parent, name), "DateTimeString", value, {"formatCode": code})


def _transport_means(root: etree._Element, transport: dict[str, Any]) -> None:
    means = _add(root, "BorderTransportMeans")
    vessel = transport.get("vessel")
    if vessel:
        _add(means, "Name", one_line(vessel["name"], 35))
        _add(means, "ID", vessel["imo"])
        _add(means, "IdentificationTypeCode", IMO_NUMBER)
    _add(means, "ModeCode", MODE_CODES[transport["mode"]])
    if vessel:
        _add(means, "JourneyID", one_line(vessel["voyage"], 35))


def _consignment(shipment: etree._Element, document: dict[str, Any]) -> None:
    consignment = _add(shipment, "Consignment")
    _location(consignment, "LoadingLocation", document["port_of_loading"])
    _location(consignment, "UnloadingLocation", document["port_of_discharge"])
    bill_of_lading = document["transport"].get("bill_of_lading")
    if bill_of_lading:
        contract = _add(consignment, "TransportContractDocument")
        _add(contract, "ID", one_line(bill_of_lading, 35))
        _add(contract, "TypeCode", BILL_OF_LADING)
    for position, container in enumerate(document.get("containers", ()), 1):
        _EQUIPMENT.stamp({"position": str(position), "container": container}, consignment)


def _equipment_elements(parent: etree._Element, values: Mapping[str, str]) -> None:
    equipment = _add(parent, "TransportEquipment")
    _add(equipment, "SequenceNumeric", values["position"])
    _add(equipment, "ID", values["container"])


def _cargo(root: etree._Element, document: dict[str, Any]) -> None:
    _transport_means(root, document["transport"])
    add_declarant(_add, _add_with, root, document["declarant"])
    shipment = _add(root, "GoodsShipment")
    add_party(_add, _add_with, shipment, "Consignee", document["consignee"])
    _consignment(shipment, document)
    add_party(_add, _add_with, shipment, "Consignor", document["consignor"])
    for position, item in enumerate(document["items"], 1):
        values = {"position": str(position), "description": one_line(item["description"], 512),
                  "gross_kg": item["gross_kg"]}
        if "un_number" in item:
            values["un_number"] = item["un_number"]
        _ITEM_STENCILS["un_number" in item].stamp(values, shipment)
    _add(_add(shipment, "UCR"), "TraderAssignedReferenceID", one_line(document["reference"], 35))


def _goods_item(parent: etree._Element, values: Mapping[str, str]) -> None:
    """One goods item as the port sees it: what it is, what it weighs, whether it is dangerous."""
    goods_item = _add(parent, "GovernmentAgencyGoodsItem")
    _add(goods_item, "SequenceNumeric", values["position"])
    commodity = _add(goods_item, "Commodity")
    _add(commodity, "Description", values["description"])
    if "un_number" in values:
        _add(_add(commodity, "DangerousGoods"), "UNDGID", values["un_number"])
    _add_with(_add(commodity, "GoodsMeasure"), "GrossMassMeasure", values["gross_kg"], _KILOGRAMS)


def _visit(root: etree._Element, document: dict[str, Any]) -> None:
    vessel = document["vessel"]
    means = _add(root, "BorderTransportMeans")
    _add(means, "Name", one_line(vessel["name"], 35))
    _add(means, "ID", vessel["imo"])
    _add(means, "IdentificationTypeCode", IMO_NUMBER)
    _add(means, "RegistrationNationalityCode", vessel["flag"])
    _add(means, "ModeCode", MODE_CODES["sea"])
    _add(means, "CallSignID", vessel["call_sign"])
    _add(means, "JourneyID", one_line(document["voyage"], 35))
    for key, name in (("eta", "ArrivalDateTime"), ("etd", "DepartureDateTime")):
        if document.get(key):
            _date_time(means, name, datetime.fromisoformat(document[key]))
    _add(means, "CrewQuantity", str(len(document["crew"])))
    _add(means, "PassengerQuantity", str(len(document.get("passengers", ()))))
    add_declarant(_add, _add_with, root, document["declarant"])
    _location(root, "PortOfCall", document["port_of_call"])
    for key, name in (("last_port", "LastPortOfCall"), ("next_port", "NextPortOfCall")):
        if document.get(key):
            _location(root, name, document[key])
    for position, entry in enumerate(document.get("dangerous_goods", ()), 1):
        optional = tuple(key for key in _DANGEROUS_GOODS_OPTIONAL if entry.get(key))
        values = {"position": str(position), "description": one_line(entry["description"], 512),
                  "un_number": entry["un_number"], "imdg_class": entry["imdg_class"]}
        values.update((key, entry[key]) for key in optional)
        _dangerous_goods_stencil(optional).stamp(values, root)


def _dangerous_goods_elements(parent: etree._Element, values: Mapping[str, str]) -> None:
    """One dangerous-goods entry on board: what a port needs to berth and stow the ship safely."""
    goods = _add(parent, "DangerousGoods")
    _add(goods, "SequenceNumeric", values["position"])
    _add(goods, "Description", values["description"])
    _add(goods, "UNDGID", values["un_number"])
    _add(goods, "IMDGClassCode", values["imdg_class"])
    if "packing_group" in values:
        _add(goods, "PackingGroupCode", values["packing_group"])
    if "gross_kg" in values:
        _add_with(goods, "GrossMassMeasure", values["gross_kg"], _KILOGRAMS)
    if "container" in values:
        _add(_add(goods, "TransportEquipment"), "ID", values["container"])


def _release_notice(root: etree._Element, change: Change) -> None:
    """Who released the goods and when, then what the port lets out: ship, containers, bill of lading."""
    deciders = [agency for agency in GATE_OUT_AGENCIES if agency in change.routes]
    unreleased = [agency for agency in deciders if change.agencies.get(agency, {}).get("status") != RELEASED]
    if not deciders or unreleased:
        # A release notice lets goods out of the port: it must never be sent on a guess.
        raise ValueError(f"no release notice for declaration {change.declaration_id} version {change.version}: "
                         f"the goods are not released by {' or '.join(unreleased or GATE_OUT_AGENCIES)}")
    for agency in deciders:
        state = change.agencies[agency]
        status = _add(root, "Status")
        _add(status, "AgencyCode", agency)
        if state.get("code"):
            _add(status, "NameCode", state["code"])
        _recorded_time(status, "ReleaseDateTime", state["updated_at"], f"{agency}'s release")
        text = one_line(state.get("text", ""), 512)
        if text:
            _add(status, "StatementDescription", text)
    document = change.document
    _transport_means(root, document["transport"])
    add_declarant(_add, _add_with, root, document["declarant"])
    shipment = _add(root, "GoodsShipment")
    add_party(_add, _add_with, shipment, "Consignee", document["consignee"])
    _consignment(shipment, document)
    _add(_add(shipment, "UCR"), "TraderAssignedReferenceID", one_line(document["reference"], 35))


def _release_revocation(root: etree._Element, change: Change) -> None:
    """Which release notice no longer stands and why, then what the port stops: ship, containers, bill of lading."""
    if not change.revoked:
        raise ValueError(f"no release revocation for declaration {change.declaration_id} version {change.version}: "
                         "no release notice was sent")
    _statement(root, "REVOKES", message_id(change.declaration_id, change.revoked, AGENCY, RELEASE_NOTICE_NAME))
    _statement(root, "REASON", change.reason)
    _transport_means(root, change.document["transport"])
    shipment = _add(root, "GoodsShipment")
    _consignment(shipment, change.document)
    _add(_add(shipment, "UCR"), "TraderAssignedReferenceID", one_line(change.document["reference"], 35))


# ---- what an amendment changed -------------------------------------------------------------

# Repeated structures are stamped from stencils (see adapters.xml.Stencil): containers, goods items (with
# and without a UN number) and dangerous goods on board (one stencil per set of optional fields present).
_CONTEXT = etree.Element(T["GoodsShipment"], nsmap={None: NS})
_HEADER_KEYS = ("function", "message_id", "declaration_id", "version", "issued", "category")
_HEADERS = {T[root]: Stencil(etree.Element("holder"), partial(_header, T[root]), _HEADER_KEYS)
            for root in ("CargoNotice", "VisitRequest", "ReleaseNotice", "ReleaseRevocation")}
_EQUIPMENT = Stencil(_CONTEXT, _equipment_elements, ("position", "container"))
_ITEM_STENCILS = {dangerous: Stencil(_CONTEXT, _goods_item,
                                     ("position", "description", "gross_kg") + (("un_number",) if dangerous else ()))
                  for dangerous in (False, True)}
_DANGEROUS_GOODS_KEYS = ("position", "description", "un_number", "imdg_class")
_DANGEROUS_GOODS_OPTIONAL = ("packing_group", "gross_kg", "container")


@cache
def _dangerous_goods_stencil(optional: tuple[str, ...]) -> Stencil:
    return Stencil(_CONTEXT, _dangerous_goods_elements, _DANGEROUS_GOODS_KEYS + optional)
