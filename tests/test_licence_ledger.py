"""The licence ledger (docs/licences.md, "The ledger"): units, every reason a citation is refused, and the
ledger's invariants over random histories of submissions, amendments, withdrawals, rejections, releases,
repeats and revocations, on both stores.

Races between processes and crashes: test_licence_race.py.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_reached
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from hub.declarations import (
    DeclarationNotFound,
    Declarations,
    InvalidLicence,
    Licence,
    LicenceAmbiguous,
    LicenceNotFound,
    LicenceRefused,
    declaration_id,
    licence_id,
)
from hub.declarations.domainmodel import DeclarationClosed
from hub.declarations.licence import LicenceClosed, LicenceNumber, UnitMismatch, convert, number_index_id, plain
from tradehub.bootstrap import Hub, Settings, build_hub

from . import samples
from .conftest import Api
from .ledger import DAY, check_ledger, cite, cited_quantity, citing, item, licence_fields, release

# ---- units -------------------------------------------------------------------------------------------

MASS = ("GRM", "KGM", "TNE")
GRAMS = {"GRM": Decimal(1), "KGM": Decimal(1000), "TNE": Decimal(1000000)}
# Quantities as declarations write them: up to 16 digits, 6 of them after the point.
QUANTITIES = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("9999999999.999999"), places=6,
                         allow_nan=False, allow_infinity=False)


def test_mass_units_convert_exactly():
    assert convert(Decimal("1"), "TNE", "KGM") == 1000
    assert convert(Decimal("1"), "TNE", "GRM") == 1000000
    assert convert(Decimal("0.000001"), "GRM", "TNE") == Decimal("1E-12")
    assert plain(convert(Decimal("12.5"), "GRM", "KGM")) == "0.0125"
    assert convert(Decimal("600"), "KGM", "KGM") == 600


@given(quantity=QUANTITIES, there=st.sampled_from(MASS), back=st.sampled_from(MASS))
def test_mass_conversion_loses_nothing(quantity: Decimal, there: str, back: str):
    converted = convert(quantity, there, back)
    assert converted == quantity * GRAMS[there] / GRAMS[back]  # in grams, the same
    assert convert(converted, back, there) == quantity  # and back, exactly: no rounding anywhere


@given(quantity=QUANTITIES)
def test_a_count_converts_only_to_itself(quantity: Decimal):
    assert convert(quantity, "H87", "H87") == quantity
    for source, target in (("H87", "KGM"), ("KGM", "H87"), ("H87", "C62"), ("LTR", "KGM"), ("TNE", "LTR")):
        with pytest.raises(UnitMismatch, match=f"{source} does not convert to the licence's unit {target}"):
            convert(quantity, source, target)


# ---- the aggregate -------------------------------------------------------------------------------


def fresh_licence(quantity: str = "1000", unit: str = "KGM") -> Licence:
    fields = licence_fields("L-UNIT", quantity=quantity, unit=unit)
    return Licence(**fields, signature={"format": "jws", "value": "-", "key": "-"}, source="api", issued_by="test")


def test_a_reservation_is_replaced_returned_or_consumed_once():
    licence = fresh_licence()
    assert licence.reserve("d1", 1, Decimal("600"), [{"item": 0, "quantity": "600", "unit": "KGM"}])
    assert not licence.reserve("d1", 1, Decimal("600"), [{"item": 0, "quantity": "600", "unit": "KGM"}])
    assert licence.remaining == 400 and licence.available_to("d1") == 1000 and licence.available_to("d2") == 400
    assert licence.reserve("d1", 2, Decimal("0.25"), [{"item": 0, "quantity": "250", "unit": "GRM"}])  # amended
    assert licence.remaining == Decimal("999.75")
    assert not licence.give_back("d1", 1, "rejected")  # an outcome of version 1 cannot undo version 2's reservation
    assert not licence.consume("d1", 1)
    assert licence.consume("d1", 3)
    assert not licence.consume("d1", 3) and not licence.consume("d1", 9)  # once
    assert not licence.give_back("d1", 9, "withdrawn")  # nothing left to give back
    assert licence.consumed == {"d1": {"version": 3, "quantity": "0.25"}} and licence.reservations == {}
    with pytest.raises(LicenceClosed):
        licence.reserve("d1", 4, Decimal("1"), [])
    assert licence.reserve("d2", 1, Decimal("10"), []) and licence.give_back("d2", 1, "withdrawn")
    assert not licence.give_back("d2", 1, "withdrawn")
    assert licence.remaining == Decimal("999.75")
    kinds = [type(event).__name__ for event in licence.collect_events()]
    assert kinds == ["Issued", "Reserved", "Reserved", "Consumed", "Reserved", "Returned"]


def test_status_on_a_day():
    licence = fresh_licence()
    assert [licence.status_on(day) for day in (DAY.replace(year=2025), DAY, DAY.replace(year=2028))] == [
        "not_yet_valid", "valid", "expired"]
    assert licence.status_on(DAY.replace(year=2027, month=12, day=31)) == "valid"  # valid_to is included
    assert licence.suspend("officer:customs", "audit", "t") and not licence.suspend("officer:customs", "again", "t")
    assert licence.status_on(DAY) == "suspended"
    assert licence.reinstate("officer:customs", "done", "t") and licence.status_on(DAY) == "valid"
    assert licence.revoke("officer:customs", "fraud", "t") and not licence.revoke("officer:customs", "again", "t")
    assert licence.status_on(DAY) == "revoked"
    with pytest.raises(LicenceClosed):
        licence.suspend("officer:customs", "late", "t")
    assert licence.covers("8479899990") and not licence.covers("0101210000")


# ---- every refusal, with its path and words ---------------------------------------------------------


@pytest.fixture
def hub_on_sqlite(tmp_path: Path) -> Iterator[Hub]:
    hub = build_hub(Settings(data_dir=tmp_path))
    hub.declarations.today = lambda: DAY
    yield hub
    hub.close()


def forge(app: Declarations, number: str) -> None:
    """A licence written straight into the store (as by someone with write access to it) whose signature is the
    issuer's, but over other content: 1 KGM, where the licence says 1000."""
    fields = licence_fields(number)
    signature = app.seal.sign("customs", {**fields, "quantity": "1"})
    app.save(Licence(**fields, signature=signature, source="import", issued_by="admin:forger"),
             LicenceNumber(number=number, issuer="customs"))


