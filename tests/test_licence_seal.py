"""Licence signatures (adapters/licences.py): JWS over RFC 8785 canonical JSON, by the issuer's trusted keys only.

What must hold: a signature verifies for exactly the content it was made over (any change of any field, down
to Unicode normalisation, fails); only the issuer's trusted keys count (the hub's issuing key for it and the
certificates registered for it), never another issuer's, an unregistered or a retired one; only ES256, ES384
and RS256 with their own kind of key ("none" and HMAC with the public key as secret are refused); garbage is
refused with a reason, never a traceback; remembered verifications do not outlive the key's trust; and the
canonical form is RFC 8785's, so a third party can check a licence with standard tools.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import stat
import threading
import unicodedata
from pathlib import Path

import pytest
import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

import adapters.licences as licences
from adapters.keyring import Registry
from adapters.licences import JwsSeal, canonical
from adapters.signing import Signer
from hub.declarations.licence import CONTENT_FIELDS, ISSUERS, LicenceSignatureInvalid
from tradehub.cli import main

CONTENT = {"number": "IL-2025-000123", "type": "import_licence", "issuer": "commerce",
           "holder": "91350200MA2Y0X1X5L", "hs_scope": ["0201", "020230"], "quantity": "1000", "unit": "KGM",
           "valid_from": "2025-01-01", "valid_to": "2025-12-31"}
NOW = datetime.datetime.now(datetime.UTC)


def certificate_for(key, name: str = "issuer") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(header: dict, payload: bytes, sign) -> str:
    """A JWS made by hand: `sign(signing_input) -> signature bytes`."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def es256(key: ec.EllipticCurvePrivateKey):
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def jws(value: str, fingerprint: str) -> dict[str, str]:
    return {"format": "jws", "value": value, "key": fingerprint}


def refused(seal: JwsSeal, issuer: str, content: dict, signature, match: str) -> None:
    with pytest.raises(LicenceSignatureInvalid, match=match):
        seal.verify(issuer, content, signature)


@pytest.fixture
def seal(tmp_path: Path) -> JwsSeal:
    return JwsSeal(tmp_path, Registry(tmp_path))


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> tuple[JwsSeal, dict[str, str]]:
    keys = tmp_path_factory.mktemp("keys")
    seal = JwsSeal(keys, Registry(keys))
    return seal, seal.sign("commerce", CONTENT)


@pytest.fixture(scope="module")
def agency_key() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certificate_for(key, "commerce's own key")
    return key, certificate, hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


# ---- round trip and the form of the signature ----------------------------------------------------------------


def test_a_licence_signed_by_the_hub_verifies_and_says_which_key(seal: JwsSeal, tmp_path: Path):
    signature = seal.sign("commerce", CONTENT)
    seal.verify("commerce", CONTENT, signature)
    JwsSeal(tmp_path, Registry(tmp_path)).verify("commerce", CONTENT, signature)  # another process, no memo
    header, payload, _ = signature["value"].split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "ES256", "kid": signature["key"]}
    assert base64.urlsafe_b64decode(payload + "==") == rfc8785.dumps(CONTENT)
    certificate = x509.load_pem_x509_certificate(seal.issuer_certificate("commerce"))
    assert signature["key"] == hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    key_file = tmp_path / "issuers" / "commerce" / "key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "issuers").stat().st_mode) == 0o700


def test_a_third_party_verifies_with_the_certificate_and_rfc8785_alone(signed):
    """What docs/signing.md tells a third party to do, with `cryptography` and `rfc8785` only (no PyJWT)."""
    seal, signature = signed
    public_key = x509.load_pem_x509_certificate(seal.issuer_certificate("commerce")).public_key()
    header, payload, value = signature["value"].split(".")
    raw = base64.urlsafe_b64decode(value + "==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public_key.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    assert base64.urlsafe_b64decode(payload + "==") == rfc8785.dumps(CONTENT)
    with pytest.raises(InvalidSignature):
        public_key.verify(der, f"{header}.{b64url(rfc8785.dumps({**CONTENT, 'quantity': '1001'}))}".encode(),
                          ec.ECDSA(hashes.SHA256()))


def test_each_issuer_has_its_own_key_made_once_even_when_racing(tmp_path: Path):
    kids: list[str] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            kids.append(JwsSeal(tmp_path, Registry(tmp_path)).sign("cnca", CONTENT)["key"])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(kids)) == 1
    other = JwsSeal(tmp_path, Registry(tmp_path)).sign("customs", CONTENT)["key"]
    assert other != kids[0]
    assert not [name for name in os.listdir(tmp_path / "issuers" / "cnca") if name.startswith(".")]


