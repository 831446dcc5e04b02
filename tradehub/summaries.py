"""A declaration at a glance: the facts the declaration page's header and the release certificate both show.

For goods the items, HS codes, containers, value and route; for a vessel call the ship, its call, its times and
how many are on board, never who. From the document as the caller may see it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


def label(value: Any) -> str:
    """`inspection_required` → `inspection required`."""
    return str(value).replace("_", " ")


@dataclass(frozen=True)
class Fact:
    """One line of the declaration header's summary: `form` says how to show the value (text, mono or time)."""

    label: str
    value: str
    form: str = "text"


SHOWN_CODES = 8  # HS codes and containers named in the header; the rest are counted


def summary(document: Mapping[str, Any]) -> list[Fact]:
    """What an officer reads first: for goods the items, HS codes, containers and value; for a vessel call the
    ship, its call and its lists. From the document as the caller may see it (an officer without the crew list
    gets its counts)."""
    if document.get("kind") == "vessel_call":
        return _call_summary(document)
    return _goods_summary(document)


def _goods_summary(document: Mapping[str, Any]) -> list[Fact]:
    items = list(document.get("items") or [])
    codes = list(dict.fromkeys(str(item.get("hs_code", "")) for item in items if item.get("hs_code")))
    containers = [str(number) for number in document.get("containers") or []]
    transport = document.get("transport") or {}
    vessel = transport.get("vessel") or {}
    facts = [Fact("Goods", _count(len(items), "item"))]
    facts.append(Fact("HS codes", _some(codes) or "none", "mono"))
    facts.append(Fact("Containers", f"{len(containers)}: {_some(containers)}" if containers else "none", "mono"))
    facts.append(Fact("Value", value_total(items) or "none"))
    route = " → ".join(filter(None, (document.get("port_of_loading"), document.get("port_of_discharge"))))
    facts.append(Fact(label(document.get("direction") or "route").capitalize(), route or "–"))
    if vessel:
        facts.append(Fact("Vessel", " ".join(filter(None, (vessel.get("name"), _imo(vessel.get("imo")),
                                                          vessel.get("voyage") and f"voyage {vessel['voyage']}")))))
    elif transport.get("mode"):
        facts.append(Fact("Transport", label(transport["mode"])))
    return facts


def _call_summary(document: Mapping[str, Any]) -> list[Fact]:
    vessel = document.get("vessel") or {}
    facts = [Fact("Vessel", str(vessel.get("name") or "–")), Fact("IMO", str(vessel.get("imo") or "–"), "mono"),
             Fact(label(document.get("direction") or "call").capitalize(),
                  " ".join(filter(None, (document.get("port_of_call"), document.get("voyage") and
                                         f"voyage {document['voyage']}"))) or "–")]
    for key in ("eta", "etd"):
        if document.get(key):
            facts.append(Fact(key.upper(), str(document[key]), "time"))
    ports = " → ".join(filter(None, (document.get("last_port"), document.get("port_of_call"),
                                     document.get("next_port"))))
    facts.append(Fact("Ports", ports or "–"))
    crew = document.get("crew_count", len(document.get("crew") or []))
    passengers = document.get("passenger_count", len(document.get("passengers") or []))
    dangerous = len(document.get("dangerous_goods") or [])
    facts.append(Fact("On board", f"{_count(crew, 'crew member')}, {_count(passengers, 'passenger')}"))
    facts.append(Fact("Dangerous goods", _count(dangerous, "entry", "entries") if dangerous else "none"))
    return facts


def value_total(items: Iterable[Mapping[str, Any]]) -> str:
    """The items' declared value, summed per currency: `93,900.00 USD` (or `… USD + … EUR`)."""
    totals: dict[str, Decimal] = {}
    for item in items:
        try:
            amount = Decimal(str(item.get("value")))
        except InvalidOperation:
            continue
        if amount.is_finite():
            currency = str(item.get("currency") or "")
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return " + ".join(f"{amount:,} {currency}".strip() for currency, amount in totals.items())


def _count(number: int, singular: str, plural: str = "") -> str:
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"


def _some(values: Sequence[str]) -> str:
    shown = ", ".join(values[:SHOWN_CODES])
    return shown + (f" and {len(values) - SHOWN_CODES} more" if len(values) > SHOWN_CODES else "")


def _imo(imo: Any) -> str:
    return f"(IMO {imo})" if imo else ""
