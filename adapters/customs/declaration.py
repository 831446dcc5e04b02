"""Outbound customs messages: the hub's declarations as WCO DEC-DMS:2, in a MetaData envelope.

Pure functions of a `Change`. What goes where (see xsd/customs/README.md):

- `FunctionalReferenceID` is the hub's message id, `ID` the declaration id, and
  an `AdditionalInformation` statement (code VERSION) its version;
- goods (`TypeCode` IMA/EXA): parties as the shipment's consignor and consignee,
  the declarant, office, vessel as border transport means, ports, containers as
  transport equipment, the bill of lading as a previous document, each item as a
  `GovernmentAgencyGoodsItem`, documents as `AdditionalDocument`;
- vessel calls go to customs as a conveyance report (`TypeCode` CRI arrival,
  CRE departure): the ship, its voyage and ports, crew and passenger *counts*
  (never their names: personal data goes to border and maritime only) and each
  dangerous-goods entry as a goods item;
- an amendment is function 13, type COR: the whole replacement declaration, an
  `Amendment` (change reason 21) pointing at every changed field;
- a withdrawal is function 13, type INV, with the reason (change reason 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from lxml import etree

from adapters.attachments import wco_references
from adapters.citations import CitedDocument, cited_documents
from adapters.codes import DOCUMENT_CODES, IMO_NUMBER, MODE_CODES
from adapters.messages import AMENDMENT, CANCELLATION, ORIGINAL, Change, Message, listing, message_id
from adapters.xml import Schema, Stencil, builders, check_outbound
from hub.declarations import RoutingRules

from .pointers import Pointer, pointer_to

AGENCY = "customs"
MD = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"
DEC = "urn:wco:datamodel:WCO:DEC-DMS:2"
DS = "urn:wco:datamodel:WCO:Declaration_DS:DMS:2"
DECLARATION_SCHEMA = Schema("customs/declaration.xsd", f"{{{MD}}}MetaData")

RESPONSIBLE_COUNTRY = "CN"
RESPONSIBLE_AGENCY = "Trade hub customs profile"
PROFILE_VERSION = "1"

BILL_OF_LADING = "705"
CHANGE_REASON_CORRECTION = "21"
CHANGE_REASON_CANCELLATION = "1"
HUB_STATEMENT = "ZZZ"  # statements the hub adds, as mutually defined
REASON_STATEMENT = "AES"  # free-text reason of an amendment or invalidation, as WCO uses it

NAMES = {AMENDMENT: "amendment", CANCELLATION: "invalidation"}
ORIGINAL_NAMES = {"goods": "declaration", "vessel_call": "conveyance-report"}


def customs_messages(change: Change, action: str, rules: RoutingRules | None = None) -> list[Message]:
    """The customs message for `change`: an original, an amendment or an invalidation. `rules` say whose
    certificates customs recognises (none without them)."""
    name = ORIGINAL_NAMES[change.kind] if action == ORIGINAL else NAMES[action]
    ident = message_id(change.declaration_id, change.version, AGENCY, name)
    function = "9" if action == ORIGINAL else "13"
    root = _build(change, action, ident, function)
    if action != CANCELLATION and change.kind == "goods":
        _cite_licences(root[-1], change, rules)
    body = check_outbound(root, DECLARATION_SCHEMA)
    return [Message(AGENCY, name, ident, change.declaration_id, change.version, function, change.time, body)]


# ---- building ------------------------------------------------------------------------------

_MD = {name: f"{{{MD}}}{name}" for name in (
    "MetaData", "WCODataModelVersionCode", "WCOTypeName", "ResponsibleCountryCode", "ResponsibleAgencyName",
    "AgencyAssignedCustomizationVersionCode")}


# DEC-DMS:2 tags in Clark notation, made once: the builders below run for every message.
T = {name: f"{{{DEC}}}{name}" for name in (
    "AdditionalDocument", "AdditionalInformation", "Address", "Amendment", "ArrivalTransportMeans",
    "BorderTransportMeans", "CategoryCode", "ChangeReasonCode", "Classification", "Commodity", "Consignee",
    "Consignment", "Consignor", "ContainerCode", "CountryCode", "DangerousGoods", "Declarant", "Declaration",
    "DeclarationOfficeID", "DepartureTransportMeans", "Destination", "DocumentSectionCode", "ExportCountry",
    "FunctionCode", "FunctionalReferenceID", "GoodsItemQuantity", "GoodsLocation", "GoodsMeasure", "GoodsShipment",
    "GovernmentAgencyGoodsItem", "GrossMassMeasure", "ID", "IdentificationTypeCode", "InvoiceAmount", "InvoiceLine",
    "IssueDateTime", "ItemChargeAmount", "Line", "LoadingLocation", "ModeCode", "Name", "NetNetWeightMeasure", "Origin",
    "Pointer", "PreviousDocument", "RegistrationNationalityCode", "SequenceNumeric", "StatementCode",
    "StatementDescription", "StatementTypeCode", "TagID", "TariffQuantity", "TotalGrossMassMeasure",
    "TraderAssignedReferenceID", "TransportEquipment", "TypeCode", "UCR", "UNDGID", "Description",
)}
_KILOGRAMS = {"unitCode": "KGM"}
_USCC_SCHEME = {"schemeID": "USCC", "schemeName": "unified social credit code without its check character"}
_SubElement = etree.SubElement


_add, _add_with = builders(T)


def _header(holder: etree._Element, values: Mapping[str, str]) -> None:
    """The envelope and the declaration's identifying elements, up to its TypeCode."""
    root = _SubElement(holder, _MD["MetaData"], nsmap={"md": MD, None: DEC, "ds": DS})
    for name, text in (("WCODataModelVersionCode", "3.6"), ("WCOTypeName", "DEC"),
                       ("ResponsibleCountryCode", RESPONSIBLE_COUNTRY),
                       ("ResponsibleAgencyName", RESPONSIBLE_AGENCY),
                       ("AgencyAssignedCustomizationVersionCode", PROFILE_VERSION)):
        _SubElement(root, _MD[name]).text = text
    declaration = _SubElement(root, T["Declaration"])
    _add(declaration, "FunctionCode", values["function"])
    _add(declaration, "FunctionalReferenceID", values["message_id"])
    _add(declaration, "ID", values["declaration_id"])
    _SubElement(_add(declaration, "IssueDateTime"), f"{{{DS}}}DateTimeString", {"formatCode": "304"}).text = \
        values["issued"]
    _add(declaration, "TypeCode", values["type"])