PATH = "$.items[0].licences[0]"
REFUSALS: dict[str, tuple[Callable[[Declarations], Any], dict[str, Any], str, str]] = {
    # reason: (set-up, the cited item, the path's last step, the message)
    "unknown": (lambda app: None, item(cite("NOPE-1", "1")), "number", "unknown licence NOPE-1"),
    "unknown of that issuer": (lambda app: app.issue_licence(licence_fields("ONE-1"), "test"),
                               item(cite("ONE-1", "1", issuer="commerce")), "number", "unknown licence ONE-1 of commerce"),
    "ambiguous": (lambda app: [app.issue_licence(licence_fields("TWICE-1", issuer=issuer), "test")
                               for issuer in ("customs", "commerce")],
                  item(cite("TWICE-1", "1")), "number",
                  "licence number TWICE-1 is used by customs and commerce: name the issuer"),
    "signature": (lambda app: forge(app, "FORGED-1"), item(cite("FORGED-1", "1")), "number",
                  "licence FORGED-1 of customs: the signature does not verify"),
    "revoked": (lambda app: (app.issue_licence(licence_fields("GONE-1"), "test"),
                             app.revoke_licence("GONE-1", None, "officer:customs", "obtained by fraud")),
                item(cite("GONE-1", "1")), "number", "licence GONE-1 is revoked (obtained by fraud)"),
    "suspended": (lambda app: (app.issue_licence(licence_fields("HELD-1"), "test"),
                               app.suspend_licence("HELD-1", "customs", "officer:customs", "under audit")),
                  item(cite("HELD-1", "1")), "number", "licence HELD-1 is suspended (under audit)"),
    "expired": (lambda app: app.issue_licence(licence_fields("OLD-1", valid_from="2025-01-01",
                                                             valid_to="2026-11-30"), "test"),
                item(cite("OLD-1", "1")), "number", "licence OLD-1 is expired: valid to 2026-11-30"),
    "not yet valid": (lambda app: app.issue_licence(licence_fields("NEW-1", valid_from="2026-12-02"), "test"),
                      item(cite("NEW-1", "1")), "number", "licence NEW-1 is not yet valid: valid from 2026-12-02"),
    "not the holder": (lambda app: app.issue_licence(licence_fields("THEIRS-1", holder=samples.TRADER_B), "test"),
                       item(cite("THEIRS-1", "1")), "number",
                       f"licence THEIRS-1 is held by {samples.TRADER_B}, neither the declarant nor the consignee"),
    "out of scope": (lambda app: app.issue_licence(licence_fields("FISH-1", hs_scope=["0303", "0306"]), "test"),
                     item(cite("FISH-1", "1")), "number",
                     "HS code 8479899990 is out of the scope of licence FISH-1 (0303, 0306)"),
    "unit": (lambda app: app.issue_licence(licence_fields("MASS-1"), "test"),
             item(cite("MASS-1", "4", unit="H87")), "unit", "H87 does not convert to the licence's unit KGM"),
    "count unit": (lambda app: app.issue_licence(licence_fields("COUNT-1", unit="H87", quantity="10"), "test"),
                   item(cite("COUNT-1", "4", unit="KGM")), "unit", "KGM does not convert to the licence's unit H87"),
    "insufficient": (lambda app: (app.issue_licence(licence_fields("LAST-1"), "test"),
                                  app.submit(citing("FIRST", item(cite("LAST-1", "987.5"))))),
                     item(cite("LAST-1", "12.500001")), "quantity",
                     "insufficient: 12.5 KGM remain on licence LAST-1, the declaration cites 12.500001"),
    "insufficient in tonnes": (lambda app: app.issue_licence(licence_fields("TONNES-1", unit="TNE",
                                                                            quantity="0.5"), "test"),
                               item(cite("TONNES-1", "500000.001", unit="GRM")), "quantity",
                               "insufficient: 0.5 TNE remain on licence TONNES-1, the declaration cites 0.500000001"),
}


