"""Cited licences in the agencies' messages (docs/messages.md, "Licences and certificates"; adapters/citations.py).

What must hold: customs gets every licence a goods item cites as a WCO `AdditionalDocument` (number, 1001 type,
issuing authority, validity, quantity written off) with the hub's verification beside it, valid against the
published WCO schema; dispatch looks each licence up and verifies it again when it builds the message, so one
revoked (or whose signature stopped verifying) since the submission goes out as not verified; a certificate
issued by inspection reaches customs as recognised; inspection gets the certificates its items cite; and for any
set of citations, every citation appears exactly once, in order, in a valid message.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.citations import BAD_SIGNATURE, LICENCE_CODES, REVOKED, UNKNOWN
from adapters.customs import customs_messages
from adapters.inspection import inspection_messages
from adapters.inspection.declaration import CERTIFICATES
from adapters.inspection.declaration import NS as INSPECTION
from adapters.messages import ORIGINAL, Change
from followers.dispatch import AgencyDispatch, Changes, checked_licences
from hub.declarations import ISSUERS, LICENCE_TYPES, Declarations, LicenceSignatureInvalid, RoutingRules
from hub.declarations.documents import LIMITS
from tradehub.bootstrap import Hub

from . import samples
from .conftest import Api
from .ledger import DAY, licence_fields
from .messaging import Outbox, interop, submitted

DEC = "urn:wco:datamodel:WCO:DEC-DMS:2"
NS = {"d": DEC, "ds": "urn:wco:datamodel:WCO:Declaration_DS:DMS:2", "i": INSPECTION}
RULES = RoutingRules.load()
SHRIMPS = {"hs_code": "0306170000", "description": "Frozen shrimps, peeled", "origin": "VN", "quantity": "12000",
           "unit": "KGM", "gross_kg": "12650.5", "net_kg": "12000", "value": "84000.00", "currency": "USD"}
MACHINES = samples.goods()["items"][0]  # HS 8479899990


@cache
def wco() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(interop("wco-dms", "wrapper.xsd"))))


@pytest.fixture
def hub(hub: Hub) -> Hub:
    """The hub on each store (tests/conftest.py), on the day the test licences are valid."""
    hub.declarations.today = lambda: DAY
    return hub


def issue(app: Declarations, number: str, issuer: str, kind: str, hs_scope: list[str], **changes: Any) -> dict:
    fields = licence_fields(number, issuer=issuer, type=kind, hs_scope=hs_scope, **{"quantity": "20000", **changes})
    return app.issue_licence(fields, f"officer:{issuer}").licence.signature


def declare(app: Declarations) -> UUID:
    """Shrimps citing inspection's phytosanitary certificate and customs' health certificate; machines citing the
    commerce ministry's import licence."""
    document = samples.goods(items=[
        {**SHRIMPS, "licences": [{"number": "PHY-1", "quantity": "12000", "unit": "KGM"},
                                 {"number": "HC-1", "quantity": "12", "unit": "TNE"}]},
        {**MACHINES, "licences": [{"number": "IL-1", "quantity": "600", "unit": "KGM"}]},
    ])
    return app.submit(document).declaration.id


def built(app: Declarations, declaration_id: UUID, agency: str) -> etree._Element:
    """The agency's message for the declaration's latest change, as dispatch builds it."""
    changes = Changes(app)
    change = [changes.of(event) for event in app.events.get(declaration_id)][-1]
    [message] = AgencyDispatch(app, agency, Outbox()).build(change)
    return etree.fromstring(message.body)