def _build(change: Change, action: str, ident: str, function: str) -> etree._Element:
    document = change.document
    goods = document["kind"] == "goods"
    if action == CANCELLATION:
        type_code = "INV"
    elif action == AMENDMENT:
        type_code = "COR"
    elif goods:
        type_code = "IMA" if document["direction"] == "import" else "EXA"
    else:
        type_code = "CRI" if document["direction"] == "arrival" else "CRE"
    root = _HEADER.stamp({"function": function, "message_id": ident, "declaration_id": change.declaration_id,
                          "issued": change.time.strftime("%Y%m%d%H%M%SZ"), "type": type_code})
    declaration = root[-1]
    if action == CANCELLATION:
        _statement(declaration, "VERSION", str(change.version))
        _reason(declaration, change.reason or "withdrawn by the declarant")
        _add(_add(declaration, "Amendment"), "ChangeReasonCode", CHANGE_REASON_CANCELLATION)
        _party(declaration, "Declarant", document["declarant"])
        return root
    if goods:
        _goods_header(declaration, document)
    else:
        _add(declaration, "GoodsItemQuantity", str(len(document.get("dangerous_goods", []))))
    for entry in document.get("documents", []):
        additional = _add(declaration, "AdditionalDocument")
        _add(additional, "ID", entry["number"])
        _add(additional, "TypeCode", DOCUMENT_CODES[entry["type"]])
    _supporting_documents(declaration, change)
    _statements(declaration, change)
    if action == AMENDMENT:
        _reason(declaration, listing("replaced by the declarant:", change.changed_fields()))
        # One Amendment per changed field, as WCO amendments are written.
        for chain in _changed_pointers(change) or [(Pointer("42A"),)]:
            amendment = _add(declaration, "Amendment")
            _add(amendment, "ChangeReasonCode", CHANGE_REASON_CORRECTION)
            _pointers(amendment, chain)
    if goods:
        _goods_body(declaration, document)
    else:
        _vessel_call_body(declaration, document)
    return root


def _supporting_documents(declaration: etree._Element, change: Change) -> None:
    """The documents attached at the hub, as `AdditionalDocument`s whose ID is their SHA-256 (category HUB)."""
    wco_references(declaration, DEC, change.documents)