@pytest.mark.parametrize("reason", REFUSALS)
def test_each_refusal_names_the_citation_and_the_reason_and_stores_nothing(hub_on_sqlite: Hub, reason: str):
    app = hub_on_sqlite.declarations
    set_up, cited, step, words = REFUSALS[reason]
    set_up(app)
    head = app.recorder.max_notification_id()
    with pytest.raises(LicenceRefused) as refused:
        app.submit(citing("REFUSED", cited))
    [error] = refused.value.errors
    assert error.path == f"{PATH}.{step}"
    assert error.message.startswith(words), error.message
    assert app.recorder.max_notification_id() == head  # neither the declaration nor a reservation
    with pytest.raises(DeclarationNotFound):
        app.get(declaration_id(samples.TRADER_A, "REFUSED"))


def test_an_amendment_is_refused_for_the_same_reasons_and_keeps_the_reservation(hub_on_sqlite: Hub):
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("AM-1"), "test")
    declaration = app.submit(citing("AMEND", item(cite("AM-1", "600")))).declaration
    app.submit(citing("OTHER", item(cite("AM-1", "300"))))
    with pytest.raises(LicenceRefused) as refused:
        app.amend(declaration.id, 1, citing("AMEND", item(cite("AM-1", "700.000001"))))
    assert refused.value.errors[0].path == f"{PATH}.quantity"
    assert refused.value.errors[0].message.startswith("insufficient: 700 KGM remain on licence AM-1")  # its own 600
    assert app.get_licence("AM-1").reservations[str(declaration.id)]["quantity"] == "600"
    app.amend(declaration.id, 1, citing("AMEND", item(cite("AM-1", "700", "KGM"))))  # all that is available to it
    assert app.get_licence("AM-1").remaining == 0


def test_a_citation_of_the_holder_as_consignee_is_accepted(hub_on_sqlite: Hub):
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("AGENT-1", holder=samples.TRADER_B), "test")
    consignee = {"id": samples.TRADER_B, "name": "Consignee Ltd.", "country": "CN"}
    assert app.submit(citing("FOR-B", item(cite("AGENT-1", "1")), consignee=consignee)).created


