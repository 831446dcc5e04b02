"""WCO pointers: where a declaration field sits in a DEC-DMS:2 message, and back.

A WCO `Pointer` names a chain of classes by their WCO ids (42A declaration,
67A goods shipment, 68A goods item, ...), each with the position of the one
meant (`SequenceNumeric`), and may end with one data element's tag (145
commodity code, ...). Amendments point at what changed; rejections (03) point
at what is wrong, and the hub maps that back to the field's JSON path so a
trader sees `$.items[1].hs_code`, not `42A/67A/68A(2)/23A/21A/145`.

The ids come from the WCO Data Model 3.6 annotations of the published schema.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# (class id, indexed by position?) from the declaration down.
DECLARATION = (("42A", False),)
SHIPMENT = DECLARATION + (("67A", False),)
CONSIGNMENT = SHIPMENT + (("28A", False),)
ITEM = SHIPMENT + (("68A", True),)
COMMODITY = ITEM + (("23A", False),)


class Pointer(NamedTuple):
    """One step of a WCO pointer chain."""

    section: str  # DocumentSectionCode, e.g. "68A"
    sequence: int | None = None  # SequenceNumeric, 1-based
    tag: str = ""  # TagID of a data element, on the last step only


# JSON path template of a declaration field -> (class chain, tag). `[]` marks a list index.
Table = dict[str, tuple[tuple[tuple[str, bool], ...], str]]

GOODS: Table = {
    "$.direction": (DECLARATION, "D013"),
    "$.customs_office": (DECLARATION, "065"),
    "$.declarant": (DECLARATION + (("57B", False),), ""),
    "$.declarant.id": (DECLARATION + (("57B", False),), "R123"),
    "$.declarant.name": (DECLARATION + (("57B", False),), "R124"),
    "$.documents[]": (DECLARATION + (("02A", True),), ""),
    "$.documents[].number": (DECLARATION + (("02A", True),), "D005"),
    "$.documents[].type": (DECLARATION + (("02A", True),), "D006"),
    "$.transport": (DECLARATION + (("15A", False),), ""),
    "$.transport.mode": (DECLARATION + (("15A", False),), "T022"),
    "$.transport.vessel.name": (DECLARATION + (("15A", False),), "T005"),
    "$.transport.vessel.imo": (DECLARATION + (("15A", False),), "T006"),
    "$.transport.vessel.voyage": (DECLARATION + (("03A", False),), "225"),
    "$.transport.bill_of_lading": (SHIPMENT + (("99A", False),), "D018"),
    "$.consignee": (SHIPMENT + (("27A", False),), ""),
    "$.consignee.name": (SHIPMENT + (("27A", False),), "R014"),
    "$.consignee.id": (SHIPMENT + (("27A", False),), "R015"),
    "$.consignee.country": (SHIPMENT + (("27A", False), ("04A", False)), "242"),
    "$.consignor": (SHIPMENT + (("30A", False),), ""),
    "$.consignor.name": (SHIPMENT + (("30A", False),), "R020"),
    "$.consignor.id": (SHIPMENT + (("30A", False),), "R021"),
    "$.consignor.country": (SHIPMENT + (("30A", False), ("04A", False)), "242"),
    "$.port_of_loading": (CONSIGNMENT + (("83A", False),), "L010"),
    # Imports: the goods are presented at the port of discharge (goods location).
    "$.port_of_discharge": (CONSIGNMENT + (("64A", False),), "L017"),
    "$.containers[]": (CONSIGNMENT + (("31B", True),), "159"),
    "$.reference": (SHIPMENT + (("35B", False),), "009"),
    "$.items[]": (ITEM, ""),
    "$.items[].description": (COMMODITY, "137"),
    "$.items[].hs_code": (COMMODITY + (("21A", False),), "145"),
    "$.items[].un_number": (COMMODITY + (("12C", False),), "506"),
    "$.items[].gross_kg": (COMMODITY + (("65A", False),), "126"),
    "$.items[].net_kg": (COMMODITY + (("65A", False),), "128"),
    "$.items[].quantity": (COMMODITY + (("65A", False),), "130"),
    "$.items[].unit": (COMMODITY + (("65A", False),), "130"),
    "$.items[].value": (COMMODITY + (("79A", False),), "112"),
    "$.items[].currency": (COMMODITY + (("79A", False),), "112"),
    "$.items[].origin": (ITEM + (("92A", False),), "063"),
}

# Exports are presented at the port of loading; the port of discharge is a statement.
EXPORT_GOODS: Table = {
    **GOODS,
    "$.port_of_discharge": (DECLARATION + (("03A", False),), "225"),
    "$.port_of_loading": (CONSIGNMENT + (("64A", False),), "L017"),
}

VESSEL_CALL: Table = {
    "$.direction": (DECLARATION, "D013"),
    "$.declarant": (DECLARATION + (("57B", False),), ""),
    "$.declarant.id": (DECLARATION + (("57B", False),), "R123"),
    "$.declarant.name": (DECLARATION + (("57B", False),), "R124"),
    "$.vessel": (DECLARATION + (("15A", False),), ""),
    "$.vessel.name": (DECLARATION + (("15A", False),), "T005"),
    "$.vessel.imo": (DECLARATION + (("15A", False),), "T006"),
    "$.vessel.flag": (DECLARATION + (("15A", False),), "T014"),
    "$.vessel.call_sign": (DECLARATION + (("03A", False),), "225"),
    "$.voyage": (DECLARATION + (("03A", False),), "225"),
    "$.port_of_call": (CONSIGNMENT + (("64A", False),), "L017"),
    "$.last_port": (CONSIGNMENT + (("83A", False),), "L010"),
    "$.dangerous_goods[]": (ITEM, ""),
    "$.dangerous_goods[].description": (COMMODITY, "137"),
    "$.dangerous_goods[].un_number": (COMMODITY + (("12C", False),), "506"),
    "$.dangerous_goods[].gross_kg": (COMMODITY + (("65A", False),), "126"),
    "$.dangerous_goods[].container": (COMMODITY + (("31B", True),), "159"),
}


# Fields that share their data element with another (the unit travels with the quantity, the currency
# with the value): a pointer to the element names the other one.
_SHARED_TAG = {"$.items[].unit", "$.items[].currency"}


def table_for(document: dict) -> Table:
    if document.get("kind") == "vessel_call":
        return VESSEL_CALL
    return EXPORT_GOODS if document.get("direction") == "export" else GOODS


_INDEX = re.compile(r"\[(\d+)\]")


def pointer_to(path: str, document: dict) -> tuple[Pointer, ...] | None:
    """The pointer chain for a concrete JSON path (`$.items[1].hs_code`), or its nearest parent's."""
    table = table_for(document)
    indices = [int(number) for number in _INDEX.findall(path)]
    template = _INDEX.sub("[]", path)
    while template not in table:
        # Climb to the parent: drop the last list index, or the last attribute.
        if template.endswith("[]"):
            template, indices = template[:-2], indices[:-1]
        elif "." in template[2:]:
            template = template.rsplit(".", 1)[0]
        else:
            return None
    chain, tag = table[template]
    steps, position = [], iter(indices)
    for section, indexed in chain:
        # A list inside an indexed class (a container of a dangerous-goods entry) is the first one.
        steps.append(Pointer(section, next(position, 0) + 1 if indexed else None))
    if tag:
        steps[-1] = steps[-1]._replace(tag=tag)
    return tuple(steps)