# ---- content --------------------------------------------------------------------------------------------------


def _tricks(text: str) -> list[str]:
    """Changes a careless comparison would miss: normalisation forms, look-alikes, invisible characters."""
    return [unicodedata.normalize("NFD", text + "\u00e9"), text + "e\u0301", text + "\u200b", " " + text,
            text.replace("0", "\u0660", 1) if "0" in text else text + "\u0660", text.upper() if text.lower() == text
            else text.lower(), text.replace("I", "\u0406", 1) if "I" in text else text + "\u0406",
            unicodedata.normalize("NFKC", "\uff11") + text, text + "\ufeff"]


changes = st.sampled_from(CONTENT_FIELDS).flatmap(lambda field: st.tuples(st.just(field), st.one_of(
    st.text(max_size=20),
    st.sampled_from(_tricks(CONTENT[field])) if isinstance(CONTENT[field], str) else st.nothing(),
    st.lists(st.text(max_size=6), max_size=4),
    st.integers(-10, 10**6),
    st.none(),
)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=changes)
def test_any_change_of_any_field_fails(signed, change):
    seal, signature = signed
    field, value = change
    if CONTENT[field] == value:
        return
    content = {**CONTENT, field: value}
    refused(seal, "commerce", content, signature, f"differs from the licence's in {field}")


def test_normalisation_is_not_applied_either_way(seal: JwsSeal):
    """Content signed in NFD does not verify as NFC: the bytes are signed, not what they look like."""
    decomposed = {**CONTENT, "number": unicodedata.normalize("NFD", "Lizenz-Café-1")}
    signature = seal.sign("commerce", decomposed)
    seal.verify("commerce", decomposed, signature)
    refused(seal, "commerce", {**CONTENT, "number": unicodedata.normalize("NFC", "Lizenz-Café-1")}, signature,
            "in number")


def test_a_field_added_or_removed_fails(signed):
    seal, signature = signed
    refused(seal, "commerce", {**CONTENT, "note": "x"}, signature, "in note")
    refused(seal, "commerce", {k: v for k, v in CONTENT.items() if k != "unit"}, signature, "in unit")


def test_a_jws_over_other_content_never_verifies(seal: JwsSeal, signed):
    """A genuine signature of the same key over another licence is not this licence's."""
    other = seal.sign("commerce", {**CONTENT, "quantity": "999999"})
    refused(seal, "commerce", CONTENT, other, "differs from the licence's in quantity")
    module_seal, genuine = signed
    refused(module_seal, "commerce", {**CONTENT, "hs_scope": ["02"]}, genuine, "in hs_scope")


def test_the_payload_must_be_canonical_not_just_equal(seal: JwsSeal, tmp_path: Path, agency_key):
    key, certificate, kid = agency_key
    Registry(tmp_path).register("commerce", pem(certificate))
    loose = json.dumps(CONTENT, indent=1).encode()  # the same JSON value, other bytes
    value = compact({"alg": "ES256", "kid": kid}, loose, es256(key))
    refused(seal, "commerce", CONTENT, jws(value, kid), "not in RFC 8785 canonical form")
    seal.verify("commerce", CONTENT, jws(compact({"alg": "ES256", "kid": kid}, rfc8785.dumps(CONTENT), es256(key)),
                                         kid))


plain_values = st.one_of(st.text(), st.lists(st.text(), max_size=4))
json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(content=st.one_of(st.dictionaries(st.text(st.characters(max_codepoint=127)), plain_values, max_size=10),
                         st.dictionaries(st.text(), json_values, max_size=6)),
       seed=st.randoms())
def test_the_canonical_form_is_rfc8785_for_keys_in_any_order(content, seed):
    items = list(content.items())
    seed.shuffle(items)
    shuffled = dict(items)
    try:
        expected = rfc8785.dumps(content)
    except rfc8785.CanonicalizationError:
        with pytest.raises(ValueError):
            canonical(shuffled)
        return
    assert canonical(shuffled) == canonical(content) == expected


def test_the_fast_canonical_form_agrees_on_awkward_strings():
    awkward = "\x00\x01\x1f\x7f\"\\/\b\f\n\r\t\u2028\u2029\ufeff\U0001f600é\u0301<>&'"
    content = {"number": awkward, "hs_scope": [awkward, ""], "\u00e9": "x"}
    assert canonical(content) == rfc8785.dumps(content)
    with pytest.raises(ValueError, match="canonicalised"):
        canonical({"number": "\ud800"})  # a lone surrogate is no UTF-8


# ---- keys -----------------------------------------------------------------------------------------------------


def test_another_issuers_key_fails(seal: JwsSeal):
    """Customs' issuing key signing a licence that claims to be commerce's: not a key of commerce."""
    claimed = {**CONTENT, "issuer": "commerce"}
    by_customs = seal.sign("customs", claimed)
    seal.verify("customs", claimed, by_customs)
    refused(seal, "commerce", claimed, by_customs, "not a trusted key of commerce")


def test_a_key_not_registered_fails_until_it_is_registered(seal: JwsSeal, tmp_path: Path, agency_key):
    key, certificate, kid = agency_key
    signature = jws(compact({"alg": "ES256", "kid": kid}, rfc8785.dumps(CONTENT), es256(key)), kid)
    refused(seal, "commerce", CONTENT, signature, "not a trusted key of commerce")
    Registry(tmp_path).register("commerce", pem(certificate))
    seal.verify("commerce", CONTENT, signature)
    refused(seal, "cnca", CONTENT, signature, "not a trusted key of cnca")


def test_a_kid_claiming_a_trusted_key_with_another_key_fails(seal: JwsSeal, signed):
    """The kid of the hub's issuing key, the signature of a stranger's key: bad signature."""
    _, genuine = signed
    hub_kid = seal.sign("commerce", CONTENT)["key"]
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = compact({"alg": "ES256", "kid": hub_kid}, rfc8785.dumps(CONTENT), es256(stranger))
    refused(seal, "commerce", CONTENT, jws(forged, hub_kid), "does not verify with key")
    refused(seal, "commerce", CONTENT, {**genuine, "key": hub_kid}, "not the key the JWS names|not a trusted key")


def test_an_agencys_registered_certificate_signs_its_licences(seal: JwsSeal, tmp_path: Path):
    """An agency signs licences itself with the key registered for its messages; RSA-2048 as RS256."""
    key = rsa.generate_private_key(65537, 2048)
    certificate = certificate_for(key, "inspection")
    Registry(tmp_path).register("inspection", pem(certificate))
    kid = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    content = {**CONTENT, "issuer": "inspection", "type": "phytosanitary_certificate"}
    value = compact({"alg": "RS256", "kid": kid}, rfc8785.dumps(content),
                    lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    seal.verify("inspection", content, jws(value, kid))
    refused(seal, "customs", content, jws(value, kid), "not a trusted key of customs")


def test_a_retired_key_fails_and_the_memo_does_not_survive_it(seal: JwsSeal, tmp_path: Path, agency_key,
                                                              monkeypatch):
    key, certificate, kid = agency_key
    registry = Registry(tmp_path)
    registry.register("commerce", pem(certificate))
    signature = jws(compact({"alg": "ES256", "kid": kid}, rfc8785.dumps(CONTENT), es256(key)), kid)
    decodes = []
    original = licences._JWS.decode_complete
    monkeypatch.setattr(licences._JWS, "decode_complete", lambda *a, **k: decodes.append(1) or original(*a, **k))
    for _ in range(3):
        seal.verify("commerce", CONTENT, signature)
    assert len(decodes) == 1  # remembered after the first
    registry.retire("commerce", kid)
    refused(seal, "commerce", CONTENT, signature, "was retired")
    registry.register("commerce", pem(certificate))  # trusted again: verifies again
    seal.verify("commerce", CONTENT, signature)


def test_the_memo_is_bounded(seal: JwsSeal, monkeypatch):
    monkeypatch.setattr(licences, "MEMO_SIZE", 5)
    for number in range(12):
        content = {**CONTENT, "number": f"N{number}"}
        seal.verify("commerce", content, seal.sign("commerce", content))
    assert len(seal._memo) == 5


# ---- algorithms -----------------------------------------------------------------------------------------------


def test_alg_none_is_refused(seal: JwsSeal):
    kid = seal.sign("commerce", CONTENT)["key"]
    for alg in ("none", "None", "NONE", ""):
        value = compact({"alg": alg, "kid": kid}, rfc8785.dumps(CONTENT), lambda _: b"")
        refused(seal, "commerce", CONTENT, jws(value, kid), "is not accepted for licences")
        refused(seal, "commerce", CONTENT, jws(value[:-1] if value.endswith(".") else value, kid),
                "malformed|not accepted")


def test_hs256_with_the_public_key_as_secret_is_refused(seal: JwsSeal):
    """The classic confusion: an HMAC keyed with the issuer's public certificate or key, both published."""
    kid = seal.sign("commerce", CONTENT)["key"]
    certificate = seal.issuer_certificate("commerce")
    public = x509.load_pem_x509_certificate(certificate).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (certificate, public):
        for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
            value = compact({"alg": alg, "kid": kid}, rfc8785.dumps(CONTENT),
                            lambda data, s=secret, d=digest: hmac.new(s, data, d).digest())
            refused(seal, "commerce", CONTENT, jws(value, kid), f"algorithm '{alg}' is not accepted")


def test_an_algorithm_that_does_not_fit_the_key_is_refused(seal: JwsSeal, tmp_path: Path):
    kid = seal.sign("commerce", CONTENT)["key"]  # a P-256 key
    for alg in ("ES384", "RS256"):
        value = compact({"alg": alg, "kid": kid}, rfc8785.dumps(CONTENT), lambda _: b"\x00" * 64)
        refused(seal, "commerce", CONTENT, jws(value, kid), f"algorithm {alg} does not fit")
    for alg in ("ES512", "PS256", "EdDSA", "RS512"):
        value = compact({"alg": alg, "kid": kid}, rfc8785.dumps(CONTENT), lambda _: b"\x00" * 64)
        refused(seal, "commerce", CONTENT, jws(value, kid), "is not accepted for licences")


def test_a_header_naming_its_own_key_or_repeating_a_name_is_refused(seal: JwsSeal):
    signature = seal.sign("commerce", CONTENT)
    kid = signature["key"]
    _, payload, value = signature["value"].split(".")
    for header in ({"alg": "ES256", "kid": kid, "jwk": {"kty": "EC"}}, {"alg": "ES256", "kid": kid, "x5c": ["AA"]},
                   {"alg": "ES256", "kid": kid, "b64": False, "crit": ["b64"]}):
        forged = f"{b64url(json.dumps(header).encode())}.{payload}.{value}"
        refused(seal, "commerce", CONTENT, jws(forged, kid), "only alg, cty, kid, typ are allowed")
    repeated = b64url(f'{{"alg":"none","alg":"ES256","kid":"{kid}"}}'.encode())
    refused(seal, "commerce", CONTENT, jws(f"{repeated}.{payload}.{value}", kid), "repeated")


# ---- malformed --------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_or_garbage_values_are_refused_with_a_reason(signed, data):
    seal, signature = signed
    value = signature["value"]
    garbage = data.draw(st.one_of(
        st.integers(0, len(value) - 1).map(lambda n: value[:n]),
        st.integers(1, len(value) - 1).map(lambda n: value[n:]),
        st.tuples(st.integers(0, len(value) - 1), st.characters()).map(lambda c: value[:c[0]] + c[1] + value[c[0] + 1:]),
        st.text(max_size=300),
        st.lists(st.text(st.characters(max_codepoint=127), max_size=40), min_size=3, max_size=3).map(".".join),
    ))
    if garbage == value:
        return
    with pytest.raises(LicenceSignatureInvalid) as caught:
        seal.verify("commerce", CONTENT, {**signature, "value": garbage})
    assert str(caught.value)


@pytest.mark.parametrize("signature", [
    None, "eyJ...", [], {}, {"format": "jws"}, {"format": "pgp", "value": "x"}, {"format": "jws", "value": 12},
    {"format": "jws", "value": ""}, {"format": "jws", "value": "a.b.c", "key": 7},
    {"format": "jws", "value": "a" * (licences.MAX_JWS_CHARACTERS + 1)},
])
def test_malformed_signatures_are_refused(seal: JwsSeal, signature):
    refused(seal, "commerce", CONTENT, signature, "malformed signature")


def test_an_unknown_issuer_is_refused(seal: JwsSeal):
    signature = seal.sign("commerce", CONTENT)
    refused(seal, "ministry", CONTENT, signature, "no issuer 'ministry'")
    with pytest.raises(ValueError, match="no issuer"):
        seal.sign("ministry", CONTENT)
    assert "commerce" in ISSUERS and "cnca" in ISSUERS


# ---- XMLDSig --------------------------------------------------------------------------------------------------


def _document(content: dict) -> bytes:
    root = etree.Element("Licence")
    for name, value in content.items():
        etree.SubElement(root, name).text = " ".join(value) if isinstance(value, list) else value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _extract(document: bytes) -> dict:
    root = etree.fromstring(document)
    content = {child.tag: child.text or "" for child in root if isinstance(child.tag, str) and "}" not in child.tag}
    content["hs_scope"] = content.get("hs_scope", "").split()
    return content


def test_an_xmldsig_licence_verifies_by_its_content(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    signer = Signer(key, certificate_for(key, "inspection"))
    content = {**CONTENT, "issuer": "inspection", "type": "phytosanitary_certificate"}
    value = base64.b64encode(signer.sign(_document(content))).decode("ascii")
    signature = {"format": "xmldsig", "value": value, "key": signer.fingerprint}
    registry = Registry(tmp_path)
    seal = JwsSeal(tmp_path, registry, extract=_extract)
    refused(seal, "inspection", content, signature, "not a trusted key of inspection")
    registry.register("inspection", pem(signer.certificate))
    seal.verify("inspection", content, signature)
    seal.verify("inspection", content, {k: v for k, v in signature.items() if k != "key"})
    refused(seal, "inspection", {**content, "quantity": "1001"}, signature, "differs from the licence's in quantity")
    refused(seal, "customs", content, signature, "not a trusted key of customs")
    refused(JwsSeal(tmp_path, registry), "inspection", content, signature, "no certificate parser")
    tampered = signer.sign(_document(content)).replace(b"<unit>KGM</unit>", b"<unit>TNE</unit>")
    refused(seal, "inspection", {**content, "unit": "TNE"},
            {**signature, "value": base64.b64encode(tampered).decode()}, "bad-signature")
    refused(seal, "inspection", content, {**signature, "value": "not base64!"}, "not base64")
    registry.retire("inspection", signer.fingerprint)
    refused(seal, "inspection", content, signature, "was retired")


# ---- the keys command ------------------------------------------------------------------------------------------


def test_an_admin_registers_a_certificate_for_an_issuer_that_is_not_an_agency(tmp_path: Path, capsys, monkeypatch,
                                                                            agency_key):
    monkeypatch.setenv("TRADEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRADEHUB_KEYS_DIR", raising=False)
    key, certificate, kid = agency_key
    (tmp_path / "commerce.pem").write_bytes(pem(certificate))
    assert main(["keys", "register", "commerce", str(tmp_path / "commerce.pem")]) == 0
    assert kid in capsys.readouterr().out
    assert main(["keys", "list", "commerce"]) == 0
    assert "current" in capsys.readouterr().out
    seal = JwsSeal(tmp_path / "keys", Registry(tmp_path / "keys"))
    seal.verify("commerce", CONTENT,
                jws(compact({"alg": "ES256", "kid": kid}, rfc8785.dumps(CONTENT), es256(key)), kid))
    assert main(["keys", "issuer-certificate", "cnca"]) == 0
    issued = x509.load_pem_x509_certificate(capsys.readouterr().out.encode())
    assert issued.public_key().public_numbers() == seal.issuing_signer("cnca").key.public_key().public_numbers()
