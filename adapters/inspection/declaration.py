"""Outbound inspection messages: the hub's declarations as the inspection agency's declaration.

Pure functions of a `Change` and the routing rules. What goes where (see
xsd/inspection/README.md):

- goods become a sanitary and phytosanitary declaration (`TypeCode` SPS)
  listing only the items under inspection, each at its position in the
  declaration, with its origin, and the health, phytosanitary and veterinary
  certificates and the certificate of origin as `AdditionalDocument`;
- vessel calls become a health quarantine declaration (`TypeCode` HQ): the
  ship, voyage, ports and times, crew and passenger *counts* (never names or
  identity documents: personal data goes to border and maritime only) and a
  summary of the dangerous goods on board;
- an amendment is function 13, type COR: the whole replacement declaration and
  a statement of the fields that changed;
- a cancellation is function 13, type INV, with the reason: the declarant
  withdrew, or an amendment routed inspection away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from lxml import etree

from adapters.attachments import add_references
from adapters.citations import CitedDocument, cited_documents
from adapters.codes import DOCUMENT_CODES, IMO_NUMBER, MODE_CODES
from adapters.messages import (
    AMENDMENT,
    CANCELLATION,
    ORIGINAL,
    WITHDRAWN,
    Change,
    Message,
    listing,
    message_id,
)
from adapters.parties import add_declarant, add_party
from adapters.xml import Schema, Stencil, builders, check_outbound, one_line, wco_time
from hub.declarations import RoutingRules

AGENCY = "inspection"
NS = "urn:tradehub:inspection:1"
DECLARATION_SCHEMA = Schema("inspection/declaration.xsd", f"{{{NS}}}Declaration")

NAMES = {ORIGINAL: "declaration", AMENDMENT: "amendment", CANCELLATION: "cancellation"}
CERTIFICATES = ("health_certificate", "phytosanitary_certificate", "veterinary_certificate",
                "certificate_of_origin")
CATEGORIES = {"import": "IMP", "export": "EXP", "arrival": "ARR", "departure": "DEP"}
BILL_OF_LADING = "705"
# Fields of people on board: an amendment names the list that changed, never an entry of it.


def inspection_messages(change: Change, action: str, rules: RoutingRules) -> list[Message]:
    """The inspection message for `change`: an original, an amendment or a cancellation."""
    name = NAMES[action]
    ident = message_id(change.declaration_id, change.version, AGENCY, name)
    function = "9" if action == ORIGINAL else "13"
    root = _build(change, action, ident, function, rules)
    if action != CANCELLATION and change.kind == "goods":
        _cite_certificates(root, change, rules)
    body = check_outbound(root, DECLARATION_SCHEMA)
    return [Message(AGENCY, name, ident, change.declaration_id, change.version, function, change.time, body)]


def items_under_inspection(document: dict[str, Any], rules: RoutingRules) -> list[int]:
    """Positions (1-based) of the goods items the inspection agency must look at.

    The items whose HS chapter an inspection rule's `hs_chapters` condition
    names, when such a condition routed the declaration. When only something
    else did (a declared health certificate, say), the whole consignment is
    concerned, so every item is.
    """
    chapters: set[str] = set()
    for rule in rules.rules:
        if rule.agency != AGENCY or document["kind"] not in rule.kinds:
            continue
        for condition in rule.when:
            if "hs_chapters" in condition and replace(rule, when=(condition,)).explain(document) is not None:
                chapters.update(condition["hs_chapters"])
    items = document["items"]
    if not chapters:
        return list(range(1, len(items) + 1))
    return [position for position, item in enumerate(items, 1) if item["hs_code"][:2] in chapters]


# ---- building ------------------------------------------------------------------------------

# Tags in Clark notation, made once: the builders below run for every message.
T = {name: f"{{{NS}}}{name}" for name in (
    "AdditionalDocument", "AdditionalInformation", "Address", "ArrivalDateTime", "BorderTransportMeans",
    "CallSignID", "CategoryCode", "Classification", "Commodity", "Consignee", "Consignment", "Consignor",
    "CountryCode", "CrewQuantity", "DangerousGoods", "DateTimeString", "Declarant", "Declaration",
    "DepartureDateTime", "Description", "Destination", "ExportCountry", "FunctionCode", "FunctionalReferenceID",
    "GoodsItemQuantity", "GoodsMeasure", "GoodsShipment", "GovernmentAgencyGoodsItem", "GrossMassMeasure", "ID",
    "IMDGClassCode", "IdentificationTypeCode", "IssueDateTime", "JourneyID", "LastPortOfCall", "LoadingLocation",
    "ModeCode", "Name", "NetNetWeightMeasure", "NextPortOfCall", "Origin", "PassengerQuantity", "PortOfCall",
    "PreviousDocument", "RegistrationNationalityCode", "SequenceNumeric", "StatementCode", "StatementDescription",
    "TariffQuantity", "TraderAssignedReferenceID", "TransportEquipment", "TypeCode", "UCR", "UNDGID",
    "UnloadingLocation", "VersionID",
)}
_KILOGRAMS = {"unitCode": "KGM"}
_FORMAT_304 = {"formatCode": "304"}
_SubElement = etree.SubElement


_add, _add_with = builders(T)


def _build(change: Change, action: str, ident: str, function: str, rules: RoutingRules) -> etree._Element:
    document = change.document
    goods = document["kind"] == "goods"
    root = etree.Element(T["Declaration"], nsmap={None: NS})
    _add(root, "FunctionCode", function)
    _add(root, "FunctionalReferenceID", ident)
    _add(root, "ID", change.declaration_id)
    _add(root, "VersionID", str(change.version))
    _date_time(root, "IssueDateTime", change.time)
    if action == ORIGINAL:
        _add(root, "TypeCode", "SPS" if goods else "HQ")
    else:
        _add(root, "TypeCode", "COR" if action == AMENDMENT else "INV")
    _add(root, "CategoryCode", CATEGORIES[document["direction"]])
    if action == CANCELLATION:
        _statement(root, "REASON", _cancellation_reason(change))
        add_declarant(_add, _add_with, root, document["declarant"])
        return root
    if goods:
        _add(root, "GoodsItemQuantity", str(len(document["items"])))
        for entry in document.get("documents", ()):
            if entry["type"] in CERTIFICATES:
                certificate = _add(root, "AdditionalDocument")
                _add(certificate, "ID", one_line(entry["number"], 35))
                _add(certificate, "TypeCode", DOCUMENT_CODES[entry["type"]])
    _statement(root, "ROUTING", change.routes[AGENCY])
    if action == AMENDMENT:
        _statement(root, "CHANGES", listing("replaced by the declarant, changing", change.changed_fields()))
    if goods:
        _goods(root, document, items_under_inspection(document, rules))
    else:
        _vessel_call(root, document)
    _supporting_documents(root, change)
    return root


def _supporting_documents(root: etree._Element, change: Change) -> None:
    """The documents attached at the hub, by SHA-256, name, media type and size."""
    add_references(root, NS, change.documents)


def _cancellation_reason(change: Change) -> str:
    if change.event == WITHDRAWN:
        return change.reason if one_line(change.reason, 512) else "withdrawn by the declarant"
    return f"version {change.version} of the declaration is no longer routed to inspection"


def _date_time(parent: etree._Element, name: str, moment: datetime) -> None:
    _add_with(_add(parent, name), "DateTimeString", wco_time(moment), _FORMAT_304)


def _statement(parent: etree._Element, code: str, text: str) -> None:
    statement = _add(parent, "AdditionalInformation")
    _add(statement, "StatementCode", code)
    _add(statement, "StatementDescription", one_line(text, 512))


def _location(parent: etree._Element, name: str, locode: str) -> None:
    _add(_add(parent, name), "ID", locode)


def _goods(root: etree._Element, document: dict[str, Any], positions: list[int]) -> None:
    transport = document["transport"]
    means = _add(root, "BorderTransportMeans")
    vessel = transport.get("vessel")
    if vessel:
        _add(means, "Name", one_line(vessel["name"], 35))
        _add(means, "ID", vessel["imo"])
        _add(means, "IdentificationTypeCode", IMO_NUMBER)
    _add(means, "ModeCode", MODE_CODES[transport["mode"]])
    if vessel:
        _add(means, "JourneyID", one_line(vessel["voyage"], 35))
    add_declarant(_add, _add_with, root, document["declarant"])
    shipment = _add(root, "GoodsShipment")
    add_party(_add, _add_with, shipment, "Consignee", document["consignee"])
    consignment = _add(shipment, "Consignment")
    _location(consignment, "LoadingLocation", document["port_of_loading"])
    _location(consignment, "UnloadingLocation", document["port_of_discharge"])
    for position, container in enumerate(document.get("containers", ()), 1):
        equipment = _add(consignment, "TransportEquipment")
        _add(equipment, "SequenceNumeric", str(position))
        _add(equipment, "ID", container)
    add_party(_add, _add_with, shipment, "Consignor", document["consignor"])
    _add(_add(shipment, "Destination"), "CountryCode", document["port_of_discharge"][:2])
    _add(_add(shipment, "ExportCountry"), "ID", document["port_of_loading"][:2])
    items = document["items"]
    for position in positions:
        item = items[position - 1]
        values = {**item, "position": str(position), "description": one_line(item["description"], 512)}
        _ITEM_STENCILS["un_number" in item].stamp(values, shipment)
    bill_of_lading = transport.get("bill_of_lading")
    if bill_of_lading:
        previous = _add(shipment, "PreviousDocument")
        _add(previous, "ID", one_line(bill_of_lading, 35))
        _add(previous, "TypeCode", BILL_OF_LADING)
    _add(_add(shipment, "UCR"), "TraderAssignedReferenceID", one_line(document["reference"], 35))


def _goods_item(shipment: etree._Element, values: Mapping[str, str]) -> None:
    """One `GovernmentAgencyGoodsItem`, from `values` with the item's fields and its "position"."""
    goods_item = _add(shipment, "GovernmentAgencyGoodsItem")
    _add(goods_item, "SequenceNumeric", values["position"])
    commodity = _add(goods_item, "Commodity")
    _add(commodity, "Description", values["description"])
    classification = _add(commodity, "Classification")
    _add(classification, "ID", values["hs_code"])
    _add(classification, "IdentificationTypeCode", "HS")
    if "un_number" in values:
        _add(_add(commodity, "DangerousGoods"), "UNDGID", values["un_number"])
    measure = _add(commodity, "GoodsMeasure")
    _add_with(measure, "GrossMassMeasure", values["gross_kg"], _KILOGRAMS)
    _add_with(measure, "NetNetWeightMeasure", values["net_kg"], _KILOGRAMS)
    _add_with(measure, "TariffQuantity", values["quantity"], {"unitCode": values["unit"]})
    _add(_add(goods_item, "Origin"), "CountryCode", values["origin"])


