"""Licence signatures: the issuer's JWS (or XMLDSig) over a licence's content (docs/signing.md, "Licences").

A licence's content (`Licence.content()`: number, type, issuer, holder, hs_scope, quantity, unit, valid_from,
valid_to) is signed as its RFC 8785 canonical JSON: one byte sequence for one content, whatever the key order,
so anyone holding the issuer's certificate can check it with standard tools. Two formats:

- "jws": a JWS in compact serialisation (RFC 7515) whose payload is exactly those canonical bytes, its
  protected header `{"alg", "kid"}`, `kid` the SHA-256 fingerprint of the signing certificate. ES256, ES384
  (keys on P-256 and P-384) and RS256 (RSA >= 2048 bits) only, each with its own kind of key: "none", the
  HMAC algorithms and any header naming its own key (`jwk`, `x5c`, ...) are refused, so neither the
  "alg": "none" nor the public-key-as-HMAC-secret confusion can pass.
- "xmldsig": base64 of a document signed by adapters.signing's XMLDSig profile as the issuer published it (an
  SPSCertificate, the ePhyto format); its content is read from it by the extractor given at construction and
  must equal the licence's.

Which keys are trusted for an issuer: the issuing key the hub holds for it, `<keys>/issuers/<issuer>/` (made on
first use, as the hub's own key is: adapters.keyring), with which the hub signs licences issued through the API;
and the certificates registered for the issuer in adapters.keyring's Registry (`tradehub keys register`), with
which an agency, the commerce ministry or CNCA signs licences itself and sends them in an import or over the
broker. A key retired there is refused from the next verification on.

Dates: a licence is checked against keys, not against its certificate's dates. A licence outlives the
certificate it was signed under (a CCC certificate is valid five years, the hub's certificates two), so
expiry ending trust would void every licence still valid; trust ends when the key is retired.

Licences are verified on every use (each citation in each declaration), so successful verifications are
remembered, keyed by the SHA-256 of (issuer, canonical content, signature value), at most `MEMO_SIZE` of them,
least recently used first out. A remembered one counts only while every key it was verified with is still
trusted: the check (one `stat` of the registry, a set lookup) runs on every call, before the memo is used.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.api_jws import PyJWS
from jwt.exceptions import InvalidSignatureError, PyJWTError

from hub.declarations.licence import ISSUERS, LicenceSignatureInvalid

from .keyring import MIN_RSA_BITS, Registry, ensure_key_pair
from .signing import Signer, TrustedKey
from .signing import verify as verify_xml
from .xml import MAX_MESSAGE_BYTES, Refused

FORMATS = ("jws", "xmldsig")
# Each algorithm with the only kind of key it may be used with.
ALGORITHMS = {"ES256": "P-256", "ES384": "P-384", "RS256": f"RSA >= {MIN_RSA_BITS} bits"}
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384"}
# The protected header's parameters a licence's JWS may carry: anything else (jwk, jku, x5c, x5u, crit, b64,
# ...) is refused rather than ignored, so a verifier elsewhere that does honour it cannot read the licence
# differently.
HEADER_PARAMETERS = frozenset({"alg", "kid", "typ", "cty"})
MAX_JWS_CHARACTERS = 64 * 1024
MAX_XMLDSIG_CHARACTERS = (MAX_MESSAGE_BYTES + 2) // 3 * 4
MEMO_SIZE = 16_384  # verifications remembered: about 3 MB

_JWS = PyJWS(algorithms=list(ALGORITHMS), options={"enforce_minimum_key_length": True})
_FINGERPRINT_CHARACTERS = frozenset("0123456789abcdef")


def canonical(content: Mapping[str, Any]) -> bytes:
    """`content` as RFC 8785 canonical JSON (UTF-8): what a licence's signature covers.

    A licence's content (ASCII field names, string and list-of-string values) is written by `json.dumps`, which
    produces the same bytes 4-5 times faster (same escapes, code-point key order = UTF-16 order for ASCII
    names; tests/test_licence_seal.py checks the two agree); anything else goes through `rfc8785` itself.
    ValueError if it cannot be canonicalised (floats out of range, lone surrogates, ...).
    """
    if _plain(content):
        try:
            return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 says so in its own words
    try:
        return rfc8785.dumps(content)
    except (rfc8785.CanonicalizationError, TypeError) as error:
        raise ValueError(f"the licence's content cannot be canonicalised: {error}") from None


def _plain(content: Mapping[str, Any]) -> bool:
    if not isinstance(content, dict):
        return False
    for key, value in content.items():
        if not (isinstance(key, str) and key.isascii()):
            return False
        if isinstance(value, str):
            continue
        if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            return False
    return True


class JwsSeal:
    """Signs licences with the hub's issuing key for their issuer, and verifies any licence's signature.

    `extract` reads the licence content out of an XMLDSig-signed document (the SPS certificate parser); without
    it, "xmldsig" signatures are refused. Thread-safe.
    """

    def __init__(self, keys_dir: Path, registry: Registry,
                 extract: Callable[[bytes], dict[str, Any]] | None = None) -> None:
        self.keys_dir = keys_dir
        self.registry = registry
        self.extract = extract
        self._lock = threading.Lock()
        self._signers: dict[str, Signer] = {}
        self._held: dict[str, TrustedKey] = {}
        self._memo: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()

    # ---- signing ---------------------------------------------------------------------------

    def sign(self, issuer: str, content: dict[str, Any]) -> dict[str, str]:
        """The signature dict of `content` by the hub's issuing key for `issuer`: {"format", "value", "key"}."""
        _known(issuer)
        payload = canonical(content)
        signer = self.issuing_signer(issuer)
        algorithm = _algorithm_of(signer.key)
        value = _JWS.encode(payload, signer.key, algorithm=algorithm, headers={"kid": signer.fingerprint, "typ": None})
        self._remember(_memo_key(issuer, payload, value), (signer.fingerprint,))
        return {"format": "jws", "value": value, "key": signer.fingerprint}

    def issuing_signer(self, issuer: str) -> Signer:
        """The key the hub holds for `issuer`, generated on first use (0600, race-safe: adapters.keyring)."""
        signer = self._signers.get(issuer)
        if signer is None:
            _known(issuer)
            with self._lock:
                signer = self._signers.get(issuer)
                if signer is None:
                    signer = ensure_key_pair(self._issuer_dir(issuer), f"tradehub issuer {issuer}")
                    self._signers[issuer] = signer
        return signer

    def issuer_certificate(self, issuer: str) -> bytes:
        """The certificate (PEM) of the hub's issuing key for `issuer`: what third parties verify its licences by."""
        return self.issuing_signer(issuer).certificate.public_bytes(serialization.Encoding.PEM)

    # ---- verifying -------------------------------------------------------------------------

    def verify(self, issuer: str, content: dict[str, Any], signature: dict[str, str]) -> None:
        """Nothing if `signature` is `issuer`'s over exactly `content`; else `LicenceSignatureInvalid` saying why."""
        if issuer not in ISSUERS:
            raise LicenceSignatureInvalid(f"no issuer {issuer!r}; issuers are {', '.join(ISSUERS)}")
        form, value = _shape(signature)
        try:
            payload = canonical(content)
        except ValueError as error:
            raise LicenceSignatureInvalid(str(error)) from None
        key = _memo_key(issuer, payload, value)
        remembered = self._recall(key)
        if remembered is not None and all(self._trusts(issuer, ident) for ident in remembered):
            return
        trusted = self.trusted(issuer)
        if form == "jws":
            used = self._verify_jws(issuer, payload, value, signature.get("key"), trusted)
        else:
            used = self._verify_xml(issuer, content, value, signature.get("key"), trusted)
        self._remember(key, used)

    def trusted(self, issuer: str) -> dict[str, TrustedKey]:
        """`issuer`'s trusted keys by fingerprint: the hub's issuing certificate for it and its registered ones."""
        registered = self.registry.keys_for(issuer)
        held = self._held_key(issuer)
        if held is None:
            return dict(registered)
        return {**registered, held.fingerprint: held}

    def _trusts(self, issuer: str, ident: str) -> bool:
        held = self._held_key(issuer)
        return (held is not None and held.fingerprint == ident) or ident in self.registry.keys_for(issuer)

    def _verify_jws(self, issuer: str, payload: bytes, value: str, named: object,
                    trusted: Mapping[str, TrustedKey]) -> tuple[str, ...]:
        if len(value) > MAX_JWS_CHARACTERS:
            raise _malformed(f"the JWS is {len(value)} characters long, more than {MAX_JWS_CHARACTERS}")
        header = _header(value)
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise LicenceSignatureInvalid(
                f"algorithm {algorithm!r} is not accepted for licences: only {', '.join(ALGORITHMS)}")
        if not isinstance(kid, str):
            raise _malformed("the JWS header has no \"kid\" naming the signing certificate's fingerprint")
        if named is not None and named != kid:
            raise _malformed(f"the signature's key {named!r} is not the key the JWS names ({kid!r})")
        trusted_key = trusted.get(kid)
        if trusted_key is None:
            raise LicenceSignatureInvalid(self._why_unknown(issuer, kid))
        expected = _algorithm_of(trusted_key.key)
        if algorithm != expected:
            raise LicenceSignatureInvalid(
                f"algorithm {algorithm} does not fit key sha256:{kid[:16]} of {issuer}, which signs with {expected}")
        try:
            decoded = _JWS.decode_complete(value, key=trusted_key.key, algorithms=[algorithm])
        except InvalidSignatureError:
            raise LicenceSignatureInvalid(
                f"the signature does not verify with key sha256:{kid[:16]} of {issuer}") from None
        except PyJWTError as error:
            raise _malformed(f"the JWS cannot be read: {error}") from None
        if decoded["payload"] != payload:
            raise LicenceSignatureInvalid(_difference(decoded["payload"], payload))
        return (kid,)

    def _verify_xml(self, issuer: str, content: dict[str, Any], value: str, named: object,
                    trusted: Mapping[str, TrustedKey]) -> tuple[str, ...]:
        if self.extract is None:
            raise LicenceSignatureInvalid("XMLDSig-signed licences cannot be read here (no certificate parser)")
        if len(value) > MAX_XMLDSIG_CHARACTERS:
            raise _malformed(f"the signed document is {len(value)} characters of base64, more than "
                             f"{MAX_XMLDSIG_CHARACTERS}")
        try:
            document = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("the XMLDSig value is not base64") from None
        if named is not None:  # the key it names, alone: then it is the one remembered
            if not isinstance(named, str) or named not in trusted:
                raise LicenceSignatureInvalid(self._why_unknown(issuer, str(named)))
            trusted = {named: trusted[named]}
        if not trusted:
            raise LicenceSignatureInvalid(f"{issuer} has no trusted key")
        # Dates are not checked (the module's docstring): the certificates' periods are opened wide.
        open_ended = {ident: dataclasses.replace(key, not_before=-math.inf, not_after=math.inf)
                      for ident, key in trusted.items()}
        try:
            verify_xml(document, open_ended, signer=issuer)
        except Refused as error:
            raise LicenceSignatureInvalid(str(error)) from None  # "bad-signature: " and the reason
        try:
            signed = self.extract(document)
        except ValueError as error:
            raise _malformed(f"the signed document's content cannot be read: {error}") from None
        try:
            signed_payload = canonical(signed)
        except ValueError as error:
            raise _malformed(str(error)) from None
        expected = canonical(content)
        if signed_payload != expected:
            raise LicenceSignatureInvalid(_difference(signed_payload, expected))
        return tuple(trusted)

    def _why_unknown(self, issuer: str, kid: str) -> str:
        if (len(kid) == 64 and set(kid) <= _FINGERPRINT_CHARACTERS
                and (self.registry.retired / issuer / f"{kid}.pem").exists()):
            return f"key sha256:{kid[:16]} of {issuer} was retired: licences it signed are no longer trusted"
        return f"key {kid[:64]!r} is not a trusted key of {issuer}"

    def _held_key(self, issuer: str) -> TrustedKey | None:
        """The hub's issuing certificate for `issuer`, if it has been made (by this process or another)."""
        held = self._held.get(issuer)
        if held is None:
            path = self._issuer_dir(issuer) / "certificate.pem"
            try:
                held = TrustedKey.of(x509.load_pem_x509_certificate(path.read_bytes()))
            except FileNotFoundError:
                return None  # not cached: another process may make it later
            self._held[issuer] = held
        return held

    def _issuer_dir(self, issuer: str) -> Path:
        return self.keys_dir / "issuers" / issuer

    # ---- the memo ----------------------------------------------------------------------------

    def _recall(self, key: bytes) -> tuple[str, ...] | None:
        with self._lock:
            used = self._memo.get(key)
            if used is not None:
                self._memo.move_to_end(key)
            return used

    def _remember(self, key: bytes, used: tuple[str, ...]) -> None:
        with self._lock:
            self._memo[key] = used
            self._memo.move_to_end(key)
            while len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)


