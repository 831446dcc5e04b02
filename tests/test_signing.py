"""Signed messages: the XMLDSig profile both ways with signxml, tampering and wrapping refused, the registry
(rotation, retirement, reload, weak or expired certificates), dispatch signing, the inbox's `unsigned` and
`bad-signature` dead letters on SQLite and PostgreSQL, and the simulated agencies signing their answers."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import stat
from pathlib import Path

import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.keyring import CertificateRefused, Registry, hub_signer, register_simulated, simulated_agency
from adapters.messages import change_of
from adapters.outbound import messages_for
from adapters.signing import DSIG, SIGNATURE, Signer, TrustedKey, verify
from adapters.xml import (
    BAD_SIGNATURE,
    REFUSAL_CODES,
    UNSIGNED,
    Refused,
    admit_any,
    compiled_schema,
    keep_built_trees,
)
from followers.dispatch import dispatches
from followers.runner import Followers
from hub.declarations import AGENCIES
from messaging.broker import headers_of
from messaging.outcomes import DEAD
from projections.messages import recorded_messages
from simulators.agencies import INBOX, Keys, answer
from tradehub.bootstrap import Hub, build_inbox
from tradehub.cli import main

from .messaging import EXAMPLES, Outbox

NOW = datetime.datetime.now(datetime.UTC)


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def certificate_for(key, name: str = "agency", *, days: int = 30, start: datetime.datetime | None = None
                    ) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = start or NOW - datetime.timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def new_signer(kind: str = "ec") -> Signer:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    return Signer(key, certificate_for(key))


def trust(*signers: Signer) -> dict[str, TrustedKey]:
    return {signer.fingerprint: TrustedKey.of(signer.certificate) for signer in signers}


EC, RSA = new_signer("ec"), new_signer("rsa")


@pytest.fixture(scope="module")
def outbound() -> list:
    """Every agency's messages for the examples, unsigned, as the mappings build them."""
    from hub.declarations import Declarations

    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    messages = []
    for name in ("goods-import.json", "goods-export.json", "vessel-arrival.json"):
        change = change_of(app.prepare_submission(example(name)).collect_events()[0], None)
        messages.extend(messages_for(change, app.routing, AGENCIES))
    return messages


def schema_of(message) -> object:
    root = etree.fromstring(message.body)
    return next(schema for schemas in INBOX.values() for schema in schemas if schema.root == root.tag)


# ---- the profile, and interop with signxml both ways ------------------------------------------------------

@pytest.mark.parametrize("signer", [EC, RSA], ids=["ecdsa-p256", "rsa-2048"])
def test_a_signed_message_verifies_and_detaches_to_exactly_what_was_signed(outbound, signer: Signer):
    for message in outbound:
        signed = signer.sign(message.body)
        assert signed.count(b"<ds:Signature ") == 1 and signed.startswith(message.body[:40])
        root = verify(signed, trust(signer))
        assert etree.tostring(root, method="c14n") == etree.tostring(etree.fromstring(message.body), method="c14n")


def test_every_signed_outbound_message_still_validates_against_its_published_schema(outbound):
    for message in outbound:
        root = verify(EC.sign(message.body), trust(EC))
        schema = schema_of(message)
        validator = compiled_schema(schema)
        assert validator.validate(root), (message.filename, validator.error_log.last_error)
        # what the agency's own gate does with it, from bytes
        admit_any(etree.tostring(root), [schema])