def field_at(pointers: list[Pointer], document: dict) -> str:
    """The JSON path a WCO pointer chain names in this declaration, or "" when it names none of it."""
    table = table_for(document)
    sections = tuple(step.section for step in pointers)
    tag = pointers[-1].tag if pointers else ""
    matches = [template for template, (chain, field_tag) in table.items()
               if tuple(section for section, _ in chain) == sections and field_tag in (tag, "")]
    # Prefer the data element the tag names; fall back to the class; statements (03A) are ambiguous.
    exact = [template for template in matches if table[template][1] == tag and template not in _SHARED_TAG]
    candidates = exact or [template for template in matches if not table[template][1]]
    if len(candidates) != 1:
        return ""
    template = candidates[0]
    positions = [step.sequence for step, (_, indexed) in zip(pointers, table[template][0], strict=True)
                 if indexed]
    # WCO omits SequenceNumeric where there is only one of a class: that is the first.
    positions = [position or 1 for position in positions]
    path = template
    for position in positions:
        path = path.replace("[]", f"[{position - 1}]", 1)
    return path


def describe(pointers: list[Pointer]) -> str:
    """A pointer chain as people read it: 42A/67A/68A(2)/23A/21A/145."""
    parts = [step.section + (f"({step.sequence})" if step.sequence else "") for step in pointers]
    if pointers and pointers[-1].tag:
        parts.append(pointers[-1].tag)
    return "/".join(parts)