def _goods_header(declaration: etree._Element, document: dict[str, Any]) -> None:
    items = document["items"]
    _add(declaration, "GoodsItemQuantity", str(len(items)))
    _add(declaration, "DeclarationOfficeID", document["customs_office"])
    currencies = {item["currency"] for item in items}
    total = _total(item["value"] for item in items)
    if len(currencies) == 1 and total:
        _add_with(declaration, "InvoiceAmount", total, {"currencyID": currencies.pop()})
    gross = _total(item["gross_kg"] for item in items)
    if gross:
        _add_with(declaration, "TotalGrossMassMeasure", gross, _KILOGRAMS)


def _statements(declaration: etree._Element, change: Change) -> None:
    document = change.document
    _statement(declaration, "VERSION", str(change.version))
    if document["kind"] == "goods":
        vessel = document["transport"].get("vessel")
        if vessel:
            _statement(declaration, "VOYAGE", vessel["voyage"])
        if document["direction"] == "export":
            _statement(declaration, "DISCHARGE-PORT", document["port_of_discharge"])
        return
    _statement(declaration, "VOYAGE", document["voyage"])
    _statement(declaration, "CALL-SIGN", document["vessel"]["call_sign"])
    for key, code in (("eta", "ETA"), ("etd", "ETD"), ("next_port", "NEXT-PORT")):
        if document.get(key):
            _statement(declaration, code, document[key])
    _statement(declaration, "CREW-COUNT", str(len(document["crew"])))
    _statement(declaration, "PASSENGER-COUNT", str(len(document.get("passengers", []))))


def _statement(declaration: etree._Element, code: str, text: str) -> None:
    _STATEMENT.stamp({"code": code, "text": text}, declaration)


def _statement_elements(declaration: etree._Element, values: Mapping[str, str]) -> None:
    statement = _add(declaration, "AdditionalInformation")
    _add(statement, "StatementCode", values["code"])
    _add(statement, "StatementDescription", values["text"])
    _add(statement, "StatementTypeCode", HUB_STATEMENT)


def _reason(declaration: etree._Element, text: str) -> None:
    statement = _add(declaration, "AdditionalInformation")
    _add(statement, "StatementDescription", " ".join(text.split())[:512].rstrip())
    _add(statement, "StatementTypeCode", REASON_STATEMENT)
    # The reason explains the declaration's amendment (42A / 06A), as WCO samples point it.
    _pointers(statement, (Pointer("42A", 1), Pointer("06A", 1)))


def _pointers(parent: etree._Element, chain: tuple[Pointer, ...]) -> None:
    for step in chain:
        pointer = _add(parent, "Pointer")
        if step.sequence is not None:
            _add(pointer, "SequenceNumeric", str(step.sequence))
        _add(pointer, "DocumentSectionCode", step.section)
        if step.tag:
            _add(pointer, "TagID", step.tag)


def _goods_body(declaration: etree._Element, document: dict[str, Any]) -> None:
    transport = document["transport"]
    vessel = transport.get("vessel")
    mode = MODE_CODES[transport["mode"]]
    if vessel:
        _transport_means(declaration, "BorderTransportMeans", vessel, mode)
    _party(declaration, "Declarant", document["declarant"])
    shipment = _add(declaration, "GoodsShipment")
    _party(shipment, "Consignee", document["consignee"])
    importing = document["direction"] == "import"
    consignment = _add(shipment, "Consignment")
    _add(consignment, "ContainerCode", "1" if document.get("containers") else "0")
    _add(_add(consignment, "ArrivalTransportMeans" if importing else "DepartureTransportMeans"), "ModeCode", mode)
    _location(consignment, document["port_of_discharge" if importing else "port_of_loading"])
    _add(_add(consignment, "LoadingLocation"), "ID", document["port_of_loading"])
    for position, container in enumerate(document.get("containers", []), 1):
        _equipment(consignment, position, container)
    _party(shipment, "Consignor", document["consignor"])
    _add(_add(shipment, "Destination"), "CountryCode", document["port_of_discharge"][:2])
    _add(_add(shipment, "ExportCountry"), "ID", document["port_of_loading"][:2])
    for position, item in enumerate(document["items"], 1):
        _ITEM_STENCILS["un_number" in item].stamp({**item, "position": str(position)}, shipment)
    if transport.get("bill_of_lading"):
        previous = _add(shipment, "PreviousDocument")
        _add(previous, "CategoryCode", "N")
        _add(previous, "ID", transport["bill_of_lading"])
        _add(previous, "TypeCode", BILL_OF_LADING)
    _add(_add(shipment, "UCR"), "TraderAssignedReferenceID", document["reference"])


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
    _add_with(_add(commodity, "InvoiceLine"), "ItemChargeAmount", values["value"], {"currencyID": values["currency"]})
    origin = _add(goods_item, "Origin")
    _add(origin, "CountryCode", values["origin"])
    _add(origin, "TypeCode", "1")  # non-preferential origin


