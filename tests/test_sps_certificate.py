"""SPS certificates over the broker (xsd/sps/, adapters/inspection/sps.py): the schema and the reader, the
inbox that makes each certificate a licence once and only from the inspection agency, on both stores, and the
whole path over an embedded nats-server."""

from __future__ import annotations

import asyncio
import base64
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum.cn import uscc

from adapters.inspection.sps import (
    CERTIFICATE_SCHEMA,
    NAMESPACES,
    TYPE_CODES,
    certificate_content,
    certificate_xml,
    signed_certificate_content,
    verified_certificate,
)
from adapters.keyring import fresh_signer
from adapters.signing import DSIG, TrustedKey
from adapters.xml import (
    BAD_SIGNATURE,
    DOCTYPE,
    ENTITY,
    MAX_MESSAGE_BYTES,
    NOT_WELL_FORMED,
    SCHEMA_INVALID,
    TOO_LARGE,
    UNEXPECTED_ROOT,
    Refused,
)
from followers.inbox import LICENCE_CONFLICT, NOT_ISSUER
from hub.declarations import LicenceNotFound
from messaging.outcomes import APPLIED, DEAD, UNCHANGED
from simulators.agencies import Keys, issue_certificate
from tradehub.bootstrap import Hub, Settings, build_hub, build_inbox

from .conftest import SECRET
from .messaging import second_validator


def holder(body: str = "91350200MA2Y0U0X1") -> str:
    return body + uscc.calc_check_digit(body)


def content(**changes) -> dict:
    return {"number": "PC-2026-0001", "type": "phytosanitary_certificate", "issuer": "inspection",
            "holder": holder(), "hs_scope": ["0306", "030617", "08"], "quantity": "1000.5", "unit": "KGM",
            "valid_from": "2026-03-01", "valid_to": "2026-06-30"} | changes


def refusal(data: bytes) -> Refused:
    with pytest.raises(Refused) as caught:
        certificate_content(data)
    return caught.value


def edited(data: bytes, xpath: str, text: str | None = None, **attributes: str) -> bytes:
    """The certificate with the first element at `xpath` given `text` (None: removed) or `attributes`."""
    root = etree.fromstring(data)
    element = root.xpath(xpath, namespaces=NAMESPACES)[0]
    if text is None and not attributes:
        element.getparent().remove(element)
    elif text is not None:
        element.text = text
    for name, value in attributes.items():
        element.set(name, value)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# ---- the schema and the reader ------------------------------------------------------------------------------

def test_a_certificate_built_from_content_is_valid_to_both_validators_and_reads_back():
    data = certificate_xml(content())
    assert CERTIFICATE_SCHEMA.root == "{urn:un:unece:uncefact:data:standard:SPSCertificate:17}SPSCertificate"
    second_validator("sps/certificate.xsd").validate(data)  # xmlschema, sandboxed: the imports resolve locally
    assert certificate_content(data) == content()
    exported = certificate_xml(content(unit="H87", quantity="12"), direction="export")
    assert etree.fromstring(exported).xpath("string(//ram:ConsignorSPSParty/ram:ID)", namespaces=NAMESPACES) \
        == holder()
    assert certificate_content(exported) == content(unit="H87", quantity="12")


def test_every_certificate_type_has_its_un_edifact_1001_code():
    assert TYPE_CODES == {"phytosanitary_certificate": "851", "health_certificate": "852",
                          "veterinary_certificate": "853"}
    re_export = edited(certificate_xml(content()), "//ram:TypeCode", "657")
    assert certificate_content(re_export)["type"] == "phytosanitary_certificate"
    with pytest.raises(ValueError, match="import_licence"):
        certificate_xml(content(type="import_licence"))


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"),
    (b"<rsm:SPSCertificate xmlns:rsm='urn:un:unece:uncefact:data:standard:SPSCertificate:17'>",
     NOT_WELL_FORMED),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', DOCTYPE),
    (b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>', DOCTYPE),
    (b"<Decisions xmlns='urn:tradehub:inspection:1'/>", UNEXPECTED_ROOT),
])
def test_hostile_and_malformed_certificates_are_refused_by_the_gate(data: bytes, code: str):
    assert refusal(data).code == code


def test_an_oversized_certificate_is_refused_before_it_is_parsed():
    padding = b" " * MAX_MESSAGE_BYTES
    data = certificate_xml(content()).replace(b"</rsm:SPSCertificate>", padding + b"</rsm:SPSCertificate>")
    found = refusal(data)
    assert found.code == TOO_LARGE and str(MAX_MESSAGE_BYTES) in found.reason