# Goods items are most of a declaration's elements, so they are stamped from stencils: with and
# without dangerous goods.
_ITEM_KEYS = ("position", "description", "hs_code", "gross_kg", "net_kg", "quantity", "unit", "origin")
_ITEM_STENCILS = {
    dangerous: Stencil(etree.Element(T["GoodsShipment"], nsmap={None: NS}), _goods_item,
                       _ITEM_KEYS + (("un_number",) if dangerous else ()))
    for dangerous in (False, True)
}


def _vessel_call(root: etree._Element, document: dict[str, Any]) -> None:
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
        goods = _add(root, "DangerousGoods")
        _add(goods, "SequenceNumeric", str(position))
        _add(goods, "UNDGID", entry["un_number"])
        _add(goods, "IMDGClassCode", entry["imdg_class"])


# ---- what an amendment changed -------------------------------------------------------------


# ---- certificates the goods items under inspection cite (adapters/citations.py) -------------

_CITED = {name: f"{{{NS}}}{name}" for name in (
    "AdditionalDocument", "AdditionalInformation", "DateTimeString", "EffectiveDateTime", "ID", "TypeCode",
    "Submitter", "Name", "WriteOff", "QuantityQuantity", "StatementCode", "StatementDescription")}
_FORMAT_102 = {"formatCode": "102"}
_add_cited, _add_cited_with = builders(_CITED)


