"""Outbound maritime messages: IMO FAL forms 1 and 7 as Trafic2000 `NCA_FAL1` and `NCA_FAL7MD`.

Pure functions of a `Change` (xsd/maritime/README.md says what goes where):

- a vessel call gets the general declaration, FAL 1 (`NCA_FAL1`): the ship,
  its voyage and ports, the shipping agent, the name of the master, and
  crew and passenger *counts* (the lists themselves are the border's, FAL 5
  and 6), and, when it has dangerous goods on board, FAL 7 (`NCA_FAL7MD`);
- a goods declaration whose items carry UN numbers gets FAL 7 listing those
  items (the routing rule sends nothing else to maritime), as its own call
  record: the hub does not know the call of the ship that carries the goods,
  so the `ShipCallId` is the goods declaration's id and the vessel's IMO
  number and voyage let the authority match the two;
- amendments, deletions and cancellations are as `adapters.fal` describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from adapters.fal import (
    NOT_DECLARED,
    Form,
    fal_messages,
    form_information,
    mass,
    ship_call,
    ship_information,
    voyage_information,
)
from adapters.messages import Change, Message
from adapters.xml import Schema, Stencil, one_line
from hub.declarations import RoutingRules

AGENCY = "maritime"
SCHEMA_FILE = "maritime/forms.xsd"
GENERAL_DECLARATION_SCHEMA = Schema(SCHEMA_FILE, "NCA_FAL1")
DANGEROUS_GOODS_SCHEMA = Schema(SCHEMA_FILE, "NCA_FAL7MD")
SUPPRESSION_SCHEMA = Schema(SCHEMA_FILE, "NCA_Suppr_Not")
# Ranks that make a crew member the master, whose name FAL 1 carries.
MASTER_RANKS = frozenset({"master", "captain"})
NO_SHIP = "0"  # IMONumber of goods the declaration puts on no ship: the published type's floor
DG_CLASSIFICATION = "IMDG"
_SubElement = etree.SubElement


def maritime_messages(change: Change, action: str, rules: RoutingRules) -> list[Message]:
    """The maritime messages for `change`: FAL 1 and FAL 7 forms, or the `NCA_Suppr_Not` deleting them.

    The routing rules are not needed: what routes a declaration to maritime (a
    vessel call, a UN number) is also what decides its forms.
    """
    return fal_messages(change, action, AGENCY, FORMS[change.kind], SUPPRESSION_SCHEMA)


def _master(crew: list[dict[str, Any]]) -> str | None:
    for member in crew:
        if member["rank"].strip().casefold() in MASTER_RANKS:
            return f"{member['family_name']} {member['given_names']}"
    return None


def _general_declaration(body: etree._Element, change: Change) -> None:
    document = change.document
    vessel = document["vessel"]
    ship_call(body, vessel["imo"], document["port_of_call"], change)
    form = form_information(body, document["direction"] == "arrival", document["voyage"])
    ship_information(form, vessel, _master(document["crew"]))
    voyage_information(form, document, ("LastPort", "NextPort", "ETAToPortOfCall", "ETDFromPortOfCall"))
    registry = _SubElement(form, "CertificateOfRegistry")
    _SubElement(registry, "ShippingContactDetails", {"NameOfAgent": one_line(document["declarant"]["name"], 50)})
    _SubElement(form, "OtherInformations", {"NumberOfCrew": str(len(document["crew"])),
                                            "NumberOfPassengers": str(len(document.get("passengers", ())))})


def _ship_dangerous_goods(body: etree._Element, change: Change) -> None:
    """FAL 7 of a vessel call: every entry on board, as one consignment (the call names no transport documents)."""
    document = change.document
    ship_call(body, document["vessel"]["imo"], document["port_of_call"], change)
    form = form_information(body, document["direction"] == "arrival", document["voyage"])
    _SubElement(form, "ShippingContactDetails", {"NameOfAgent": one_line(document["declarant"]["name"], 50)})
    consignment = _SubElement(_SubElement(body, "HazmatDetails"), "Consignment")
    for entry in document["dangerous_goods"]:
        values = {"description": one_line(entry["description"], 350), "un_number": entry["un_number"],
                  "imdg_class": entry["imdg_class"]}
        for key in ("packing_group", "container"):
            if entry.get(key):
                values[key] = entry[key]
        if entry.get("gross_kg"):
            values["gross_unit"], values["gross"] = mass(entry["gross_kg"])
        _stamp(values, consignment)


def _goods_dangerous_goods(body: etree._Element, change: Change) -> None:
    """FAL 7 of a goods declaration: its items with a UN number, as the consignment of its bill of lading."""
    document = change.document
    transport = document["transport"]
    vessel = transport.get("vessel") or {}
    importing = document["direction"] == "import"
    ship_call(body, vessel.get("imo", NO_SHIP),
              document["port_of_discharge" if importing else "port_of_loading"], change)
    form_information(body, importing, vessel.get("voyage"))
    attributes = {"PortOfLoading": document["port_of_loading"], "PortOfDischarge": document["port_of_discharge"]}
    if transport.get("bill_of_lading"):
        attributes = {"TransportDocumentId": one_line(transport["bill_of_lading"], 35), **attributes}
    consignment = _SubElement(_SubElement(body, "HazmatDetails"), "Consignment", attributes)
    containers = document.get("containers", ())
    for item in document["items"]:
        if "un_number" not in item:
            continue
        values = {"description": one_line(item["description"], 350), "un_number": item["un_number"]}
        values["gross_unit"], values["gross"] = mass(item["gross_kg"])
        values["net_unit"], values["net"] = mass(item["net_kg"])
        if len(containers) == 1:  # with one container, every item is in it; with more, which one is not known
            values["container"] = containers[0]
        _stamp(values, consignment)


def _dangerous_goods_item(consignment: etree._Element, values: Mapping[str, str]) -> None:
    """One `DPGItem`, from whichever of the optional values are present."""
    attributes = {"DGClassification": DG_CLASSIFICATION, "TextualReference": values["description"]}
    if "imdg_class" in values:
        attributes["IMOHazardClass"] = values["imdg_class"]
    attributes["UNNumber"] = values["un_number"]
    if "packing_group" in values:
        attributes["PackingGroup"] = values["packing_group"]
    item = _SubElement(consignment, "DPGItem", attributes)
    if "gross" in values:
        _SubElement(item, "TotalQuantityGross", {"UnitOfMeasurement": values["gross_unit"],
                                                 "GrossQuantity": values["gross"]})
    if "net" in values:
        _SubElement(item, "TotalQuantityNet", {"UnitOfMeasurement": values["net_unit"], "NetQuantity": values["net"]})
    if "container" in values:
        # FAL 7 asks for the stowage position, which no declaration gives.
        _SubElement(item, "TransportEquipmentUnit", {"TransUnitId": values["container"],
                                                     "LocationOnBoard": NOT_DECLARED})


# Dangerous goods lines can run to thousands, so each is stamped from a stencil of its shape (which of the
# optional values it has); there are few shapes, each made once.
_STENCILS: dict[tuple[str, ...], Stencil] = {}
_CONTEXT = etree.Element("Consignment")


def _stamp(values: Mapping[str, str], consignment: etree._Element) -> None:
    keys = tuple(sorted(values))
    stencil = _STENCILS.get(keys)
    if stencil is None:
        stencil = _STENCILS[keys] = Stencil(_CONTEXT, _dangerous_goods_item, keys)
    stencil.stamp(values, consignment)


def _has_dangerous_goods(document: dict[str, Any]) -> bool:
    return bool(document.get("dangerous_goods"))


def _has_un_numbers(document: dict[str, Any]) -> bool:
    return any("un_number" in item for item in document["items"])


FORMS: dict[str, tuple[Form, ...]] = {
    "vessel_call": (
        Form("fal1", GENERAL_DECLARATION_SCHEMA, lambda _document: True, _general_declaration, "general declaration"),
        Form("fal7", DANGEROUS_GOODS_SCHEMA, _has_dangerous_goods, _ship_dangerous_goods, "dangerous goods"),
    ),
    "goods": (
        Form("fal7", DANGEROUS_GOODS_SCHEMA, _has_un_numbers, _goods_dangerous_goods, "dangerous goods"),
    ),
}
