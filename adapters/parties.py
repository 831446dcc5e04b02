"""Parties as the hub's own WCO-named schemas write them (inspection, port): one builder for both.

Customs writes parties differently (its WCO profile limits ids to 17
characters, see adapters.customs.declaration), so it keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from adapters.xml import one_line

_USCC = {"schemeID": "USCC"}
Add = Callable[..., etree._Element]


def add_declarant(add: Add, add_with: Add, parent: etree._Element, declarant: dict[str, Any]) -> None:
    element = add(parent, "Declarant")
    add(element, "Name", one_line(declarant["name"], 70))
    add_with(element, "ID", declarant["id"], _USCC)


def add_party(add: Add, add_with: Add, parent: etree._Element, name: str, party: dict[str, Any]) -> None:
    element = add(parent, name)
    add(element, "Name", one_line(party["name"], 70))
    identifier = party.get("id")
    if identifier:
        # Chinese parties are identified by USCC (documents.Party checks it); others by their own an..17.
        if party["country"] == "CN":
            add_with(element, "ID", identifier, _USCC)
        else:
            add(element, "ID", one_line(identifier, 17))
    add(add(element, "Address"), "CountryCode", party["country"])