def test_every_citation_at_fault_is_named_together(hub_on_sqlite: Hub):
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("MANY-1", quantity="10"), "test")
    app.issue_licence(licence_fields("MANY-2", issuer="commerce"), "test")
    app.revoke_licence("MANY-2", "commerce", "officer:customs", "fraud")
    with pytest.raises(LicenceRefused) as refused:
        app.submit(citing("MANY", item(cite("MANY-1", "6"), cite("MANY-2", "1")),
                          item(cite("NOPE-2", "1", issuer="customs"), cite("MANY-1", "4000", unit="GRM"), cite("MANY-1", "1", "H87",
                                                                                               issuer="customs"))))
    assert [(error.path, error.message.split(":")[0]) for error in refused.value.errors] == [
        ("$.items[0].licences[1].number", "licence MANY-2 is revoked (fraud)"),
        ("$.items[1].licences[0].number", "unknown licence NOPE-2 of customs"),
        ("$.items[1].licences[2].unit", "H87 does not convert to the licence's unit KGM"),
    ]
    # 6 + 4 KGM fit the 10 exactly; one gram more does not, and is named where the sum tips over.
    assert app.submit(citing("EXACT", item(cite("MANY-1", "6")), item(cite("MANY-1", "4000", "GRM")))).created
    assert app.get_licence("MANY-1").remaining == 0


def test_a_number_no_issuer_used_is_named_together_with_the_other_citations_faults(hub_on_sqlite: Hub):
    """Resolving numbers comes first; its refusals must not hide what is wrong with the citations that resolve,
    and the dry run that finds those must leave the licence as it was."""
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("BOTH-1", quantity="10"), "test")
    before = app.get_licence("BOTH-1")
    with pytest.raises(LicenceRefused) as refused:
        app.submit(citing("BOTH", item(cite("BOTH-1", "11"), cite("NOWHERE-1", "1"))))
    assert [(error.path, error.message.split(":")[0]) for error in refused.value.errors] == [
        ("$.items[0].licences[0].quantity", "insufficient"),
        ("$.items[0].licences[1].number", "unknown licence NOWHERE-1"),
    ]
    after = app.get_licence("BOTH-1")
    assert (after.version, after.remaining) == (before.version, before.remaining)
    assert app.submit(citing("FITS", item(cite("BOTH-1", "10")))).created


def test_the_api_answers_a_refusal_with_422_naming_the_field(hub: Hub):
    hub.declarations.today = lambda: DAY
    api = Api(hub)
    hub.declarations.issue_licence(licence_fields("API-1", quantity="5"), "test")
    trader = api.as_("trader", party=samples.TRADER_A)
    answer = api.client.post("/v1/declarations", json=citing("API", item(cite("API-1", "5.5"))), headers=trader)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    [error] = answer.json()["errors"]
    assert error["path"] == f"{PATH}.quantity"
    assert error["message"] == "insufficient: 5 KGM remain on licence API-1, the declaration cites 5.5"
    answer = api.client.post("/v1/declarations", json=citing("API", item(cite("API-1", "5"))), headers=trader)
    assert answer.status_code == 201, answer.text
    assert answer.json()["document"]["items"][0]["licences"] == [cite("API-1", "5", issuer="customs")]
    assert api.client.post("/v1/declarations", json=citing("API", item(cite("API-1", "5"))),
                           headers=trader).status_code == 200  # the repeat
    assert hub.declarations.get_licence("API-1").remaining == 0


# ---- repeats and late outcomes ---------------------------------------------------------------------


def test_a_repeated_submission_reserves_nothing_twice(hub_on_sqlite: Hub):
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("REP-1"), "test")
    raw = citing("REPEAT", item(cite("REP-1", "600")))
    first = app.submit(raw).declaration
    version = app.get_licence("REP-1").version
    for _ in range(3):
        again = app.submit(raw)
        assert not again.created and again.declaration.id == first.id
    assert app.get_licence("REP-1").version == version and app.get_licence("REP-1").remaining == 400