def documents(root: etree._Element, position: int, prefix: str = "d") -> list[dict[str, Any]]:
    """Each AdditionalDocument of the goods item at `position`, with the verification statement beside it."""
    [item] = root.xpath(f"//{prefix}:GovernmentAgencyGoodsItem[{prefix}:SequenceNumeric='{position}']",
                        namespaces=NS)
    cited = item.xpath(f"{prefix}:AdditionalDocument", namespaces=NS)
    statements = item.xpath(f"{prefix}:AdditionalInformation", namespaces=NS)
    assert len(cited) == len(statements)
    return [{"id": document.findtext(f"{{{NS[prefix]}}}ID"),
             "type": document.findtext(f"{{{NS[prefix]}}}TypeCode"),
             "issuer": document.findtext(f"{{{NS[prefix]}}}Submitter/{{{NS[prefix]}}}Name"),
             "valid_to": "".join(document.xpath(".//*[local-name()='DateTimeString']/text()")),
             "written_off": [(quantity.text, quantity.get("unitCode")) for quantity in document.xpath(
                 f"{prefix}:WriteOff/{prefix}:QuantityQuantity", namespaces=NS)],
             "result": statement.findtext(f"{{{NS[prefix]}}}StatementCode"),
             "statement": statement.findtext(f"{{{NS[prefix]}}}StatementDescription")}
            for document, statement in zip(cited, statements, strict=True)]


# ---- through dispatch, against the registry ------------------------------------------------------------


def test_customs_gets_each_cited_licence_as_a_wco_additional_document(hub: Hub):
    app = hub.declarations
    keys = {number: issue(app, number, issuer, kind, scope)["key"] for number, issuer, kind, scope in (
        ("PHY-1", "inspection", "phytosanitary_certificate", ["0306"]),
        ("HC-1", "customs", "health_certificate", ["03"]),
        ("IL-1", "commerce", "import_licence", ["84"]))}
    root = built(app, declare(app), "customs")
    assert wco().validate(root), wco().error_log.last_error
    assert documents(root, 1) == [
        {"id": "PHY-1", "type": "851", "issuer": "inspection", "valid_to": "20271231",
         "written_off": [("12000", "KGM")], "result": "LPCO-RECOGNISED",
         "statement": f"issued by inspection; key {keys['PHY-1']}"},
        {"id": "HC-1", "type": "852", "issuer": "customs", "valid_to": "20271231", "written_off": [("12", "TNE")],
         "result": "LPCO-VERIFIED", "statement": f"key {keys['HC-1']}"},
    ]
    assert documents(root, 2) == [
        {"id": "IL-1", "type": "911", "issuer": "commerce", "valid_to": "20271231", "written_off": [("600", "KGM")],
         "result": "LPCO-VERIFIED", "statement": f"key {keys['IL-1']}"}]
    # The key named is the one the issuer signed with, a SHA-256 fingerprint.
    assert all(len(key) == 64 for key in keys.values())


def test_inspection_gets_the_certificates_its_items_cite_and_recognises_customs(hub: Hub):
    app = hub.declarations
    for number, issuer, kind, scope in (("PHY-1", "inspection", "phytosanitary_certificate", ["0306"]),
                                        ("HC-1", "customs", "health_certificate", ["03"]),
                                        ("IL-1", "commerce", "import_licence", ["84"])):
        issue(app, number, issuer, kind, scope)
    root = built(app, declare(app), "inspection")
    assert [(entry["id"], entry["type"], entry["issuer"], entry["result"]) for entry in documents(root, 1, "i")] == [
        ("PHY-1", "851", "inspection", "LPCO-VERIFIED"),  # its own
        ("HC-1", "852", "customs", "LPCO-RECOGNISED"),  # inspection recognises customs' results
    ]
    # The machines are not under inspection, and an import licence is no certificate of inspection's.
    assert root.xpath("//i:GovernmentAgencyGoodsItem[i:SequenceNumeric='2']", namespaces=NS) == []
    assert "IL-1" not in etree.tostring(root).decode()


def test_a_licence_revoked_between_submit_and_dispatch_goes_out_as_not_verified(hub: Hub):
    app = hub.declarations
    for number, issuer, kind, scope in (("PHY-1", "inspection", "phytosanitary_certificate", ["0306"]),
                                        ("HC-1", "customs", "health_certificate", ["03"]),
                                        ("IL-1", "commerce", "import_licence", ["84"])):
        issue(app, number, issuer, kind, scope)
    declaration_id = declare(app)
    app.revoke_licence("PHY-1", "inspection", "officer:inspection", "issued for another consignment")
    root = built(app, declaration_id, "customs")
    assert wco().validate(root), wco().error_log.last_error
    [phyto, health] = documents(root, 1)
    # Revoked, it is not recognised either: recognition takes a certificate that stands.
    assert (phyto["result"], phyto["statement"]) == ("LPCO-NOT-VERIFIED", REVOKED)
    assert health["result"] == "LPCO-VERIFIED"
    [phyto, _] = documents(built(app, declaration_id, "inspection"), 1, "i")
    assert (phyto["result"], phyto["statement"]) == ("LPCO-NOT-VERIFIED", REVOKED)
    assert checked_licences(app, app.get(declaration_id).document)[("inspection", "PHY-1")]["detail"] == \
        "issued for another consignment"