def _vessel_call_body(declaration: etree._Element, document: dict[str, Any]) -> None:
    vessel = document["vessel"]
    _transport_means(declaration, "BorderTransportMeans", vessel, MODE_CODES["sea"], flag=vessel["flag"])
    _party(declaration, "Declarant", document["declarant"])
    shipment = _add(declaration, "GoodsShipment")
    consignment = _add(shipment, "Consignment")
    cargo = document.get("dangerous_goods", [])
    _add(consignment, "ContainerCode", "1" if any(entry.get("container") for entry in cargo) else "0")
    arriving = document["direction"] == "arrival"
    _add(_add(consignment, "ArrivalTransportMeans" if arriving else "DepartureTransportMeans"), "ModeCode",
         MODE_CODES["sea"])
    _location(consignment, document["port_of_call"])
    if document.get("last_port"):
        _add(_add(consignment, "LoadingLocation"), "ID", document["last_port"])
    for position, entry in enumerate(cargo, 1):
        goods_item = _add(shipment, "GovernmentAgencyGoodsItem")
        _add(goods_item, "SequenceNumeric", str(position))
        commodity = _add(goods_item, "Commodity")
        _add(commodity, "Description", entry["description"])
        _add(_add(commodity, "DangerousGoods"), "UNDGID", entry["un_number"])
        if entry.get("gross_kg"):
            _add_with(_add(commodity, "GoodsMeasure"), "GrossMassMeasure", entry["gross_kg"], _KILOGRAMS)
        if entry.get("container"):
            _equipment(commodity, 1, entry["container"])


def _transport_means(parent: etree._Element, name: str, vessel: dict[str, Any], mode: str,
                     flag: str | None = None) -> None:
    means = _add(parent, name)
    _add(means, "Name", vessel["name"])
    _add(means, "ID", vessel["imo"])
    _add(means, "IdentificationTypeCode", IMO_NUMBER)
    if flag:
        _add(means, "RegistrationNationalityCode", flag)
    _add(means, "ModeCode", mode)


def _location(consignment: etree._Element, locode: str) -> None:
    location = _add(consignment, "GoodsLocation")
    _add(location, "ID", locode)
    address = _add(location, "Address")
    _add(address, "TypeCode", "U")  # identified by UN/LOCODE
    _add(address, "CountryCode", locode[:2])


def _equipment(parent: etree._Element, position: int, container: str) -> None:
    _EQUIPMENT.stamp({"position": str(position), "container": container}, parent)


def _equipment_elements(parent: etree._Element, values: Mapping[str, str]) -> None:
    equipment = _add(parent, "TransportEquipment")
    _add(equipment, "SequenceNumeric", values["position"])
    _add(equipment, "ID", values["container"])


def _party(parent: etree._Element, name: str, party: dict[str, Any]) -> None:
    element = _add(parent, name)
    _add(element, "Name", party["name"])
    identifier = party.get("id")
    if identifier:
        if len(identifier) == 18:
            # A USCC: WCO party ids are an..17, and a USCC's 18th character is a check character
            # computed from the other 17, so the 17 carry it whole (GB 32100-2015).
            _add_with(element, "ID", identifier[:17], _USCC_SCHEME)
        else:
            _add(element, "ID", identifier)
    _address(element, party)


def _address(element: etree._Element, party: dict[str, Any]) -> None:
    """The party's Address: its country, and its address line (as the business register fills it), in WCO order."""
    country, line = party.get("country"), party.get("address")
    if country or line:
        address = _add(element, "Address")
        if country:
            _add(address, "CountryCode", country)
        if line:
            _add(address, "Line", line)