@pytest.mark.parametrize("outcome", ["released", "withdrawn"])
def test_a_repeated_submission_after_the_outcome_returns_the_declaration(hub_on_sqlite: Hub, outcome: str):
    """A client that never saw its 201 sends the declaration again, after it was released (its quantity consumed)
    or withdrawn (given back, and taken by another meanwhile): it gets its declaration, and nothing moves."""
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("LATE-1"), "test")
    raw = citing("LATE", item(cite("LATE-1", "600")))
    declaration = app.submit(raw).declaration
    if outcome == "released":
        release(app, declaration.id, "late")
    else:
        app.withdraw(declaration.id, "changed our mind")
    samples.followed(hub_on_sqlite)
    app.submit(citing("TAKER", item(cite("LATE-1", "1000" if outcome == "withdrawn" else "400"))))
    licence = app.get_licence("LATE-1")
    again = app.submit(raw)
    assert not again.created and again.declaration.id == declaration.id
    assert app.get_licence("LATE-1").version == licence.version


def test_an_amendment_of_a_rejected_declaration_before_licensing_gave_it_back_keeps_its_reservation(
        hub_on_sqlite: Hub):
    """Rejected, then amended (with the same citations) before the licensing follower has applied the rejection:
    the amended declaration must still hold its quantity once the follower gives back what the rejection freed."""
    hub = hub_on_sqlite
    app = hub.declarations
    app.issue_licence(licence_fields("REOPEN-1"), "test")
    raw = citing("REOPEN", item(cite("REOPEN-1", "600")))
    declaration = app.submit(raw).declaration
    samples.followed(hub)
    app.record_response(declaration.id, "customs", "reject-1", "rejected", "2026-12-01T10:00:00Z")
    app.amend(declaration.id, app.get(declaration.id).version, {**raw, "customs_office": "3701"})
    samples.followed(hub)  # now licensing sees the rejection
    check_ledger(app, hub.views, ("REOPEN-1", "customs"), [app.get(declaration.id)])
    with pytest.raises(LicenceRefused):
        app.submit(citing("GREEDY", item(cite("REOPEN-1", "1000"))))


# ---- the invariants over random histories, on both stores -------------------------------------------

# The licences each history works on: (name, issuer, unit, quantity choices, HS scope).
LICENCES = (
    ("KG", "customs", "KGM", ("1000", "2500.5"), ["84"]),
    ("TN", "commerce", "TNE", ("2", "0.75"), ["8479"]),
    ("PC", "inspection", "H87", ("10",), ["847989"]),
)
MASS_CITED = ("0.001", "0.5", "1", "250", "400", "999.999")  # kilograms, cited in any mass unit
COUNTS_CITED = ("1", "2", "3", "5")
REFERENCES = 5
# Whether the followers apply a step before the next one: seldom, so that outcomes are often read late, after the
# declarant has amended or resubmitted meanwhile (the follower runs in another process).
FOLLOW = st.sampled_from((True, False, False))
_histories = itertools.count()


@st.composite
def citation_of(draw: st.DrawFn, licence: int) -> tuple[int, str, str, bool]:
    """(licence, quantity, unit, whether the issuer is named)."""
    if LICENCES[licence][2] == "H87":
        unit = draw(st.sampled_from(("H87",) * 5 + ("KGM",)))  # a mass on a count licence: refused
        quantity = draw(st.sampled_from(COUNTS_CITED))
    else:
        unit = draw(st.sampled_from(MASS + ("H87",) if draw(st.integers(0, 9)) == 0 else MASS))
        kilograms = Decimal(draw(st.sampled_from(MASS_CITED)))
        quantity = plain(convert(kilograms, "KGM", unit)) if unit in MASS else draw(st.sampled_from(COUNTS_CITED))
    return licence, quantity, unit, draw(st.booleans())


@st.composite
def cited_items(draw: st.DrawFn) -> list[list[tuple[int, str, str, bool]]]:
    """One or two goods items, each citing none to all of the licences (each at most once)."""
    items = []
    for _ in range(draw(st.integers(1, 2))):
        chosen = draw(st.lists(st.integers(0, len(LICENCES) - 1), max_size=len(LICENCES), unique=True))
        items.append([draw(citation_of(licence)) for licence in chosen])
    return items