def _known(issuer: str) -> None:
    if issuer not in ISSUERS:
        raise ValueError(f"no issuer {issuer!r}; issuers are {', '.join(ISSUERS)}")


def _memo_key(issuer: str, payload: bytes, value: str) -> bytes:
    digest = hashlib.sha256(issuer.encode("utf-8"))
    for part in (payload, value.encode("utf-8", "surrogatepass")):
        digest.update(len(part).to_bytes(8, "big"))  # lengths first: no two triples hash the same bytes
        digest.update(part)
    return digest.digest()


def _shape(signature: object) -> tuple[str, str]:
    if not isinstance(signature, dict):
        raise _malformed("the signature must be an object with format, value and key")
    form, value, key = signature.get("format"), signature.get("value"), signature.get("key")
    if form not in FORMATS:
        raise _malformed(f"format {form!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(value, str) or not value:
        raise _malformed("the signature has no value")
    if key is not None and not isinstance(key, str):
        raise _malformed("the signature's key must be a string")
    return form, value


def _header(value: str) -> dict[str, Any]:
    """The JWS's protected header, strictly: three segments, base64url, a JSON object without repeated names."""
    if not value.isascii() or value.count(".") != 2:
        raise _malformed("a JWS in compact form is three base64url segments separated by dots")
    segment = value.split(".", 1)[0]
    try:
        text = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(text, object_pairs_hook=_no_repeats)
    except (binascii.Error, ValueError) as error:
        raise _malformed(f"the JWS header cannot be read: {error}") from None
    if not isinstance(header, dict):
        raise _malformed("the JWS header is not a JSON object")
    extra = sorted(set(header) - HEADER_PARAMETERS)
    if extra:
        raise _malformed(f"the JWS header carries {', '.join(map(repr, extra))}: only "
                         f"{', '.join(sorted(HEADER_PARAMETERS))} are allowed")
    return header


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("a name is repeated")
    return dict(pairs)


def _algorithm_of(key: object) -> str:
    """The one JWS algorithm a key may sign licences with; `LicenceSignatureInvalid` for a key outside them."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        algorithm = _CURVES.get(key.curve.name)
        if algorithm is None:
            raise LicenceSignatureInvalid(f"keys on {key.curve.name} do not sign licences (P-256 or P-384 only)")
        return algorithm
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise LicenceSignatureInvalid(f"an RSA key of {key.key_size} bits is too weak (at least {MIN_RSA_BITS})")
        return "RS256"
    raise LicenceSignatureInvalid(f"{type(key).__name__.lstrip('_')} keys do not sign licences")


def _difference(signed: bytes, expected: bytes) -> str:
    """Why the signed content is not the licence's, naming the fields when it is JSON."""
    try:
        theirs = json.loads(signed)
    except ValueError:
        return "the signed content is not the licence's (not JSON)"
    ours = json.loads(expected)
    if not isinstance(theirs, dict):
        return "the signed content is not the licence's (not a JSON object)"
    fields = sorted(name for name in set(theirs) | set(ours) if theirs.get(name) != ours.get(name))
    if not fields:
        return "the signed content is the licence's but not in RFC 8785 canonical form"
    return f"the signed content differs from the licence's in {', '.join(fields)}"


def _malformed(reason: str) -> LicenceSignatureInvalid:
    return LicenceSignatureInvalid(f"malformed signature: {reason}")