@pytest.mark.parametrize("signer", [EC, RSA], ids=["ecdsa-p256", "rsa-2048"])
def test_signxml_verifies_the_hubs_signatures(outbound, signer: Signer):
    for message in outbound[:6]:
        result = signxml.XMLVerifier().verify(signer.sign(message.body), x509_cert=pem(signer.certificate))
        assert etree.tostring(result.signed_xml, method="c14n", exclusive=True) == etree.tostring(
            etree.fromstring(message.body), method="c14n", exclusive=True)


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_the_hub_verifies_signxmls_signatures(outbound, kind: str):
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    certificate = certificate_for(key)
    xml_signer = signxml.XMLSigner(
        method=signxml.methods.enveloped, digest_algorithm=signxml.DigestAlgorithm.SHA256,
        signature_algorithm=(signxml.SignatureMethod.ECDSA_SHA256 if kind == "ec"
                             else signxml.SignatureMethod.RSA_SHA256),
        c14n_algorithm=signxml.CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    trusted = {TrustedKey.of(certificate).fingerprint: TrustedKey.of(certificate)}
    for message in outbound[:6]:
        signed = etree.tostring(xml_signer.sign(etree.fromstring(message.body), key=key, cert=pem(certificate)))
        root = verify(signed, trusted)
        assert root.find(f".//{SIGNATURE}") is None
        with pytest.raises(Refused) as refused:  # and only with the registered certificate
            verify(signed, trust(EC))
        assert refused.value.code == BAD_SIGNATURE


def test_the_codes_are_part_of_the_dead_letter_contract():
    assert {UNSIGNED, BAD_SIGNATURE} <= set(REFUSAL_CODES)
    assert (UNSIGNED, BAD_SIGNATURE) == ("unsigned", "bad-signature")


def test_a_message_is_never_signed_twice(outbound):
    with pytest.raises(ValueError, match="signed already"):
        EC.sign(EC.sign(outbound[0].body))


# ---- what is refused ---------------------------------------------------------------------------------------

def refusal(data: bytes, trusted=None) -> str:
    with pytest.raises(Refused) as refused:
        verify(data, trust(EC) if trusted is None else trusted)
    assert "\n" not in refused.value.reason
    return refused.value.code


def test_an_unsigned_message_is_unsigned(outbound):
    assert refusal(outbound[0].body) == UNSIGNED


def test_the_gate_still_comes_first():
    assert refusal(b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x 'y'>]><d>&x;</d>") == "doctype"
    assert refusal(b"") == "empty"


def test_an_unregistered_key_and_a_retired_one_are_refused(outbound):
    other = new_signer()
    assert refusal(other.sign(outbound[0].body)) == BAD_SIGNATURE
    assert refusal(EC.sign(outbound[0].body), trusted={}) == BAD_SIGNATURE


def test_a_certificate_in_keyinfo_is_never_trusted_for_carrying_it(outbound):
    # An attacker signs with its own key and puts its certificate in KeyInfo: only the registry decides.
    forger = new_signer()
    signed = forger.sign(outbound[0].body)
    assert refusal(signed) == BAD_SIGNATURE
    # ... and swapping in the registered certificate does not make the forger's value verify
    forged = signed.replace(_certificate_text(forger), _certificate_text(EC))
    assert refusal(forged) == BAD_SIGNATURE


def _certificate_text(signer: Signer) -> bytes:
    return base64.b64encode(signer.certificate.public_bytes(serialization.Encoding.DER))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_change_to_text_or_attributes_is_a_bad_signature(outbound, data):
    message = data.draw(st.sampled_from(outbound))
    signed = EC.sign(message.body)
    root = etree.fromstring(signed)
    content = [element for element in root.iter() if not element.tag.startswith(f"{{{DSIG}}}")]
    element = data.draw(st.sampled_from(content))
    change = data.draw(st.sampled_from(["text", "attribute", "new-attribute"]))
    if change == "text" and (element.text or "").strip():
        text = element.text
        at = data.draw(st.integers(0, len(text) - 1))
        replacement = data.draw(st.characters(codec="utf-8", categories=["L", "N", "P"]).filter(
            lambda character: character != text[at]))
        element.text = text[:at] + replacement + text[at + 1:]
    elif change == "attribute" and element.attrib:
        name = data.draw(st.sampled_from(sorted(element.attrib)))
        element.set(name, element.get(name) + data.draw(st.sampled_from(["0", "X", " "])))
    else:
        element.set("tampered", data.draw(st.sampled_from(["", "1"])))
    assert refusal(etree.tostring(root)) == BAD_SIGNATURE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_flip_in_a_signed_message_is_refused_or_changes_nothing_signed(outbound, data):
    message = data.draw(st.sampled_from(outbound))
    signed = bytearray(EC.sign(message.body))
    at = data.draw(st.integers(0, len(signed) - 1))
    signed[at] ^= data.draw(st.integers(1, 255))
    try:
        root = verify(bytes(signed), trust(EC))
    except Refused:
        return
    # Accepted only if canonicalisation erased the flip (quotes, white space inside a tag, the declaration):
    # what was signed is then exactly what is read.
    assert etree.tostring(root, method="c14n", exclusive=True) == etree.tostring(
        etree.fromstring(message.body), method="c14n", exclusive=True)


def test_wrapping_attacks_are_refused(outbound):
    body = outbound[0].body
    signed = EC.sign(body)
    root = etree.fromstring(signed)
    signature = root.find(SIGNATURE)
    # 1. the signed document moved inside a new root, beside forged content
    wrapper = etree.Element(root.tag, nsmap=root.nsmap)
    wrapper.append(etree.fromstring(etree.tostring(root)))
    assert refusal(etree.tostring(wrapper)) == BAD_SIGNATURE
    # 2. the original content hidden in a ds:Object, the visible content changed
    wrapped = etree.fromstring(signed)
    wrapped_signature = wrapped.find(SIGNATURE)
    hidden = etree.SubElement(wrapped_signature, f"{{{DSIG}}}Object")
    hidden.append(etree.fromstring(body))
    next(element for element in wrapped.iter() if (element.text or "").strip() and element is not wrapped).text = "X"
    assert refusal(etree.tostring(wrapped)) == BAD_SIGNATURE
    # 3. a second signature
    twice = etree.fromstring(signed)
    twice.insert(0, etree.fromstring(etree.tostring(signature)))
    assert refusal(etree.tostring(twice)) == BAD_SIGNATURE
    # 4. a reference to an id, not the whole document
    by_id = signed.replace(b'<ds:Reference URI="">', b'<ds:Reference URI="#part">')
    assert refusal(by_id) == BAD_SIGNATURE
    # 5. the signature deeper in the document than the root's own children
    deeper = etree.fromstring(signed)
    moved = deeper.find(SIGNATURE)
    deeper[0].append(moved)
    assert refusal(etree.tostring(deeper)) == BAD_SIGNATURE


@pytest.mark.parametrize(("old", "new"), [
    (b"xml-exc-c14n#\"></ds:CanonicalizationMethod>", b"xml-c14n-20010315\"></ds:CanonicalizationMethod>"),
    (b"xmldsig-more#ecdsa-sha256", b"xmldsig-more#ecdsa-sha1"),
    (b"xmlenc#sha256", b"xmldsig#sha1"),
    (b"<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></ds:Transform>", b""),
])
def test_anything_outside_the_profile_is_refused(outbound, old: bytes, new: bytes):
    signed = EC.sign(outbound[0].body)
    assert old in signed
    assert refusal(signed.replace(old, new, 1)) == BAD_SIGNATURE


def test_an_expired_registered_certificate_is_refused(outbound):
    key = ec.generate_private_key(ec.SECP256R1())
    old = Signer(key, certificate_for(key, start=NOW - datetime.timedelta(days=40), days=30))
    assert refusal(old.sign(outbound[0].body), trust(old)) == BAD_SIGNATURE


# ---- the registry -------------------------------------------------------------------------------------------

def test_keys_are_generated_once_private_and_the_same_on_every_start(tmp_path: Path):
    keys = tmp_path / "keys"
    first, again = hub_signer(keys), hub_signer(keys)
    assert first.fingerprint == again.fingerprint
    agency = simulated_agency(keys, "customs")
    assert agency.fingerprint == simulated_agency(keys, "customs").fingerprint
    for path in [keys, *keys.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name == "key.pem":
            assert mode == 0o600, path
        else:
            assert not mode & 0o022, path
    assert agency.fingerprint in Registry(keys).keys_for("customs")


def test_rotation_two_current_certificates_both_verify_and_a_retired_one_is_refused(tmp_path: Path, outbound):
    registry = Registry(tmp_path)
    old, new = new_signer(), new_signer("rsa")
    registry.register("customs", pem(old.certificate))
    registry.register("customs", pem(new.certificate))
    body = outbound[0].body
    for signer in (old, new):
        verify(signer.sign(body), registry.keys_for("customs"))
    assert not registry.keys_for("port")  # one agency's certificate is not another's
    registry.retire("customs", old.fingerprint[:12])
    with pytest.raises(Refused) as refused:
        verify(old.sign(body), registry.keys_for("customs"))
    assert refused.value.code == BAD_SIGNATURE
    verify(new.sign(body), registry.keys_for("customs"))
    assert {(entry.fingerprint, entry.status) for entry in registry.entries("customs")} == {
        (old.fingerprint, "retired"), (new.fingerprint, "current")}


def test_a_running_reader_sees_a_registration_without_restart(tmp_path: Path):
    reader, writer = Registry(tmp_path), Registry(tmp_path)
    assert not reader.keys_for("port")
    signer = new_signer()
    writer.register("port", pem(signer.certificate))
    assert signer.fingerprint in reader.keys_for("port")
    writer.retire("port", signer.fingerprint)
    assert not reader.keys_for("port")


def weak_certificates() -> list[tuple[str, bytes, str]]:
    weak_rsa = rsa.generate_private_key(65537, 1024)
    weak_curve = ec.generate_private_key(ec.SECP192R1())
    edwards = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    ed_certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                      .public_key(edwards.public_key()).serial_number(1).not_valid_before(NOW)
                      .not_valid_after(NOW + datetime.timedelta(days=1)).sign(edwards, None))
    good = ec.generate_private_key(ec.SECP256R1())
    return [
        ("rsa-1024", pem(certificate_for(weak_rsa)), "1024 bits: too weak"),
        ("p-192", pem(certificate_for(weak_curve)), "secp192r1 is too weak"),
        ("ed25519", pem(ed_certificate), "not in the signing profile"),
        ("expired", pem(certificate_for(good, start=NOW - datetime.timedelta(days=10), days=2)), "expired on"),
        ("not-yet", pem(certificate_for(good, start=NOW + datetime.timedelta(days=2))), "not valid before"),
        ("garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a PEM certificate"),
        ("two", pem(certificate_for(good)) * 2, "holds 2 certificates"),
    ]


@pytest.mark.parametrize(("name", "data", "reason"), weak_certificates(), ids=lambda value: str(value)[:12])
def test_a_malformed_expired_or_weak_certificate_is_refused_naming_why(tmp_path: Path, name, data, reason):
    with pytest.raises(CertificateRefused, match=reason):
        Registry(tmp_path).register("customs", data)
    assert not Registry(tmp_path).entries()


def test_an_unknown_agency_and_an_ambiguous_fingerprint_are_refused(tmp_path: Path):
    registry = Registry(tmp_path)
    with pytest.raises(CertificateRefused, match="no agency 'nobody'"):
        registry.register("nobody", pem(EC.certificate))
    with pytest.raises(CertificateRefused, match="matches no current certificate"):
        registry.retire("customs", "0" * 64)


def test_the_keys_commands(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("TRADEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRADEHUB_KEYS_DIR", raising=False)
    assert main(["keys", "hub-certificate"]) == 0
    hub_pem = capsys.readouterr().out.encode()
    assert x509.load_pem_x509_certificate(hub_pem)
    (tmp_path / "agency.pem").write_bytes(pem(EC.certificate))
    assert main(["keys", "register", "customs", str(tmp_path / "agency.pem")]) == 0
    assert EC.fingerprint in capsys.readouterr().out
    assert main(["keys", "list", "customs"]) == 0
    assert "current" in capsys.readouterr().out
    (tmp_path / "weak.pem").write_bytes(pem(certificate_for(rsa.generate_private_key(65537, 1024))))
    assert main(["keys", "register", "port", str(tmp_path / "weak.pem")]) == 2
    assert "too weak" in capsys.readouterr().err
    assert main(["keys", "retire", "customs", EC.fingerprint]) == 0
    assert "no current certificate" in capsys.readouterr().err
    assert oct(os.stat(tmp_path / "keys" / "hub" / "key.pem").st_mode & 0o777) == "0o600"


# ---- dispatch, inbox and simulators, on both stores -----------------------------------------------------------

def test_dispatch_signs_every_message_and_keeps_its_id(hub: Hub):
    signer = hub_signer(hub.settings.keys_dir)
    unsigned_box, signed_box = Outbox(), Outbox()
    ident = hub.declarations.submit(example("goods-import.json")).declaration.id
    Followers(hub.declarations, hub.views, dispatches(hub.declarations, AGENCIES, signed_box, signer=signer)
              ).catch_up()
    # the same change, built by a dispatch that does not sign: the same ids and contents
    [event] = hub.declarations.events.get(ident, lte=1)
    change = change_of(event, None)
    for dispatch in dispatches(hub.declarations, AGENCIES, unsigned_box):
        if change.action_for(dispatch.agency):
            unsigned_box.sent.extend(dispatch.build(change))
    assert [message.message_id for message in signed_box.sent] == [message.message_id for message in unsigned_box.sent]
    for unsigned, signed in zip(unsigned_box.sent, signed_box.sent, strict=True):
        root = verify(signed.body, trust(signer))
        assert etree.tostring(root, method="c14n") == etree.tostring(etree.fromstring(unsigned.body), method="c14n")
    recorded = {row["message_id"]: row["body"] for row in recorded_messages(hub.views, str(ident))}
    assert all(recorded[message.message_id] == message.body.decode() for message in signed_box.sent)


def test_an_unsigned_or_badly_signed_answer_is_dead_lettered_and_changes_nothing(hub: Hub):
    keys = Keys.load(hub.settings.keys_dir, AGENCIES)
    inbox = build_inbox(hub)
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)
    outbox = Outbox()
    Followers(hub.declarations, hub.views, dispatches(hub.declarations, ["inspection"], outbox,
                                                      signer=hub_signer(hub.settings.keys_dir))).catch_up()
    [message] = outbox.sent
    receipt, decision = answer("inspection", message.body, headers_of(message), keys=keys)
    unsigned = etree.tostring(verify(receipt.body, trust(keys.signers["inspection"])))
    position = hub.declarations.recorder.max_notification_id()
    verdict = inbox.receive("inspection", unsigned)
    assert (verdict.outcome, verdict.code) == (DEAD, UNSIGNED)
    forged = receipt.body.replace(ident.encode(), b"00000000-0000-5000-8000-000000000000")
    assert (inbox.receive("inspection", forged).code) == BAD_SIGNATURE
    other = new_signer()
    assert inbox.receive("inspection", other.sign(unsigned)).code == BAD_SIGNATURE
    # another agency's key does not speak for inspection
    assert inbox.receive("inspection", keys.signers["customs"].sign(unsigned)).code == BAD_SIGNATURE
    assert hub.declarations.recorder.max_notification_id() == position
    # the genuine answers apply, and the record keeps them as signed
    assert inbox.receive("inspection", receipt.body).outcome == "applied"
    assert inbox.receive("inspection", decision.body).outcome == "applied"
    assert hub.declarations.get(ident).agencies["inspection"]["status"] == "released"


def test_the_simulated_agencies_refuse_what_the_hub_did_not_sign(hub: Hub, outbound):
    keys = Keys.load(hub.settings.keys_dir, ["customs"])
    message = next(message for message in outbound if message.agency == "customs")
    with pytest.raises(Refused) as refused:
        answer("customs", message.body, headers_of(message), keys=keys)
    assert refused.value.code == UNSIGNED
    with pytest.raises(Refused) as refused:
        answer("customs", new_signer().sign(message.body), headers_of(message), keys=keys)
    assert refused.value.code == BAD_SIGNATURE
    replies = answer("customs", hub_signer(hub.settings.keys_dir).sign(message.body), headers_of(message), keys=keys)
    for reply in replies:
        verify(reply.body, Registry(hub.settings.keys_dir).keys_for("customs"))


def test_a_whole_signed_flow_releases_the_examples(hub: Hub):
    signer = hub_signer(hub.settings.keys_dir)
    keys = Keys.load(hub.settings.keys_dir, AGENCIES)
    register_simulated(hub.settings.keys_dir, AGENCIES)
    inbox = build_inbox(hub)
    outbox = Outbox()
    dispatch = Followers(hub.declarations, hub.views, dispatches(hub.declarations, AGENCIES, outbox, signer=signer))
    idents = [str(hub.declarations.submit(example(name)).declaration.id)
              for name in ("goods-import.json", "goods-export.json", "vessel-arrival.json")]
    for _ in range(12):
        hub.runner.catch_up()
        dispatch.catch_up()
        sent, outbox.sent = outbox.sent, []
        if not sent:
            break
        for message in sent:
            for reply in answer(message.agency, message.body, headers_of(message), keys=keys):
                verdict = inbox.receive(message.agency, reply.body)
                assert verdict.outcome != DEAD, verdict
    assert {hub.declarations.get(ident).status for ident in idents} == {"released"}


def test_the_bench_reports_signing_and_verification_against_raw_lxml(capsys):
    assert main(["bench", "messages", "--count", "10", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^hub map \+ validate \+ sign\s+\d+ messages/s\s+[\d.]+% of raw build", out, re.MULTILINE)
    assert re.search(r"^raw lxml parse\s+\d+ answers/s$", out, re.MULTILINE)
    rows = re.findall(r"^hub verify \+ gate \+ read\s+\d+ answers/s\s+[\d.]+% of raw parse", out, re.MULTILINE)
    assert len(rows) == 2  # the simulated agencies' ECDSA answers, and the same answers signed with RSA-2048
    assert re.search(r"^the same answers signed with RSA-2048, \d+ bytes", out, re.MULTILINE)


# ---- signing from the tree the mapping built, reading from the tree the gate parsed ---------------------------

def _digest_and_reference(signed: bytes) -> tuple[str, bytes]:
    root = etree.fromstring(signed)
    return root.find(f".//{{{DSIG}}}DigestValue").text, etree.tostring(verify(signed, trust(EC)), method="c14n")


def test_signing_from_the_built_tree_signs_exactly_what_signing_the_bytes_signs():
    """Each message is signed from its tree right after it is built (adapters.xml.built_tree), and again from a
    copy of its bytes (parsed): the same digest, and both verify, here and with signxml."""
    from hub.declarations import Declarations

    keep_built_trees()  # as the first signature on a thread does
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    signed_from_tree = 0
    for name in ("goods-import.json", "goods-export.json", "vessel-arrival.json"):
        change = change_of(app.prepare_submission(example(name)).collect_events()[0], None)
        for message in messages_for(change, app.routing, AGENCIES):
            copy = bytes(bytearray(message.body))  # equal bytes, another object: never taken for the built tree
            signed_from_tree += built_tree_of(message.body)
            from_tree, from_bytes = EC.sign(message.body), EC.sign(copy)
            assert not built_tree_of(message.body)  # taken
            assert _digest_and_reference(from_tree) == _digest_and_reference(from_bytes), message.filename
            assert from_tree.startswith(message.body.rstrip()[:-40])
            signxml.XMLVerifier().verify(from_tree, x509_cert=pem(EC.certificate))
    assert signed_from_tree >= 8


def _exclusive_c14n_of_parsed(body: bytes) -> bytes:
    return etree.tostring(etree.fromstring(body), method="c14n", exclusive=True, with_comments=False)


def test_messages_in_one_default_namespace_are_hashed_as_written_and_others_canonicalised():
    """S8: the byte path is taken for messages in one default namespace without empty elements (port,
    inspection, the notices) and gives exactly libxml2's canonical form of the parsed bytes; customs (three
    namespaces on the root), maritime and border (empty elements, unsorted attributes) go through the tree."""
    from adapters.signing import _canonical_as_written
    from hub.declarations import Declarations

    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    taken: dict[str, bool] = {}
    for name in ("goods-import.json", "goods-export.json", "vessel-arrival.json"):
        change = change_of(app.prepare_submission(example(name)).collect_events()[0], None)
        for message in messages_for(change, app.routing, AGENCIES):
            canonical = _canonical_as_written(message.body)
            taken[message.agency] = taken.get(message.agency, False) or canonical is not None
            if canonical is not None:
                assert bytes(canonical) == _exclusive_c14n_of_parsed(message.body), message.filename
    assert taken == {"customs": False, "inspection": True, "port": True, "maritime": False, "border": False}


_XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]).filter(
    lambda character: character in "\t\n\r" or (character >= " " and character not in "\ufffe\uffff")), max_size=12)
