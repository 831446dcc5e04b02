"""What the licence pages show (docs/licences.md): the quantity bar, the ledger with its links, and each licence a
declaration cites with its verification. Reads go through the API's licence reads and tradehub/visibility.py,
so a page shows what its viewer would get from the API.

The bar is drawn on the server as an inline SVG of three rectangles (consumed, reserved, remaining) whose widths
are percentages of the licence's quantity; colours come from the stylesheet, so no script and no inline style.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from hub.declarations import Licence, LicenceAmbiguous, LicenceNotFound, LicenceSignatureInvalid
from hub.declarations.licence import VALID
from tradehub import visibility
from tradehub.auth import Caller
from tradehub.bootstrap import Hub


@dataclass(frozen=True)
class Segment:
    kind: str  # consumed, reserved, remaining: a class the stylesheet colours
    x: float  # percent of the quantity
    width: float
    quantity: str


@dataclass(frozen=True)
class Bar:
    segments: list[Segment]
    label: str  # what the bar says, for screen readers and as its title


def bar(quantity: str, reserved: str, consumed: str, unit: str) -> Bar:
    """The licence's quantity as consumed, reserved and remaining, end to end, in percent of the whole."""
    whole = Decimal(quantity)
    parts = [("consumed", Decimal(consumed)), ("reserved", Decimal(reserved)),
             ("remaining", max(whole - Decimal(reserved) - Decimal(consumed), Decimal(0)))]
    segments, x = [], 0.0
    for kind, amount in parts:
        width = min(float(amount / whole * 100), 100.0 - x) if whole > 0 else 0.0
        if width > 0:
            segments.append(Segment(kind, round(x, 3), round(width, 3), _plain(amount)))
        x += width
    label = (f"{_plain(parts[2][1])} of {_plain(whole)} {unit} remaining; {_plain(parts[1][1])} reserved, "
             f"{_plain(parts[0][1])} consumed")
    return Bar(segments, label)


def page_href(number: str, issuer: str) -> str:
    return f"/licences/{quote(number, safe='')}?issuer={issuer}"


def ledger_rows(hub: Hub, who: Caller, ledger: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ledger's entries, each with a link to its declaration where the viewer may see that declaration."""
    found = hub.declarations.get_many(list({entry["declaration_id"] for entry in ledger}))
    visible = {str(ident) for ident, declaration in found.items() if visibility.may_see(who, declaration)}
    references = {str(ident): declaration.reference for ident, declaration in found.items()
                  if str(ident) in visible}
    return [{**entry, "href": f"/declarations/{entry['declaration_id']}" if entry["declaration_id"] in visible
             else None, "reference": references.get(entry["declaration_id"])} for entry in ledger]


def verification(hub: Hub, licence: Licence) -> str | None:
    """None if the licence's signature verifies for its issuer now; else why not."""
    seal = hub.declarations.seal
    if seal is None:
        return "this hub has no licence seal configured"
    try:
        seal.verify(licence.issuer, licence.content(), licence.signature)
    except LicenceSignatureInvalid as error:
        return str(error)
    return None


def cited_licences(hub: Hub, who: Caller, document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every licence the declaration's goods items cite, with how it verifies today: the signature against the
    issuer's trusted keys, and its status. A link to the licence where the viewer may see it."""
    if document.get("kind") != "goods":
        return []
    today = hub.declarations.today()
    cited = []
    for index, item in enumerate(document.get("items") or ()):
        for citation in item.get("licences") or ():
            entry = {"item": index + 1, "hs_code": item.get("hs_code", ""), "number": citation["number"],
                     "issuer": citation.get("issuer"), "quantity": citation["quantity"], "unit": citation["unit"],
                     "verified": False, "why": "", "status": None, "href": None}
            try:
                licence = hub.declarations.get_licence(citation["number"], citation.get("issuer"))
            except (LicenceNotFound, LicenceAmbiguous) as error:
                entry["why"] = str(error)
                cited.append(entry)
                continue
            why = verification(hub, licence)
            status = licence.status_on(today)
            entry.update(issuer=licence.issuer, status=status, verified=why is None and status == VALID,
                         why=why or ("" if status == VALID else f"the licence is {status.replace('_', ' ')}"),
                         href=page_href(licence.number, licence.issuer)
                         if visibility.may_see_licence(who, licence.holder) else None)
            cited.append(entry)
    return cited


def _plain(quantity: Decimal) -> str:
    return format(quantity.normalize(), "f")