@pytest.mark.parametrize(("xpath", "text", "attributes", "named"), [
    ("//ram:ConsigneeSPSParty/ram:ID", "91350200MA2Y0U0X10", {}, "rsm:SPSConsignment/ram:ConsigneeSPSParty/ram:ID"),
    ("//ram:ConsigneeSPSParty/ram:ID", None, {"schemeID": "VAT"}, "ram:ConsigneeSPSParty/ram:ID"),
    ("//ram:ImportSPSCountry/ram:ID", "US", {}, "ram:ImportSPSCountry/ram:ID"),
    ("//ram:ExportSPSCountry/ram:ID", "XX", {}, "ram:ExportSPSCountry/ram:ID"),
    ("//ram:EndDateTime/udt:DateTimeString", "2026-02-01", {}, "ram:EffectiveSPSPeriod/ram:EndDateTime"),
    ("//ram:StartDateTime/udt:DateTimeString", "2026-02-30", {}, "ram:StartDateTime/udt:DateTimeString"),
    ("//ram:IssueDateTime/udt:DateTimeString", "2026-02-30T10:00:00Z", {}, "ram:IssueDateTime"),
    ("(//ram:ClassCode)[2]", "030", {}, "IncludedSPSTradeLineItem[2]/ram:ApplicableSPSClassification[1]/ram:ClassCode"),
    ("(//ram:SystemName)[3]", "EPPO", {}, "ram:IncludedSPSTradeLineItem[3]: no HS code"),
    ("(//ram:NetWeightMeasure)[2]", None, {"unitCode": "H87"}, "IncludedSPSTradeLineItem[2]/ram:NetWeightMeasure"),
    ("(//ram:NetWeightMeasure)[1]", None, {"unitCode": "ZZZ"}, "ram:NetWeightMeasure/@unitCode"),
    ("(//ram:NetWeightMeasure)[3]", None, {}, "IncludedSPSTradeLineItem[3]: no quantity"),
])
def test_a_certificate_the_hub_cannot_read_is_refused_naming_the_element(xpath, text, attributes, named):
    data = certificate_xml(content())
    found = refusal(edited(data, xpath, text, **attributes) if text or attributes else edited(data, xpath))
    assert found.code == SCHEMA_INVALID
    assert named in found.reason, found.reason


@pytest.mark.parametrize(("xpath", "text"), [
    ("//ram:TypeCode", "861"),  # a certificate of origin is no SPS certificate
    ("//rsm:SPSExchangedDocument/ram:ID", "PC/2026/1"),
    ("(//ram:NetWeightMeasure)[1]", "-5"),
    ("(//ram:NetWeightMeasure)[1]", "1.1234567"),
    ("//ram:ConsignorSPSParty/ram:Name", "   "),
])
def test_the_schema_refuses_what_no_licence_can_hold(xpath: str, text: str):
    found = refusal(edited(certificate_xml(content()), xpath, text))
    assert found.code == SCHEMA_INVALID and found.reason.startswith("line ")


def test_mixed_mass_units_add_up_in_the_finest_and_a_sum_too_long_is_refused():
    data = edited(certificate_xml(content(quantity="3", unit="KGM")), "(//ram:NetWeightMeasure)[1]", "1",
                  unitCode="TNE")
    assert {key: certificate_content(data)[key] for key in ("quantity", "unit")} == {"quantity": "1002",
                                                                                      "unit": "KGM"}
    data = edited(data, "(//ram:NetWeightMeasure)[2]", "500", unitCode="GRM")
    assert {key: certificate_content(data)[key] for key in ("quantity", "unit")} == {"quantity": "1001500",
                                                                                      "unit": "GRM"}
    huge = edited(edited(certificate_xml(content(quantity="2", unit="TNE")), "(//ram:NetWeightMeasure)[1]",
                         "9999999999", unitCode="TNE"), "(//ram:NetWeightMeasure)[2]", "0.5", unitCode="GRM")
    found = refusal(huge)
    assert found.code == SCHEMA_INVALID and "rsm:SPSConsignment: the items' quantities add up to" in found.reason