def _cite_certificates(root: etree._Element, change: Change, rules: RoutingRules) -> None:
    """The certificates each item under inspection cites (health, phytosanitary, veterinary, origin), as
    `AdditionalDocument`s after its SequenceNumeric, then one verification statement each in the same order."""
    shipment = root.find(T["GoodsShipment"])
    if shipment is None:
        return
    items = change.document["items"]
    for goods_item in shipment.iterfind(T["GovernmentAgencyGoodsItem"]):
        item = items[int(goods_item.findtext(T["SequenceNumeric"])) - 1]
        cited = list(cited_documents(item, change.licences, AGENCY, rules, frozenset(CERTIFICATES)))
        built = [_certificate(goods_item, document) for document in cited]
        built += [_verification(goods_item, document) for document in cited]
        for position, element in enumerate(built, 1):
            goods_item.insert(position, element)  # moved from the end, after SequenceNumeric


def _certificate(goods_item: etree._Element, document: CitedDocument) -> etree._Element:
    element = _add_cited(goods_item, "AdditionalDocument")
    if document.valid_to:
        _add_cited_with(_add_cited(element, "EffectiveDateTime"), "DateTimeString", document.valid_to.replace("-", ""),
                        _FORMAT_102)
    _add_cited(element, "ID", one_line(document.number, 35))
    if document.code:
        _add_cited(element, "TypeCode", document.code)
    if document.issuer:
        _add_cited(_add_cited(element, "Submitter"), "Name", document.issuer)
    _add_cited_with(_add_cited(element, "WriteOff"), "QuantityQuantity", document.quantity,
                    {"unitCode": document.unit})
    return element


def _verification(goods_item: etree._Element, document: CitedDocument) -> etree._Element:
    statement = _add_cited(goods_item, "AdditionalInformation")
    _add_cited(statement, "StatementCode", document.statement_code)
    _add_cited(statement, "StatementDescription", document.statement)
    return statement