def _total(values: Any) -> str:
    """The sum as WCO writes it, or "" when it has more digits than a WCO amount or measure holds."""
    text = format(sum((Decimal(value) for value in values), Decimal(0)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if len(text.replace(".", "").lstrip("0")) <= 16 else ""


# ---- what an amendment changed -------------------------------------------------------------

def _changed_pointers(change: Change) -> list[tuple[Pointer, ...]]:
    chains: list[tuple[Pointer, ...]] = []
    for path in change.changed_fields():
        chain = pointer_to(path, change.document)
        if chain is not None and chain not in chains:
            chains.append(chain)
    return chains


# Repeated structures, goods items above all, are stamped from stencils rather than built element by
# element (see adapters.xml.Stencil): the mapping then costs no more than building the tree by hand.
_ITEM_KEYS = ("position", "description", "hs_code", "gross_kg", "net_kg", "quantity", "unit", "value", "currency",
              "origin")
_CONTEXT = etree.Element(T["GoodsShipment"], nsmap={None: DEC})
_STATEMENT = Stencil(_CONTEXT, _statement_elements, ("code", "text"))
_EQUIPMENT = Stencil(_CONTEXT, _equipment_elements, ("position", "container"))
_HEADER = Stencil(etree.Element("holder"), _header, ("function", "message_id", "declaration_id", "issued", "type"))
_ITEM_STENCILS = {dangerous: Stencil(_CONTEXT, _goods_item, _ITEM_KEYS + (("un_number",) if dangerous else ()))
                  for dangerous in (False, True)}


# ---- licences and certificates the goods items cite (adapters/citations.py) ----------------

_LPCO = {name: f"{{{DEC}}}{name}" for name in (
    "AdditionalDocument", "AdditionalInformation", "EffectiveDateTime", "ID", "Name", "TypeCode", "Submitter",
    "WriteOff", "QuantityQuantity", "StatementCode", "StatementDescription", "StatementTypeCode")}
_DATE_TIME_STRING = f"{{{DS}}}DateTimeString"
_FORMAT_102 = {"formatCode": "102"}
_add_lpco, _add_lpco_with = builders(_LPCO)


def _cite_licences(declaration: etree._Element, change: Change, rules: RoutingRules | None) -> None:
    """Each goods item's cited licences as WCO `AdditionalDocument`s, then, in the same order, one hub statement
    (type ZZZ) each saying how the hub verified it: between the item's SequenceNumeric and Commodity, as WCO
    orders them."""
    if not change.document.get("items"):
        return
    shipment = declaration.find(T["GoodsShipment"])
    goods_items = shipment.findall(T["GovernmentAgencyGoodsItem"]) if shipment is not None else []
    for goods_item, item in zip(goods_items, change.document["items"], strict=True):
        cited = list(cited_documents(item, change.licences, AGENCY, rules))
        built = [_additional_document(goods_item, document) for document in cited]
        built += [_verification(goods_item, document) for document in cited]
        for position, element in enumerate(built, 1):
            goods_item.insert(position, element)  # moved from the end, after SequenceNumeric


def _additional_document(goods_item: etree._Element, document: CitedDocument) -> etree._Element:
    """DE 2/3 as the EU and UK profiles of DEC-DMS:2 fill it: the expiry as EffectiveDateTime (format 102), the
    number, the UN/EDIFACT 1001 type, the issuing authority as Submitter, the quantity written off."""
    element = _add_lpco(goods_item, "AdditionalDocument")
    if document.valid_to and document.valid_to.startswith("20"):  # WCO dates are 20CCYYMMDD... (2000-2099)
        _SubElement(_add_lpco(element, "EffectiveDateTime"), _DATE_TIME_STRING, _FORMAT_102).text = \
            document.valid_to.replace("-", "")
    _add_lpco(element, "ID", document.number)
    if document.name:
        _add_lpco(element, "Name", document.name)
    if document.code:
        _add_lpco(element, "TypeCode", document.code)
    if document.issuer:
        _add_lpco(_add_lpco(element, "Submitter"), "Name", document.issuer)
    _add_lpco_with(_add_lpco(element, "WriteOff"), "QuantityQuantity", document.quantity, {"unitCode": document.unit})
    return element


def _verification(goods_item: etree._Element, document: CitedDocument) -> etree._Element:
    statement = _add_lpco(goods_item, "AdditionalInformation")
    _add_lpco(statement, "StatementCode", document.statement_code)
    _add_lpco(statement, "StatementDescription", document.statement)
    _add_lpco(statement, "StatementTypeCode", HUB_STATEMENT)
    return statement