_TRICKY_TEXT = st.one_of(_XML_TEXT, st.sampled_from(
    ["", " ", "a > b", "x&y", 'say "hi" now', "it's", "<a/>", "\r\n", "\t", "xml:lang", "xmlns", 'a" b="c',
     "é€😀", "]]>", "&#13;", "?", "!", "<!--", "<?pi?>", "p:q", '" z']))
_ATTRIBUTE_NAMES = ["a", "b", "id", "unitCode", "schemeID", "schemeName", "Z", "z0"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_byte_path_gives_libxml2s_canonical_form_or_declines(data):
    """S8, for any tree check_outbound may serialise: whenever the signer hashes a message as written, the
    bytes it hashes are exactly the exclusive canonical form of the message parsed (what signxml and the
    agencies compute); otherwise it declines and the tree is canonicalised."""
    from adapters.signing import _canonical_as_written

    # Half the trees are like the messages (one default namespace, elements only), where the byte path applies
    # unless text or attributes hold what it declines; the others mix in what it must decline.
    plain = data.draw(st.booleans())
    namespaces = {None: "urn:x:a"} if plain else data.draw(st.sampled_from(
        [{None: "urn:x:a"}, {}, {None: "urn:x:a", "p": "urn:x:p"}, {"p": "urn:x:p"}, {None: "relative"}]))
    text = st.one_of(_XML_TEXT, st.text("abc 0\"'", max_size=6)) if plain else _TRICKY_TEXT
    prefix_root = "p" in namespaces and None not in namespaces
    uri = namespaces.get("p" if prefix_root else None)
    qualify = (lambda tag: f"{{{uri}}}{tag}") if uri else (lambda tag: tag)
    root = etree.Element(qualify("Root"), nsmap=namespaces)
    elements = [root]
    for _ in range(data.draw(st.integers(0, 8))):
        parent = data.draw(st.sampled_from(elements))
        kind = "element" if plain else data.draw(
            st.sampled_from(["element"] * 8 + ["other-namespace", "comment", "pi", "none"]))
        if kind == "comment":
            parent.append(etree.Comment(data.draw(st.sampled_from(["note", "x"]))))
            continue
        if kind == "pi":
            parent.append(etree.ProcessingInstruction("pi", "x"))
            continue
        tag = "{urn:x:other}Other" if kind == "other-namespace" else ("Plain" if kind == "none" else qualify("E"))
        child = etree.SubElement(parent, tag)
        names = data.draw(st.lists(st.sampled_from(_ATTRIBUTE_NAMES), unique=True, max_size=3))
        if plain and data.draw(st.booleans()):
            names.sort()
        for name in names:  # in the drawn order: the writer keeps it, canonical form sorts
            child.set(name, data.draw(text))
        if not plain and data.draw(st.booleans()):
            child.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        if plain or data.draw(st.integers(0, 4)):
            child.text = data.draw(text) or "x"  # an empty leaf is written <E/>: declined, drawn elsewhere
        elements.append(child)
    if data.draw(st.booleans()):
        root.text = data.draw(text)
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    canonical = _canonical_as_written(body)
    event("hashed as written" if canonical is not None else "declined")
    if canonical is not None:
        assert bytes(canonical) == _exclusive_c14n_of_parsed(body)


def built_tree_of(body: bytes) -> bool:
    """Whether `body`'s tree is waiting for the signer (without taking it)."""
    from adapters import xml

    built = getattr(xml._local, "built", {})
    return id(body) in built and built[id(body)][0] is body


def test_a_built_tree_is_handed_out_once_only_for_the_very_bytes_and_only_a_few_are_kept(outbound):
    from adapters.xml import _BUILT_KEPT, Schema, built_tree, check_outbound

    keep_built_trees()
    message = outbound[0]
    schema = Schema(schema_of(message).name, etree.fromstring(message.body).tag)
    trees = [etree.fromstring(message.body, etree.XMLParser(remove_blank_text=True)) for _ in range(_BUILT_KEPT + 2)]
    bodies = [check_outbound(tree, schema) for tree in trees]
    assert all(body == message.body for body in bodies)  # the same bytes as the mapping's, each its own object
    assert built_tree(bytes(bytearray(bodies[-1]))) is None  # equal bytes are not the bytes
    assert built_tree(bodies[0]) is None and built_tree(bodies[1]) is None  # the oldest are let go
    assert built_tree(bodies[-1]) is trees[-1]
    assert built_tree(bodies[-1]) is None  # once


def test_a_tree_built_on_another_thread_is_not_used_and_signing_still_verifies(outbound):
    from concurrent.futures import ThreadPoolExecutor

    from hub.declarations import Declarations

    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    change = change_of(app.prepare_submission(example("goods-import.json")).collect_events()[0], None)
    def build_on_a_thread_that_signed() -> list:
        EC.sign(outbound[0].body)
        return messages_for(change, app.routing, AGENCIES)

    keep_built_trees()
    with ThreadPoolExecutor(1) as pool:
        messages = pool.submit(build_on_a_thread_that_signed).result()
    for message in messages:
        assert not built_tree_of(message.body)
        verify(EC.sign(message.body), trust(EC))


def test_a_thread_that_never_signs_keeps_no_trees():
    from concurrent.futures import ThreadPoolExecutor

    from adapters import xml
    from hub.declarations import Declarations

    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    change = change_of(app.prepare_submission(example("goods-import.json")).collect_events()[0], None)

    def render() -> object:
        assert messages_for(change, app.routing, AGENCIES)
        return getattr(xml._local, "built", None)

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(render).result() is None


def test_the_schemas_have_no_mixed_content():
    """Signing from the tree relies on it: pretty_print and etree.indent then indent the same elements."""
    from adapters.xml import SCHEMA_ROOT

    for path in SCHEMA_ROOT.rglob("*.xsd"):
        assert 'mixed="true"' not in path.read_text(encoding="utf-8"), path


def test_the_inbox_parses_a_signed_answer_once(hub: Hub, monkeypatch):
    """The tree the signature check parsed is what the schema and the reader see: no second parse."""
    from adapters import xml

    keys = Keys.load(hub.settings.keys_dir, AGENCIES)
    inbox = build_inbox(hub)
    hub.declarations.submit(example("goods-import.json"))
    outbox = Outbox()
    Followers(hub.declarations, hub.views, dispatches(hub.declarations, AGENCIES, outbox,
                                                      signer=hub_signer(hub.settings.keys_dir))).catch_up()
    replies = [(message.agency, reply.body) for message in outbox.sent
               for reply in answer(message.agency, message.body, headers_of(message), keys=keys)]
    assert len({agency for agency, _ in replies}) >= 2
    parses = []
    original = xml._parse_safely
    monkeypatch.setattr(xml, "_parse_safely", lambda data, limit: parses.append(len(data)) or original(data, limit))
    for agency, body in replies:
        parses.clear()
        assert inbox.receive(agency, body).outcome != DEAD
        assert parses == [len(body)], agency


@pytest.mark.parametrize(("digest", "reason"), [
    ("!" * 44, "DigestValue is not base64"),
    ("é" * 22, "DigestValue is not base64"),
    ("A" * 43 + "B", "DigestValue is not a SHA-256 digest"),  # 33 bytes
    (" " + "A" * 42 + "=", "DigestValue is not base64"),  # 43 characters of base64 once the space is gone
    ("\n" + "A" * 43 + "=", "digest does not match"),  # white space around base64: the tree walk reads it
])
def test_a_digest_slot_of_the_hubs_own_form_holding_garbage_is_a_bad_signature(outbound, digest: str, reason: str):
    signed = EC.sign(outbound[0].body)
    tampered = re.sub(rb"<ds:DigestValue>[^<]*</ds:DigestValue>",
                      f"<ds:DigestValue>{digest}</ds:DigestValue>".encode(), signed)
    with pytest.raises(Refused) as refused:
        verify(tampered, trust(EC))
    assert refused.value.code == BAD_SIGNATURE and reason in refused.value.reason