def test_a_signature_that_stops_verifying_goes_out_as_not_verified(hub: Hub):
    app = hub.declarations
    for number, issuer, kind, scope in (("PHY-1", "inspection", "phytosanitary_certificate", ["0306"]),
                                        ("HC-1", "customs", "health_certificate", ["03"]),
                                        ("IL-1", "commerce", "import_licence", ["84"])):
        issue(app, number, issuer, kind, scope)
    declaration_id = declare(app)

    class Retired:  # the issuer's key was retired after the submission
        def verify(self, issuer: str, content: dict, signature: dict) -> None:
            raise LicenceSignatureInvalid(f"key of {issuer} was retired")

    app.seal = Retired()
    checked = checked_licences(app, app.get(declaration_id).document)
    assert {key: (entry["verified"], entry["reason"]) for key, entry in checked.items()} == {
        key: (False, BAD_SIGNATURE) for key in (("inspection", "PHY-1"), ("customs", "HC-1"), ("commerce", "IL-1"))}
    results = [entry["result"] for entry in documents(built(app, declaration_id, "customs"), 1)]
    assert results == ["LPCO-NOT-VERIFIED", "LPCO-NOT-VERIFIED"]


def test_the_recognition_view_lists_the_documents_customs_recognises(hub: Hub):
    app = hub.declarations
    for number, issuer, kind, scope in (("PHY-1", "inspection", "phytosanitary_certificate", ["0306"]),
                                        ("HC-1", "customs", "health_certificate", ["03"]),
                                        ("IL-1", "commerce", "import_licence", ["84"])):
        issue(app, number, issuer, kind, scope)
    declaration_id = declare(app)
    api = Api(hub)
    api.sync()
    view = api.client.get("/v1/views/recognition", headers=api.as_("officer", agency="customs"))
    assert view.status_code == 200, view.text
    [listed] = view.json()["documents"]
    assert (listed["declaration_id"], listed["recognised_by"]) == (str(declaration_id), "customs")
    # Customs' own health certificate and commerce's licence are verified, not recognised: only inspection's.
    assert [(document["number"], document["issuer"], document["items"]) for document in listed["documents"]] == [
        ("PHY-1", "inspection", [1])]
    assert view.json()["totals"]["documents_recognised"] == 1
    border = api.client.get("/v1/views/recognition", headers=api.as_("officer", agency="border")).json()
    assert border["documents"] == [] and border["totals"]["documents_recognised"] == 0


def test_only_customs_and_inspection_are_told_about_licences(hub: Hub):
    app = hub.declarations
    issue(app, "IL-1", "commerce", "import_licence", ["84"])
    declaration_id = app.submit(samples.goods(items=[
        {**MACHINES, "licences": [{"number": "IL-1", "quantity": "1", "unit": "KGM"}]}])).declaration.id
    port = etree.tostring(built(app, declaration_id, "port")).decode()
    assert "IL-1" not in port


def test_render_reads_no_registry_and_says_so():
    document = samples.goods(items=[{**MACHINES, "licences": [{"number": "IL-9", "quantity": "1", "unit": "KGM",
                                                               "issuer": "commerce"}]}])
    [message] = customs_messages(submitted(document), ORIGINAL, RULES)
    root = etree.fromstring(message.body)
    [entry] = documents(root, 1)
    assert (entry["id"], entry["type"], entry["result"], entry["statement"]) == \
        ("IL-9", None, "LPCO-NOT-VERIFIED", "not looked up")
    assert wco().validate(root), wco().error_log.last_error


# ---- any set of citations ----------------------------------------------------------------------------

