"""Valid declarations built in code, so tests never depend on files outside the repo.

They deliberately differ from the shipped examples: other parties, codes and
shapes, so nothing passes by being tuned to one document.
"""

from __future__ import annotations

import copy
from typing import Any

# Real check digits: USCCs, IMO numbers and container numbers computed per standard.
TRADER_A = "91350200MA2YQ4RK0U"
TRADER_B = "91350206MA31W2XT3M"
SHIPPING_AGENT = "91350200612003000Y"


def goods(reference: str = "TEST-GOODS-0001", declarant: str = TRADER_A, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": "goods",
        "reference": reference,
        "direction": "import",
        "declarant": {"id": declarant, "name": "Test Importer Ltd."},
        "consignor": {"name": "Hamburg Machine Works GmbH", "country": "DE"},
        "consignee": {"id": declarant, "name": "Test Importer Ltd.", "country": "CN"},
        "customs_office": "3702",
        "port_of_loading": "DEHAM",
        "port_of_discharge": "CNXMN",
        "transport": {
            "mode": "sea",
            "vessel": {"imo": "9321483", "name": "NORTHERN JASPER", "voyage": "041E"},
            "bill_of_lading": "HLCUHAM260412345",
        },
        "containers": ["HLXU8000014"],
        "items": [
            {"hs_code": "8479899990", "description": "Industrial mixing machines", "origin": "DE",
             "quantity": "4", "unit": "H87", "gross_kg": "5200.5", "net_kg": "4800",
             "value": "240000.00", "currency": "EUR"},
        ],
        "documents": [{"type": "commercial_invoice", "number": "INV-2026-0042"}],
    }
    document.update(copy.deepcopy(changes))
    return document


def vessel_call(reference: str = "TEST-CALL-0001", declarant: str = SHIPPING_AGENT, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": "vessel_call",
        "reference": reference,
        "direction": "departure",
        "declarant": {"id": declarant, "name": "Test Shipping Agency"},
        "vessel": {"imo": "9321483", "name": "NORTHERN JASPER", "call_sign": "DJNP2", "flag": "DE"},
        "voyage": "041E",
        "port_of_call": "CNXMN",
        "etd": "2026-12-03T18:30:00Z",
        "next_port": "KRPUS",
        "crew": [
            {"family_name": "MEIER", "given_names": "Jonas", "nationality": "DE",
             "date_of_birth": "1975-06-30", "rank": "Master",
             "document": {"type": "passport", "number": "C01X00T47"}},
        ],
        "passengers": [
            {"family_name": "LI", "given_names": "Na", "nationality": "CN",
             "date_of_birth": "2001-01-09", "document": {"type": "passport", "number": "EA1234567"},
             "port_of_disembarkation": "KRPUS"},
        ],
        "dangerous_goods": [],
    }
    document.update(copy.deepcopy(changes))
    return document


def settle(app: Any, *declaration_ids: Any) -> None:
    """What the enforcement process does once it has seen the log up to now (followers.enforcement): settle the
    gate-out and release each declaration's answers made due."""
    found = [app.get(ident) for ident in declaration_ids]
    app.settle({declaration.id: declaration.version for declaration in found})


def followed(hub: Any) -> None:
    """Run the hub's followers until the log stops growing: the holds they place, and the gate-out and releases
    the enforcement process settles, are events the next round takes."""
    while hub.runner.catch_up():
        pass