@st.composite
def contents(draw) -> dict:
    start = draw(st.dates(date(2000, 1, 1), date(2098, 12, 31)))
    digits = draw(st.integers(1, 16))
    places = draw(st.integers(0, min(6, digits - 1)))
    number = Decimal(draw(st.integers(1, 10 ** digits - 1))).scaleb(-places)
    prefix = st.integers(1, 5).flatmap(lambda pairs: st.from_regex(rf"[0-9]{{{2 * pairs}}}", fullmatch=True))
    return {
        "number": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,34}", fullmatch=True)),
        "type": draw(st.sampled_from(sorted(TYPE_CODES))),
        "issuer": "inspection",
        "holder": holder(draw(st.from_regex(r"[0-9]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{9}", fullmatch=True))),
        "hs_scope": draw(st.lists(prefix, min_size=1, max_size=50, unique=True)),
        "quantity": format(number.normalize(), "f"),
        "unit": draw(st.sampled_from(["KGM", "GRM", "TNE", "H87", "HEA", "LTR", "MTQ", "NAR"])),
        "valid_from": start.isoformat(),
        "valid_to": (start + timedelta(days=draw(st.integers(0, 3650)))).isoformat(),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents(), st.sampled_from(["import", "export"]), st.text(max_size=600))
def test_content_to_certificate_to_content_is_the_identity(licence: dict, direction: str, name: str):
    data = certificate_xml(licence, direction=direction, holder_name=name or "x", partner_name=name or "y",
                           description=name)
    assert certificate_content(data) == licence


# ---- signatures ---------------------------------------------------------------------------------------------

def test_a_signed_certificate_verifies_reads_back_and_names_its_key_and_a_tampered_one_does_not():
    inspection, customs = fresh_signer("inspection"), fresh_signer("customs")
    trusted = {inspection.fingerprint: TrustedKey.of(inspection.certificate)}
    signed = inspection.sign(certificate_xml(content()))
    assert verified_certificate(signed, trusted) == (content(), inspection.fingerprint)
    assert signed_certificate_content(signed) == content()
    with pytest.raises(Refused) as caught:
        verified_certificate(customs.sign(certificate_xml(content())), trusted)
    assert caught.value.code == BAD_SIGNATURE
    tampered = signed.replace(b">1000.5<", b">9000.5<") if b">1000.5<" in signed else signed.replace(
        b">333.5<", b">933.5<", 1)
    assert tampered != signed
    with pytest.raises(Refused) as caught:
        verified_certificate(tampered, trusted)
    assert caught.value.code == BAD_SIGNATURE and "changed after it was signed" in caught.value.reason


# ---- the inbox, on both stores ------------------------------------------------------------------------------

@pytest.fixture
def keys(hub: Hub) -> Keys:
    return Keys.load(hub.settings.keys_dir, ["inspection", "customs"])  # generated and registered with the hub