class Ledger(RuleBasedStateMachine):
    """Each history works on licences and references of its own, in a store the test shares between histories."""

    hub: Hub

    def __init__(self) -> None:
        super().__init__()
        self.app = self.hub.declarations
        self.prefix = f"H{next(_histories)}"
        self.licences: list[tuple[str, str]] = []  # (number, issuer)
        for name, issuer, unit, quantities, scope in LICENCES:
            number = f"{self.prefix}-{name}"
            self.app.issue_licence(licence_fields(number, issuer=issuer, unit=unit, quantity=quantities[0],
                                                  hs_scope=scope), "test")
            self.licences.append((number, issuer))
        samples.followed(self.hub)
        self.first: dict[str, dict[str, Any]] = {}  # reference -> the document first submitted under it
        self.ids: dict[str, Any] = {}
        self.lagging = False  # the followers have not applied the last step yet
        self.messages = itertools.count()

    # ---- helpers ----------------------------------------------------------------------------

    def document(self, reference: str, items: list[list[tuple[int, str, str, bool]]], office: str) -> dict:
        return citing(reference, *[
            item(*[cite(self.licences[n][0], quantity, unit, self.licences[n][1] if named else None)
                   for n, quantity, unit, named in citations]) for citations in items], customs_office=office)

    def expected_refusals(self, document: dict[str, Any], declaration_key: str) -> list[str]:
        """The paths a submission or amendment of `document` must be refused at, from the licences as stored."""
        licences = {key: self.app.get_licence(*key) for key in self.licences}
        wanted: dict[tuple[str, str], Decimal] = {}
        paths, tipped = [], set()
        for i, goods in enumerate(document["items"]):
            for j, citation in enumerate(goods.get("licences", ())):
                [key] = [key for key in self.licences if key[0] == citation["number"]]
                licence = licences[key]
                if licence.revoked or licence.suspended:
                    paths.append(f"$.items[{i}].licences[{j}].number")
                    continue
                try:
                    quantity = convert(Decimal(citation["quantity"]), citation["unit"], licence.unit)
                except UnitMismatch:
                    paths.append(f"$.items[{i}].licences[{j}].unit")
                    continue
                wanted[key] = wanted.get(key, Decimal(0)) + quantity
                if wanted[key] > licence.available_to(declaration_key) and key not in tipped:
                    tipped.add(key)
                    paths.append(f"$.items[{i}].licences[{j}].quantity")
        return paths

    def versions(self) -> list[int]:
        return [self.app.get_licence(*key).version for key in self.licences]

    def after(self, follow: bool) -> None:
        if follow:
            samples.followed(self.hub)
        self.lagging = not follow

    def open(self) -> list[str]:
        """References of declarations that are neither withdrawn nor released."""
        return [reference for reference, ident in self.ids.items()
                if not (found := self.app.get(ident)).withdrawn and found.outcome != "released"]

    # ---- rules: few of them, so that hypothesis's swarm testing (each history enables some rules) seldom leaves
    # out the ones a late outcome needs together ------------------------------------------------------------------

    @rule(data=st.data(), items=cited_items(), follow=FOLLOW, again=st.integers(0, 3))
    def submit(self, data: st.DataObject, items, follow: bool, again: int) -> None:
        """Submit under a new reference, or (one time in four, or when all are used) repeat a first submission."""
        unused = [f"{self.prefix}-R{n}" for n in range(REFERENCES) if f"{self.prefix}-R{n}" not in self.ids]
        if self.first and (again == 0 or not unused):
            self.repeat(data.draw(st.sampled_from(sorted(self.first))))
            return
        if not unused:
            return
        reference = data.draw(st.sampled_from(unused))
        document = self.document(reference, items, "3702")
        refusals = self.expected_refusals(document, str(declaration_id(samples.TRADER_A, reference)))
        try:
            submission = self.app.submit(document)
        except LicenceRefused as refused:
            assert [error.path for error in refused.errors] == refusals
            note_reached("submission refused")
        else:
            assert not refusals and submission.created
            self.first[reference] = document
            self.ids[reference] = submission.declaration.id
            note_reached("submitted")
        self.after(follow)

    def repeat(self, reference: str) -> None:
        versions = self.versions()
        again = self.app.submit(self.first[reference])
        assert not again.created and again.declaration.id == self.ids[reference]
        assert self.versions() == versions, "a repeated submission changed a licence"
        note_reached("repeated")

    @rule(data=st.data(), items=cited_items(), follow=FOLLOW)
    def amend(self, data: st.DataObject, items, follow: bool) -> None:
        """Amend what the declaration cites, or only another field; a rejected declaration (what declarants amend
        most) half the time there is one."""
        choices = self.open()
        rejected = [reference for reference in choices if self.app.get(self.ids[reference]).rejected]
        if rejected and data.draw(st.booleans()):
            choices = rejected
        if not choices:
            return
        reference = data.draw(st.sampled_from(choices))
        current = self.app.get(self.ids[reference])
        office = "3701" if current.document["customs_office"] == "3702" else "3702"  # always a change
        if data.draw(st.booleans()):
            document = {**current.document, "customs_office": office}
        else:
            document = self.document(reference, items, office)
        refusals = self.expected_refusals(document, str(current.id))
        try:
            amended = self.app.amend(current.id, current.version, document)
        except LicenceRefused as refused:
            assert [error.path for error in refused.errors] == refusals
            note_reached("amendment refused")
        else:
            assert not refusals and amended.version > current.version
            note_reached(("amended a rejected one" + (", before licensing read the rejection" if self.lagging else ""))
                         if current.rejected else "amended")
        self.after(follow)

    @rule(data=st.data(), outcome=st.sampled_from(("withdraw", "reject", "release")), follow=FOLLOW)
    def decide(self, data: st.DataObject, outcome: str, follow: bool) -> None:
        """Withdraw a declaration, or an agency rejects or every agency releases it."""
        choices = sorted(self.ids) if outcome == "withdraw" else [
            reference for reference in self.open() if not self.app.get(self.ids[reference]).rejected]
        if not choices:
            return
        declaration = self.app.get(self.ids[data.draw(st.sampled_from(choices))])
        if outcome == "withdraw":
            try:
                self.app.withdraw(declaration.id, "no longer needed")
            except DeclarationClosed:
                assert declaration.outcome == "released"
            else:
                assert declaration.outcome != "released"
        elif outcome == "reject":
            self.app.record_response(declaration.id, "customs", f"{self.prefix}-m{next(self.messages)}",
                                     "rejected", "2026-12-01T10:00:00Z")
        else:
            release(self.app, declaration.id, f"{self.prefix}-m{next(self.messages)}")
            follow = True  # the enforcement process records the release, then licensing consumes
        self.after(follow)
        if outcome == "release":
            assert self.app.get(declaration.id).outcome == "released"
        note_reached(outcome)

    @rule(licence=st.integers(0, len(LICENCES) - 1), action=st.sampled_from(("revoke", "suspend", "reinstate")),
          now=st.integers(0, 3))
    def change_status(self, licence: int, action: str, now: int) -> None:
        if now:
            self.after(True)  # three times in four, the followers catch up instead
            return  # a history whose licences are all revoked early shows little
        number, issuer = self.licences[licence]
        try:
            getattr(self.app, f"{action}_licence")(number, issuer, "officer:customs", f"{action} in a test")
        except Exception as error:  # noqa: BLE001 - a revoked licence is neither suspended nor reinstated
            assert action != "revoke" and self.app.get_licence(number, issuer).revoked, error
        note_reached(action)

    @invariant()
    def the_ledger_adds_up(self) -> None:
        if self.lagging:
            return  # what a step's outcome does to the licences waits for the follower
        declarations = [self.app.get(ident) for ident in self.ids.values()]
        for key in self.licences:
            check_ledger(self.app, self.hub.views, key, declarations)


