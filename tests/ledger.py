"""Licences and declarations citing them, built in code for the ledger's tests (test_licence_ledger.py,
test_licence_race.py), and the ledger's invariants checked against the store and the read model."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from hub.declarations import Declaration, Declarations, Licence
from hub.declarations.licence import convert
from projections.database import ViewDatabase
from projections.licences import ledger_view, licences_view

from . import samples

DAY = date(2026, 12, 1)  # the declarations' date in these tests: the licences below are valid on it
MACHINES = samples.goods()["items"][0]  # HS 8479899990


def licence_fields(number: str, **changes: Any) -> dict[str, Any]:
    fields = {"number": number, "type": "import_licence", "issuer": "customs", "holder": samples.TRADER_A,
              "hs_scope": ["84"], "quantity": "1000", "unit": "KGM", "valid_from": "2026-01-01",
              "valid_to": "2027-12-31"}
    return {**fields, **changes}


def cite(number: str, quantity: str, unit: str = "KGM", issuer: str | None = None) -> dict[str, str]:
    citation = {"number": number, "quantity": quantity, "unit": unit}
    return citation if issuer is None else {**citation, "issuer": issuer}


def item(*citations: dict[str, str], **changes: Any) -> dict[str, Any]:
    return {**MACHINES, **changes, **({"licences": list(citations)} if citations else {})}


def citing(reference: str, *items: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A goods declaration of TRADER_A whose items cite licences."""
    return samples.goods(reference=reference, items=list(items), **changes)


def cited_quantity(document: dict[str, Any], licence: Licence) -> Decimal:
    """What the document's citations of `licence` add up to, in the licence's unit."""
    return sum((convert(Decimal(citation["quantity"]), citation["unit"], licence.unit)
                for item in document.get("items", ()) for citation in item.get("licences") or ()
                if citation["number"] == licence.number and citation.get("issuer") == licence.issuer), Decimal(0))


def release(app: Declarations, declaration_id: Any, tag: str) -> None:
    """Every routed agency releases the declaration's current version (the enforcement process then records the
    release, and licensing consumes: `samples.followed`)."""
    declaration = app.get(declaration_id)
    for agency in declaration.routed_agencies:
        app.record_response(declaration.id, agency, f"{tag}-{agency}", "released", "2026-12-01T10:00:00Z",
                            answers_version=declaration.version)


def replay(ledger: Iterable[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """The reservations and consumptions a licence's ledger adds up to, checking each entry makes sense: a return or
    a consumption takes a reservation that stands, and a declaration consumes at most once."""
    reserved: dict[str, str] = {}
    consumed: dict[str, str] = {}
    for entry in ledger:
        declaration, quantity = entry["declaration_id"], entry["quantity"]
        assert declaration not in consumed, f"an entry after the consumption of {declaration}: {entry}"
        if entry["kind"] == "reserved":
            reserved[declaration] = quantity
        elif entry["kind"] == "returned":
            assert reserved.pop(declaration) == quantity, entry
        else:
            assert entry["kind"] == "consumed", entry
            assert reserved.pop(declaration) == quantity, entry
            consumed[declaration] = quantity
    return reserved, consumed


def check_ledger(app: Declarations, views: ViewDatabase | None, licence_key: tuple[str, str],
                 declarations: Iterable[Declaration]) -> Licence:
    """The ledger's invariants (docs/licences.md, "The ledger") for one licence, once the followers have caught
    up: what remains, each declaration's reservation or consumption, the ledger's entries, and the read model."""
    number, issuer = licence_key
    licence, ledger = app.licence_with_ledger(number, issuer)
    # I1: remaining = quantity - reserved - consumed >= 0, exactly.
    reserved_total = sum((Decimal(entry["quantity"]) for entry in licence.reservations.values()), Decimal(0))
    consumed_total = sum((Decimal(entry["quantity"]) for entry in licence.consumed.values()), Decimal(0))
    assert licence.remaining == Decimal(licence.quantity) - reserved_total - consumed_total
    assert licence.remaining >= 0, f"licence {number} overdrawn: {licence.remaining} {licence.unit}"
    # I2: each declaration holds what its current document cites, until its outcome consumes or returns it.
    known = set()
    for declaration in declarations:
        key = str(declaration.id)
        known.add(key)
        cited = cited_quantity(declaration.document, licence)
        reservation = licence.reservations.get(key)
        consumption = licence.consumed.get(key)
        state = (declaration.status, declaration.version, reservation, consumption, str(cited))
        if declaration.outcome == "released":
            assert reservation is None, state
            assert (Decimal(consumption["quantity"]) if consumption else Decimal(0)) == cited, state
        elif declaration.withdrawn or declaration.rejected:
            assert reservation is None and consumption is None, state
        else:
            assert consumption is None, state
            assert (Decimal(reservation["quantity"]) if reservation else Decimal(0)) == cited, state
    assert set(licence.reservations) | set(licence.consumed) <= known, "a reservation without its declaration"
    # I3: the ledger's entries add up to the licence's state; nothing consumed twice.
    reserved, consumed = replay(ledger)
    assert reserved == {key: entry["quantity"] for key, entry in licence.reservations.items()}
    assert consumed == {key: entry["quantity"] for key, entry in licence.consumed.items()}
    # I4: the read model agrees with the aggregate.
    if views is not None:
        [row] = [row for row in licences_view(views, number=number) if row["issuer"] == issuer]
        assert (Decimal(row["reserved"]), Decimal(row["consumed"])) == (reserved_total, consumed_total), row
        assert [(e["kind"], e["declaration_id"], e["declaration_version"], e["quantity"])
                for e in ledger_view(views, str(licence.id))] == [
            (e["kind"], e["declaration_id"], e["declaration_version"], e["quantity"]) for e in ledger]
    return licence