def test_a_certificate_becomes_a_licence_once_keeping_the_signed_xml(hub: Hub, keys: Keys):
    inbox = build_inbox(hub)
    issued = issue_certificate(content(), keys)
    assert inbox.receive("inspection", issued.body).outcome == APPLIED
    assert inbox.receive("inspection", issued.body).outcome == UNCHANGED  # delivered again
    resent = issue_certificate(content(), keys, issued_at=datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert resent.body != issued.body and resent.message_id == issued.message_id
    assert inbox.receive("inspection", resent.body).outcome == UNCHANGED  # the same certificate, sent again
    licence = hub.declarations.get_licence("PC-2026-0001", "inspection")
    assert licence.content() == content() and licence.version == 1
    assert (licence.source, licence.issued_by) == ("broker", "agency:inspection")
    assert licence.signature == {"format": "xmldsig", "value": base64.b64encode(issued.body).decode(),
                                 "key": keys.signers["inspection"].fingerprint}
    hub.declarations.seal.verify("inspection", licence.content(), licence.signature)  # as on every use
    with pytest.raises(ValueError):
        hub.declarations.seal.verify("inspection", content(quantity="9999"), licence.signature)


def test_the_same_number_with_other_content_is_a_conflict_and_changes_nothing(hub: Hub, keys: Keys):
    inbox = build_inbox(hub)
    assert inbox.receive("inspection", issue_certificate(content(), keys).body).outcome == APPLIED
    verdict = inbox.receive("inspection", issue_certificate(content(quantity="5000"), keys).body)
    assert (verdict.outcome, verdict.code) == (DEAD, LICENCE_CONFLICT)
    assert "PC-2026-0001" in verdict.reason
    assert hub.declarations.get_licence("PC-2026-0001", "inspection").quantity == "1000.5"


def test_only_the_inspection_agency_issues_certificates(hub: Hub, keys: Keys):
    inbox = build_inbox(hub)
    by_customs = keys.signers["customs"].sign(certificate_xml(content()))
    on_its_subject = inbox.receive("customs", by_customs)  # customs' own key: the signature holds, the role not
    assert (on_its_subject.outcome, on_its_subject.code) == (DEAD, NOT_ISSUER)
    assert "only inspection issues" in on_its_subject.reason
    as_inspection = inbox.receive("inspection", by_customs)  # on inspection's subject: not inspection's key
    assert (as_inspection.outcome, as_inspection.code) == (DEAD, BAD_SIGNATURE)
    with pytest.raises(LicenceNotFound):
        hub.declarations.get_licence("PC-2026-0001")


def test_a_certificate_changed_after_signing_or_unsigned_or_unreadable_is_dead(hub: Hub, keys: Keys):
    inbox = build_inbox(hub)
    signed = issue_certificate(content(), keys).body
    tampered = signed.replace(holder().encode(), holder("91350200MA2Y0U0X2").encode())
    verdict = inbox.receive("inspection", tampered)
    assert (verdict.outcome, verdict.code) == (DEAD, BAD_SIGNATURE)
    assert inbox.receive("inspection", certificate_xml(content())).code == "unsigned"
    wrong_holder = keys.signers["inspection"].sign(edited(certificate_xml(content()), "//ram:ImportSPSCountry/ram:ID",
                                                          "JP"))
    verdict = inbox.receive("inspection", wrong_holder)
    assert (verdict.code, "ram:ImportSPSCountry/ram:ID" in verdict.reason) == (SCHEMA_INVALID, True)
    with_entity = signed.replace(b"<?xml version='1.0' encoding='UTF-8'?>",
                                 b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'boom'>]>")
    assert inbox.receive("inspection", with_entity).code in (DOCTYPE, ENTITY)
    with pytest.raises(LicenceNotFound):
        hub.declarations.get_licence("PC-2026-0001")


def test_a_signature_moved_inside_the_certificate_is_refused(hub: Hub, keys: Keys):
    """A wrapping attempt: the signature must be the root's last child."""
    inbox = build_inbox(hub)
    root = etree.fromstring(issue_certificate(content(), keys).body)
    signature = root.find(f"{{{DSIG}}}Signature")
    root.remove(signature)
    root[0].append(signature)
    verdict = inbox.receive("inspection", etree.tostring(root))
    assert (verdict.outcome, verdict.code) == (DEAD, BAD_SIGNATURE)


# ---- over a real nats-server --------------------------------------------------------------------------------

@pytest.mark.broker
@pytest.mark.slow
def test_over_nats_the_simulated_agency_issues_a_certificate_and_the_hub_makes_it_a_licence(tmp_path: Path):
    from messaging.broker import DEAD_STREAM, ensure_streams
    from messaging.consumers import consume
    from simulators.runner import publish_answers

    from .test_broker_flow import broker_call, started_nats, stream_messages, wait_for

    nats = started_nats(tmp_path / "jetstream")
    hub = build_hub(Settings(data_dir=tmp_path, secret=SECRET, broker_url=nats.url))
    stop = threading.Event()
    worker = None
    try:
        keys = Keys.load(hub.settings.keys_dir, ["inspection", "customs"])
        broker_call(nats.url, lambda client: ensure_streams(client.jetstream()))
        worker = threading.Thread(target=lambda: asyncio.run(
            consume(nats.url, build_inbox(hub), ["inspection", "customs"], stop, retry_delay=0.1)))
        worker.start()
        issued = issue_certificate(content(), keys)
        publish_answers(nats.url, "inspection", [issued, issued])  # the second is the broker's duplicate

        def licence():
            try:
                return hub.declarations.get_licence("PC-2026-0001", "inspection")
            except LicenceNotFound:
                return None

        wait_for(lambda: licence() is not None)
        assert licence().content() == content() and licence().source == "broker"
        other = issue_certificate(content(quantity="1"), keys)
        publish_answers(nats.url, "inspection", [other])
        by_customs = keys.signers["customs"].sign(certificate_xml(content(number="PC-2026-0002")))
        publish_answers(nats.url, "customs", [type(issued)("customs-certificate-1", by_customs)])
        wait_for(lambda: len(stream_messages(nats.url, DEAD_STREAM)) == 2)
        dead = {headers["Tradehub-Dead-Code"]: subject for subject, headers, _ in
                stream_messages(nats.url, DEAD_STREAM)}
        assert dead == {LICENCE_CONFLICT: "tradehub.dead.inspection", NOT_ISSUER: "tradehub.dead.customs"}
        assert licence().version == 1 and licence().quantity == "1000.5"
        with pytest.raises(LicenceNotFound):
            hub.declarations.get_licence("PC-2026-0002")
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=15)
        hub.close()
        nats.stop()