@pytest.mark.slow
def test_the_ledger_adds_up_over_random_histories(hub: Hub):
    hub.declarations.today = lambda: DAY
    machine = type("LedgerOnThisStore", (Ledger,), {"hub": hub})
    run_state_machine_as_test(machine, settings=settings(  # about 8 s on SQLite, 16 s on PostgreSQL
        max_examples=100 if hub.settings.database_url == "" else 30, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# ---- issuing and reading, as the ledger needs them -----------------------------------------------


def test_a_licence_number_used_by_two_issuers_is_cited_with_its_issuer(hub_on_sqlite: Hub):
    app = hub_on_sqlite.declarations
    for issuer in ("customs", "commerce"):
        app.issue_licence(licence_fields("SHARED-1", issuer=issuer, quantity="5"), "test")
    with pytest.raises(LicenceAmbiguous):
        app.get_licence("SHARED-1")
    app.submit(citing("SHARED", item(cite("SHARED-1", "5", issuer="commerce"))))
    assert app.get_licence("SHARED-1", "commerce").remaining == 0
    assert app.get_licence("SHARED-1", "customs").remaining == 5
    with pytest.raises(LicenceNotFound):
        app.get_licence("SHARED-1", "cnca")
    assert licence_id("commerce", "SHARED-1") != licence_id("customs", "SHARED-1")


def test_a_licence_with_a_signature_over_other_content_is_not_issued(hub_on_sqlite: Hub):
    app = hub_on_sqlite.declarations
    fields = licence_fields("SIGNED-1")
    signature = app.seal.sign("customs", {**fields, "quantity": "1"})
    with pytest.raises(InvalidLicence) as invalid:
        app.issue_licence(fields, "test", source="import", signature=signature)
    assert invalid.value.errors[0].path == "$.signature"
    with pytest.raises(LicenceNotFound):
        app.get_licence("SIGNED-1")


def test_cited_quantity_reads_the_stored_document(hub_on_sqlite: Hub):
    """The tests' own arithmetic (tests/ledger.py): mixed units on two items, in the licence's unit."""
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("SUM-1", unit="TNE", quantity="1"), "test")
    stored = app.submit(citing("SUM", item(cite("SUM-1", "250", "KGM")), item(cite("SUM-1", "1500", "GRM")))).declaration
    licence = app.get_licence("SUM-1")
    assert cited_quantity(stored.document, licence) == Decimal("0.2515") == 1 - licence.remaining
    assert re.fullmatch(r"0\.2515", licence.reservations[str(stored.id)]["quantity"])


def test_callers_never_queue_behind_a_refresh_of_a_number_index(hub_on_sqlite: Hub, monkeypatch):
    """A stale number index is read afresh by one caller; the others meanwhile answer from the stale copy, and a
    caller with no copy at all waits for the read. (Citations name their licence's number: with one read queued
    per caller every second, a popular licence's citations would all wait on the store at once.)"""
    app = hub_on_sqlite.declarations
    app.issue_licence(licence_fields("FLIGHT-1"), "test")
    cache = app._licences
    first = cache.number_index("FLIGHT-1")
    monkeypatch.setattr(type(cache), "INDEX_TTL", 0.0)  # every copy is stale from now on
    app.issue_licence(licence_fields("FLIGHT-1", issuer="commerce"), "test")  # what a fresh read would show
    answers: dict[str, Any] = {}
    lock = cache._lock(number_index_id("FLIGHT-1"))
    with lock:  # another caller is reading the index afresh this moment
        stale = threading.Thread(target=lambda: answers.update(stale=cache.number_index("FLIGHT-1")))
        stale.start()
        stale.join(timeout=10)
        assert not stale.is_alive(), "a caller with a stale copy queued behind the refresh"
        cache._indexes.clear()  # a caller with no copy at all must wait for the read
        waiting = threading.Thread(target=lambda: answers.update(waited=cache.number_index("FLIGHT-1")))
        waiting.start()
        waiting.join(timeout=0.3)
        assert waiting.is_alive()
    waiting.join(timeout=10)
    assert answers["stale"].issuers == first.issuers == ["customs"]
    assert sorted(answers["waited"].issuers) == ["commerce", "customs"]
    assert sorted(cache.number_index("FLIGHT-1").issuers) == ["commerce", "customs"]  # and the next caller reads
