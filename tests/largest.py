"""The largest legal declarations: every list at its cap, every string at its longest, in the costliest characters.

What costs most bytes in a message depends on where a string lands: `&` becomes `&amp;` (5 bytes) in text and
in attributes, `"` becomes `&quot;` (6 bytes) in attributes only, and a character beyond the Basic
Multilingual Plane is 4 bytes of UTF-8 anywhere. `FILLS` has one of each, so a test can render every one and
take the largest.
"""

from __future__ import annotations

from typing import Any

from stdnum import iso6346

from hub.declarations.documents import LIMITS

from .samples import SHIPPING_AGENT, TRADER_A

FILLS = ("&", '"', "<", "\U00020000")  # escaped in text, escaped in attributes, escaped as 4 bytes, 4-byte UTF-8


def _text(fill: str, length: int, prefix: str = "") -> str:
    """`length` characters: `prefix` (kept unique where the hub requires it), then `fill`; never blank."""
    return (prefix + fill * length)[:length]


def containers(count: int) -> list[str]:
    """`count` distinct valid ISO 6346 container numbers."""
    numbers = []
    for serial in range(count):
        stem = f"ZZZU{serial:06d}"
        numbers.append(stem + iso6346.calc_check_digit(stem))
    return numbers


_LARGEST = "9999999999.999999"  # 16 digits, 6 decimal places: the longest quantity or mass
_LARGEST_MONEY = "9999999999999.999"


def largest_goods(fill: str) -> dict[str, Any]:
    """A sea import routed to customs, inspection, port and maritime, every list and string at its limit."""
    text = lambda length, prefix="": _text(fill, length, prefix)  # noqa: E731
    boxes = containers(LIMITS["containers"])
    return {
        "kind": "goods", "reference": text(35, "LARGEST-"), "direction": "import",
        "declarant": {"id": TRADER_A, "name": text(70)},
        "consignor": {"name": text(70), "country": "DE", "id": text(17)},
        "consignee": {"id": TRADER_A, "name": text(70), "country": "CN"},
        "customs_office": "CN000001",
        "port_of_loading": "DEHAM", "port_of_discharge": "CNXMN",
        "transport": {"mode": "sea", "vessel": {"imo": "9321483", "name": text(35), "voyage": text(35)},
                      "bill_of_lading": text(35)},
        "containers": boxes,
        # Chapter 01 routes inspection; a UN number routes maritime.
        "items": [{"hs_code": "0101210000", "description": text(LIMITS["description"], f"{n} "), "origin": "DE",
                   "quantity": _LARGEST, "unit": "KGM", "gross_kg": _LARGEST, "net_kg": _LARGEST,
                   "value": _LARGEST_MONEY, "currency": "EUR", "un_number": "1203",
                   "licences": [{"number": text(35, f"{n}-{k} "), "quantity": _LARGEST, "unit": "KGM",
                                 "issuer": "inspection"} for k in range(LIMITS["licences"])]}
                  for n in range(LIMITS["items"])],
        "documents": [{"type": "dangerous_goods_declaration", "number": text(35, f"{n} ")}
                      for n in range(LIMITS["documents"])],
    }


def largest_vessel_call(fill: str) -> dict[str, Any]:
    """A vessel arrival routed to all five agencies, every list and string at its limit."""
    text = lambda length, prefix="": _text(fill, length, prefix)  # noqa: E731
    person = {"family_name": text(70), "given_names": text(70), "nationality": "DE", "date_of_birth": "1975-06-30",
              "document": {"type": "seafarer_id", "number": text(35)}}
    boxes = containers(LIMITS["dangerous_goods"])
    return {
        "kind": "vessel_call", "reference": text(35, "LARGEST-"), "direction": "arrival",
        "declarant": {"id": SHIPPING_AGENT, "name": text(70)},
        "vessel": {"imo": "9321483", "name": text(35), "call_sign": "DJNP2", "flag": "DE"},
        "voyage": text(35), "port_of_call": "CNXMN",
        "eta": "2026-12-01T08:00:00.000000+08:00", "etd": "2026-12-03T18:30:00.000000+08:00",
        "last_port": "KRPUS", "next_port": "JPTYO",
        "crew": [person | {"rank": text(70)} for _ in range(LIMITS["crew"])],
        "passengers": [person | {"port_of_embarkation": "KRPUS", "port_of_disembarkation": "JPTYO"}
                       for _ in range(LIMITS["passengers"])],
        "dangerous_goods": [{"un_number": "1203", "imdg_class": "3", "description": text(LIMITS["description"]),
                             "packing_group": "III", "gross_kg": _LARGEST, "container": boxes[n]}
                            for n in range(LIMITS["dangerous_goods"])],
    }


def costliest_licences(document: dict[str, Any], recipient: str) -> dict[tuple[str, str], dict[str, Any]]:
    """What dispatch would say of every licence `document` cites, in the words that cost `recipient`'s message
    most: recognised (the longest statement, with the whole key fingerprint), valid to a date it can carry, and of
    the type customs names beside its code, or a certificate inspection is sent."""
    kind = "automatic_import_licence" if recipient == "customs" else "phytosanitary_certificate"
    return {(citation["issuer"], citation["number"]): {
        "number": citation["number"], "issuer": citation["issuer"], "type": kind, "valid_to": "2099-12-31",
        "verified": True, "reason": "", "detail": "", "key": "f" * 64}
        for item in document.get("items", ()) for citation in item.get("licences", ())}