# Licence numbers as validation admits them (hub.declarations.values.text, 35 characters), XML's own characters
# and characters beyond the Basic Multilingual Plane included.
NUMBERS = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs", "Zl")), min_size=1, max_size=35) \
    .map(str.strip).filter(bool)
QUANTITIES = st.decimals(min_value="0.000001", max_value="9999999999.999999", places=6).map(
    lambda value: format(value.normalize(), "f"))
CITATION = st.fixed_dictionaries({"number": NUMBERS, "quantity": QUANTITIES,
                                  "unit": st.sampled_from(["KGM", "TNE", "GRM", "H87", "LTR"]),
                                  "issuer": st.sampled_from(ISSUERS)})
VERDICT = st.one_of(
    st.none(),  # not looked up
    st.fixed_dictionaries({
        "type": st.one_of(st.none(), st.sampled_from(LICENCE_TYPES)),  # None: the registry knows none
        "valid_to": st.dates().map(lambda day: day.isoformat()),
        "verified": st.booleans(),
        "reason": st.sampled_from([UNKNOWN, REVOKED, BAD_SIGNATURE, "expired", "x" * 100]),
        "key": st.one_of(st.none(), st.text("0123456789abcdef", min_size=64, max_size=64))}))


@st.composite
def citing_declarations(draw) -> tuple[dict, dict]:
    items = []
    for _ in range(draw(st.integers(1, 4))):
        cited = draw(st.lists(CITATION, min_size=0, max_size=LIMITS["licences"],
                              unique_by=lambda citation: (citation["issuer"], citation["number"])))
        item = {**draw(st.sampled_from([SHRIMPS, MACHINES]))}
        if cited:
            item["licences"] = cited
        items.append(item)
    verdicts = {}
    for item in items:
        for citation in item.get("licences", ()):
            verdict = draw(VERDICT)
            if verdict is not None:
                verdicts[(citation["issuer"], citation["number"])] = verdict
    return samples.goods(items=items), verdicts


def cited_in(root: etree._Element, prefix: str) -> list[list[str]]:
    return [[document.findtext(f"{{{NS[prefix]}}}ID") for document in item.xpath(f"{prefix}:AdditionalDocument",
                                                                                   namespaces=NS)]
            for item in root.xpath(f"//{prefix}:GovernmentAgencyGoodsItem", namespaces=NS)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declaration=citing_declarations())
def test_any_citations_make_valid_messages_naming_each_citation_once(declaration):
    document, verdicts = declaration
    change: Change = replace(submitted(document), licences=verdicts)
    stored = change.document  # validated: numbers as the hub keeps them
    [message] = customs_messages(change, ORIGINAL, RULES)  # valid against xsd/customs, or it raises
    root = etree.fromstring(message.body)
    assert wco().validate(root), wco().error_log.last_error
    assert cited_in(root, "d") == [[citation["number"] for citation in item.get("licences", ())]
                                   for item in stored["items"]]
    for position, item in enumerate(stored["items"], 1):
        for citation, entry in zip(item.get("licences", ()), documents(root, position), strict=True):
            verdict = verdicts.get((citation["issuer"], citation["number"]))
            assert entry["written_off"] == [(citation["quantity"], citation["unit"])]
            assert entry["issuer"] == citation["issuer"]
            assert entry["type"] == (LICENCE_CODES[verdict["type"]] if verdict and verdict["type"] else None)
            assert (entry["result"] == "LPCO-NOT-VERIFIED") == (not verdict or not verdict["verified"])
            assert entry["result"] != "LPCO-RECOGNISED" or RULES.recognises("customs", citation["issuer"])
    if "inspection" in change.routes:
        [message] = inspection_messages(change, ORIGINAL, RULES)
        root = etree.fromstring(message.body)
        positions = [int(text) for text in root.xpath("//i:GovernmentAgencyGoodsItem/i:SequenceNumeric/text()",
                                                      namespaces=NS)]
        expected = [[citation["number"] for citation in stored["items"][position - 1].get("licences", ())
                     if (verdicts.get((citation["issuer"], citation["number"])) or {}).get("type")
                     in (None, *CERTIFICATES)]
                    for position in positions]
        assert [[" ".join(number.split()) for number in numbers] for numbers in expected] == cited_in(root, "i")
