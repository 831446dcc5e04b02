"""Enveloped XML signatures (XMLDSig 1.1) on every message between the hub and the agencies.

One profile, nothing else (docs/signing.md):

- one `ds:Signature`, the last child of the document's root element;
- one `ds:Reference` with `URI=""`: the whole document, minus the signature;
- transforms: enveloped-signature, then exclusive XML canonicalisation 1.0
  (without comments, no inclusive prefixes); canonicalisation of SignedInfo
  the same;
- digest SHA-256; signature ECDSA-SHA256 (the hub's and the simulated
  agencies' keys: P-256) or RSA-SHA256 (RSA >= 2048, for agencies that have
  RSA keys);
- `ds:KeyInfo` holds the signer's certificate (`X509Certificate`), which the
  verifier uses only to pick, by SHA-256 fingerprint, one of the
  certificates registered for that agency (adapters.keyring): a certificate
  is never trusted because a message carries it.

signxml produces and accepts this profile (tests/test_signing.py proves it
both ways), but costs about 0.55 ms to sign and 0.7 ms to verify one
message here, several times the whole cost of building it; this module
does the same with lxml's exclusive canonicalisation and `cryptography`, and
builds the signature's text directly, since the profile fixes its every
byte but the digest, the value and the certificate. The signer hashes the
bytes adapters.xml.check_outbound has just serialised as they are when they
are already in canonical form (`_canonical_as_written`), else canonicalises
the tree it serialised them from (`built_tree`), rather than parse them back; the verifier returns the
tree it parsed, which the schema and the agency's reader take as it is. The
cost of each step, and why the bench's 50 % targets are out of reach, are in
docs/signing.md ("Cost").

Verification refuses with `Refused` coded `unsigned` (no signature at all)
or `bad-signature` (anything else: not the profile, a reference to part of
the document, several signatures, an unregistered or expired certificate, a
digest or signature that does not match), after the XML gate's parse and
before the schema sees the document.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import Certificate
from lxml import etree

from .xml import BAD_SIGNATURE, MAX_MESSAGE_BYTES, UNSIGNED, Refused, built_tree, keep_built_trees, parse_safely

DSIG = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = DSIG + "enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"

SIGNATURE = f"{{{DSIG}}}Signature"
_DSIG_BYTES = DSIG.encode("ascii")
_SIGNATURE_OPEN = f'<ds:Signature xmlns:ds="{DSIG}">'.encode("ascii")  # a message without it holds no signature: no search of the tree needed
_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO = (f"{{{DSIG}}}{name}" for name in ("SignedInfo", "SignatureValue", "KeyInfo"))
_C14N_METHOD, _SIGNATURE_METHOD, _REFERENCE = (
    f"{{{DSIG}}}{name}" for name in ("CanonicalizationMethod", "SignatureMethod", "Reference"))
_TRANSFORMS, _TRANSFORM, _DIGEST_METHOD, _DIGEST_VALUE = (
    f"{{{DSIG}}}{name}" for name in ("Transforms", "Transform", "DigestMethod", "DigestValue"))
_X509_DATA, _X509_CERTIFICATE = f"{{{DSIG}}}X509Data", f"{{{DSIG}}}X509Certificate"

# SignedInfo exactly as exclusive canonicalisation writes it: what is signed is this text, so the signer
# fills in the digest and never canonicalises SignedInfo itself. The same text goes into the message.
_SIGNED_INFO_TEXT = (
    f'<ds:SignedInfo xmlns:ds="{DSIG}">'
    f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"></ds:CanonicalizationMethod>'
    '<ds:SignatureMethod Algorithm="{method}"></ds:SignatureMethod>'
    '<ds:Reference URI=""><ds:Transforms>'
    f'<ds:Transform Algorithm="{ENVELOPED}"></ds:Transform>'
    f'<ds:Transform Algorithm="{EXC_C14N}"></ds:Transform>'
    f'</ds:Transforms><ds:DigestMethod Algorithm="{SHA256}"></ds:DigestMethod>'
    '<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>'
)


# The algorithms' parameters, made once: they hold no state. SignedInfo is hashed by the module and the digest
# handed to `cryptography` (Prehashed): the same ECDSA-SHA256 and RSA-SHA256 values, a few microseconds less.
_SHA256, _PKCS1 = hashes.SHA256(), padding.PKCS1v15()
_PREHASHED = Prehashed(_SHA256)
_ECDSA_PREHASHED = ec.ECDSA(_PREHASHED)


def fingerprint(certificate: Certificate) -> str:
    """A certificate's SHA-256 fingerprint over its DER bytes, as 64 lowercase hex digits."""
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def method_of(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
              ) -> str:
    """The profile's signature method for a key: ECDSA-SHA256 or RSA-SHA256."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return ECDSA_SHA256
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return RSA_SHA256
    raise ValueError(f"{type(key).__name__} keys are not in the signing profile (ECDSA or RSA only)")


def _canonical(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_local = threading.local()


def _own_parser() -> etree.XMLParser:
    """For the signer, which reads only messages it built itself; lxml parsers are one per thread."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                                 huge_tree=False)
    return parser


class Signer:
    """Signs serialised messages with one private key, its certificate carried in KeyInfo.

    The key and certificate are loaded once (adapters.keyring); `sign` does no key parsing. Thread-safe.
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, certificate: Certificate) -> None:
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():
            raise ValueError("the certificate is not the private key's")
        self.key = key
        self.certificate = certificate
        self.fingerprint = fingerprint(certificate)
        self.method = method_of(key)
        # SignedInfo's text before and after the digest, as bytes: joined with the digest per message.
        self._before_digest, self._after_digest = (
            part.encode("ascii") for part in _SIGNED_INFO_TEXT.replace("{method}", self.method).split("{digest}"))
        der = certificate.public_bytes(Encoding.DER)
        self._key_info = (f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{_b64(der)}</ds:X509Certificate>"
                          "</ds:X509Data></ds:KeyInfo></ds:Signature>").encode("ascii")
        self._size = (key.curve.key_size + 7) // 8 if isinstance(key, ec.EllipticCurvePrivateKey) else 0

    def sign(self, body: bytes) -> bytes:
        """`body` with an enveloped signature as its root's last child; the rest of its bytes unchanged.

        `body` is a message the caller built (UTF-8, not yet signed): a body that already holds a
        signature is refused with ValueError, since a second one would make it unverifiable.
        """
        # The tree the message was serialised from, when adapters.xml.check_outbound just built it on this
        # thread. Most messages (one default namespace) are then in canonical form as written: hashed as they
        # are. Others: the tree, indented as the bytes are, is canonicalised, a parse spared. Else the bytes
        # are parsed.
        root = built_tree(body)
        if root is not None:
            canonical = _canonical_as_written(body)
            if canonical is not None:
                at = body.rfind(b"</")  # the root's end tag: canonical form has no empty-element tag, nothing after it
                whole = memoryview(body)
                return b"".join((whole[:at], self._signature(canonical), whole[at:]))
            etree.indent(root)
        else:
            keep_built_trees()  # this thread signs: have the next messages' trees kept for it
            root = etree.fromstring(body, _own_parser())
        if _DSIG_BYTES in body and root.find(f".//{SIGNATURE}") is not None:
            raise ValueError("the message is signed already")
        return _envelop(body, root, self._signature(_canonical(root)))

    def _signature(self, canonical: bytes | memoryview) -> bytes:
        """The ds:Signature element's text over a document whose exclusive canonical form is `canonical`."""
        signed_info = self._before_digest + base64.b64encode(hashlib.sha256(canonical).digest()) + self._after_digest
        return b"".join((_SIGNATURE_OPEN, signed_info, b"<ds:SignatureValue>",
                         base64.b64encode(self._value(signed_info)), b"</ds:SignatureValue>", self._key_info))

    def _value(self, signed_info: bytes) -> bytes:
        # SignedInfo hashed here and handed over as the digest: the very signature `sign(signed_info, SHA-256)`
        # makes, a copy of SignedInfo into the library and a hash object spared.
        digest = hashlib.sha256(signed_info).digest()
        if self._size:
            # XMLDSig's ECDSA value is r and s, each as wide as the curve, not the DER of `cryptography`.
            r, s = decode_dss_signature(self.key.sign(digest, _ECDSA_PREHASHED))
            return r.to_bytes(self._size, "big") + s.to_bytes(self._size, "big")
        return self.key.sign(digest, _PKCS1, _PREHASHED)


# What check_outbound writes before the root element (lxml's declaration for UTF-8), and after it.
_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"
_CLOSING = b">\n"
# The root's start tag up to its first attribute, when its only namespace declaration (if any) is the default
# one, with an absolute URI (exclusive canonicalisation refuses relative ones). The writer puts namespace
# declarations before attributes, as canonical form does.
_PLAIN_ROOT = re.compile(rb'<[A-Za-z_][\w.\-]*( xmlns="[A-Za-z][A-Za-z0-9+.\-]*:[^"]*")?[ >]')
_ATTRIBUTE = re.compile(rb' ([^\s=]+)="')
_NEXT_ATTRIBUTE = re.compile(rb'" ')


def _canonical_as_written(body: bytes) -> memoryview | None:
    """`body`'s exclusive canonical form, when lxml's serialisation wrote it already: `body` without the XML
    declaration and the final newline. None unless the checks below show it.

    Only for bytes check_outbound serialised (libxml2's writer, UTF-8, pretty-printed). The writer and
    exclusive canonicalisation differ only in: the XML declaration and the newline after the root (cut
    here); empty-element tags (`<a/>` against `<a></a>`); character references (`&#13;` against `&#xD;`,
    and tabs and newlines in attribute values); `>` in attribute values (`&gt;` against `>`); where
    namespace declarations go (exclusive c14n writes each on the outermost elements that use it); the order
    of attributes (canonical: sorted); comments, CDATA, DOCTYPE and processing instructions; `xml:`
    attributes. A message with any of those, or with anything that merely looks like one, is canonicalised
    by libxml2 instead. The writer escapes `<` and `>` in text and attribute values, so every `<`, `>` and
    `/>` found here is markup. What remains is written the same by both: `&amp;`, `&lt;`, `&gt;` in text,
    `&quot;`, UTF-8 as is, all white space in text. tests/test_signing.py checks it against libxml2's
    canonicalisation of the parsed bytes, with hypothesis-made text, attribute values and orders.

    The checks cost 4-8 microseconds, a fifth of indenting and canonicalising the tree; single bytes first
    (memchr), the slower searches of two bytes only when one is there.
    """
    if not body.startswith(_DECLARATION) or not body.endswith(_CLOSING):
        return None
    root = _PLAIN_ROOT.match(body, len(_DECLARATION))
    # At most one namespace declaration, the root's default one: every element is then in it and every
    # attribute in none (any other namespace would need a declaration of its own), where c14n keeps it.
    if root is None or body.find(b"xmlns", root.end()) != -1:
        return None
    if (b"&" in body and (b"&#" in body or b"&gt;" in body) or b"!" in body and b"<!" in body or b"\r" in body
            or body.find(b"?", len(_DECLARATION)) != -1 and body.find(b"<?", len(_DECLARATION)) != -1
            or body.find(b":", root.end()) != -1 and b"xml:" in body or body.rfind(b"/>") != -1):
        return None
    # Attribute order: only a start tag with two or more attributes holds a quote followed by a space (the
    # writer escapes quotes in values); one in text is skipped.
    found = _NEXT_ATTRIBUTE.search(body)
    while found is not None:
        at = found.start()
        start = body.rfind(b"<", 0, at)
        if body.rfind(b">", start, at) == -1:
            end = body.find(b">", at)
            names = _ATTRIBUTE.findall(body, start, end)
            if names[0] == b"xmlns":
                del names[0]
            if names != sorted(names):
                return None
            at = end
        found = _NEXT_ATTRIBUTE.search(body, at + 1)
    return memoryview(body)[len(_DECLARATION):-len(_CLOSING) + 1]


def _envelop(body: bytes, root: etree._Element, signature: bytes) -> bytes:
    """The signature's text spliced in just before the root's end tag, where the transform removes it from."""
    end = body.rstrip()
    closing = f"</{root.prefix + ':' if root.prefix else ''}{etree.QName(root).localname}>".encode()
    declared = "UTF-8" if body.startswith(_DECLARATION) else (root.getroottree().docinfo.encoding or "UTF-8").upper()
    if end.endswith(closing) and declared in ("UTF-8", "US-ASCII", "ASCII"):
        at = len(end) - len(closing)
        return body[:at] + signature + body[at:]
    # An empty root (<a/>), or an encoding the splice cannot write ASCII into: append, and serialise again.
    root.append(etree.fromstring(signature))
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class TrustedKey:
    """A registered certificate's public key, parsed once, with what verification needs of it."""

    fingerprint: str
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    method: str
    not_before: float  # POSIX seconds
    not_after: float
    subject: str

    @classmethod
    def of(cls, certificate: Certificate) -> TrustedKey:
        key = certificate.public_key()
        return cls(fingerprint(certificate), key, method_of(key), certificate.not_valid_before_utc.timestamp(),
                   certificate.not_valid_after_utc.timestamp(), certificate.subject.rfc4514_string())

    def verifies(self, value: bytes, signed_info: bytes) -> bool:
        digest = hashlib.sha256(signed_info).digest()  # the same check as verify(signed_info, SHA-256), 3-4 us less
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                size = (self.key.curve.key_size + 7) // 8
                if len(value) != 2 * size:
                    return False
                der = encode_dss_signature(int.from_bytes(value[:size], "big"), int.from_bytes(value[size:], "big"))
                self.key.verify(der, digest, _ECDSA_PREHASHED)
            else:
                self.key.verify(value, digest, _PKCS1, _PREHASHED)
        except InvalidSignature:
            return False
        return True


def verify(data: bytes, trusted: Mapping[str, TrustedKey], *, signer: str = "the agency",
           limit: int = MAX_MESSAGE_BYTES, now: float | None = None) -> etree._Element:
    """The root of `data` with its signature detached, once the gate's parse and the signature passed.

    `trusted` is the signer's current certificates by fingerprint. Raises `Refused`: the gate's codes
    for what is not safe XML, `unsigned` or `bad-signature` for the signature. The element returned
    is what the enveloped-signature transform leaves: the document as signed, ready for its schema.
    """
    root = parse_safely(data, limit)
    detach(root, trusted, signer=signer, now=time.time() if now is None else now)
    return root


def detach(root: etree._Element, trusted: Mapping[str, TrustedKey], *, signer: str, now: float) -> None:
    """Check the enveloped signature of a parsed document and remove it, or raise `Refused`."""
    signatures = list(root.iter(SIGNATURE))
    if not signatures:
        raise Refused(UNSIGNED, f"no ds:Signature: every message must be signed by {signer}")
    if len(signatures) > 1:
        raise _bad(f"{len(signatures)} ds:Signature elements; exactly one, enveloped in the root, is allowed")
    (signature,) = signatures
    if signature.getparent() is not root or signature.getnext() is not None:
        raise _bad("the ds:Signature must be the last child of the root element")
    signed_info, value, candidates = _read_signature(signature, trusted, signer)
    canonical_signed_info = _canonical(signed_info)
    method, expected_digest = _as_written(canonical_signed_info) or _profile(signed_info)
    _remove_keeping_tail(signature)
    if not hmac.compare_digest(hashlib.sha256(_canonical(root)).digest(), expected_digest):
        raise _bad("the digest does not match the document: it was changed after it was signed")
    for candidate in candidates:
        if candidate.method != method:
            continue
        if not candidate.not_before <= now <= candidate.not_after:
            raise _bad(f"certificate sha256:{candidate.fingerprint[:16]} of {signer} is expired or not yet valid")
        if candidate.verifies(value, canonical_signed_info):
            return
    raise _bad(f"the signature value does not verify with {signer}'s registered certificate"
               + ("s" if len(candidates) > 1 else ""))


def _bad(reason: str) -> Refused:
    return Refused(BAD_SIGNATURE, reason)


def _read_signature(signature: etree._Element, trusted: Mapping[str, TrustedKey], signer: str
                    ) -> tuple[etree._Element, bytes, list[TrustedKey]]:
    """SignedInfo, the signature value, and the registered keys that may have made it."""
    children = list(signature)
    tags = [child.tag for child in children]
    if tags not in ([_SIGNED_INFO, _SIGNATURE_VALUE], [_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO]):
        # ds:Object and anything else is refused: it is where wrapping attacks hide the content that was signed.
        raise _bad("ds:Signature must hold SignedInfo, SignatureValue and KeyInfo only")
    value = _base64(children[1].text, "SignatureValue")
    if not trusted:
        raise _bad(f"{signer} has no registered certificate")
    if len(children) == 2:
        return children[0], value, list(trusted.values())
    certificates = list(children[2].iter(_X509_CERTIFICATE))
    if not certificates:
        return children[0], value, list(trusted.values())
    if len(certificates) > 1:
        raise _bad("KeyInfo holds several certificates; it may name the signer's only")
    named = _named_fingerprint(certificates[0].text)
    if named not in trusted:
        raise _bad(f"the certificate sha256:{named[:16]} in KeyInfo is not registered for {signer}")
    return children[0], value, [trusted[named]]


# The X509Certificate texts seen, by the SHA-256 of the DER each decodes to: a pure function of the text,
# remembered because every message of an agency carries the same one (a base64 decode and a hash spared).
_NAMED: dict[str, str] = {}
_NAMED_KEPT = 64  # texts; the dict is emptied when full, so texts that never repeat cost a decode each, as before
_NAMED_LONGEST = 16 * 1024  # characters; a longer text is decoded every time and never kept


def _named_fingerprint(text: str | None) -> str:
    named = _NAMED.get(text) if text is not None else None
    if named is None:
        named = hashlib.sha256(_base64(text, "X509Certificate")).hexdigest()
        if text is not None and len(text) <= _NAMED_LONGEST:
            if len(_NAMED) >= _NAMED_KEPT:
                _NAMED.clear()
            _NAMED[text] = named
    return named


# SignedInfo's canonical text as every signer of the profile that writes it as the hub does: the bytes around
# the digest, for each signature method.
_WRITTEN = tuple((method, *(part.encode("ascii") for part in _SIGNED_INFO_TEXT.replace("{method}", method)
                                                                                 .split("{digest}")))
                 for method in (ECDSA_SHA256, RSA_SHA256))
_DIGEST_CHARACTERS = 44  # base64 of 32 bytes


def _as_written(canonical: bytes) -> tuple[str, bytes] | None:
    """(signature method, digest) when canonical SignedInfo is the profile written exactly as the hub writes it.

    Equal canonical text means equal content: every element, attribute and algorithm is the profile's, so
    `_profile`'s walk of the tree is not needed. None for any other text (other prefixes, white space, ids):
    `_profile` then decides.
    """
    if len(canonical) < _DIGEST_CHARACTERS:
        return None
    for method, before, after in _WRITTEN:
        if (len(canonical) == len(before) + _DIGEST_CHARACTERS + len(after) and canonical.startswith(before)
                and canonical.endswith(after)):
            try:
                digest = base64.b64decode(canonical[len(before):len(before) + _DIGEST_CHARACTERS], validate=True)
            except (binascii.Error, ValueError):
                return None  # not plain base64 (white space, say): `_profile` reads it, or says what is wrong
            return (method, digest) if len(digest) == 32 else None
    return None


def _profile(signed_info: etree._Element) -> tuple[str, bytes]:
    """(signature method, digest) SignedInfo gives, once it is shown to be exactly the profile; else `Refused`."""
    children = list(signed_info)
    if [child.tag for child in children] != [_C14N_METHOD, _SIGNATURE_METHOD, _REFERENCE]:
        raise _bad("SignedInfo must hold CanonicalizationMethod, SignatureMethod and one Reference")
    c14n, method, reference = children
    _algorithm(c14n, (EXC_C14N,), "CanonicalizationMethod")
    _algorithm(method, (ECDSA_SHA256, RSA_SHA256), "SignatureMethod")
    if reference.get("URI") != "":
        raise _bad(f"the Reference must cover the whole document (URI=\"\"), not URI={reference.get('URI')!r}")
    parts = list(reference)
    if [part.tag for part in parts] != [_TRANSFORMS, _DIGEST_METHOD, _DIGEST_VALUE]:
        raise _bad("the Reference must hold Transforms, DigestMethod and DigestValue")
    transforms = list(parts[0])
    if len(transforms) != 2 or any(transform.tag != _TRANSFORM for transform in transforms):
        raise _bad("the transforms must be enveloped-signature then exclusive canonicalisation")
    _algorithm(transforms[0], (ENVELOPED,), "the first Transform")
    _algorithm(transforms[1], (EXC_C14N,), "the second Transform")
    _algorithm(parts[1], (SHA256,), "DigestMethod")
    digest = _base64(parts[2].text, "DigestValue")
    if len(digest) != 32:
        raise _bad("DigestValue is not a SHA-256 digest")
    return method.get("Algorithm"), digest


def _algorithm(element: etree._Element, allowed: tuple[str, ...], what: str) -> None:
    algorithm = element.get("Algorithm")
    if algorithm not in allowed or len(element) or (element.text or "").strip():
        raise _bad(f"{what} {algorithm!r} is not in the profile (expected {' or '.join(allowed)}, with no content)")


def _base64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} is not base64") from None


def _remove_keeping_tail(element: etree._Element) -> None:
    """Remove `element` as the enveloped transform does: the node alone, not the text after it (lxml's tail)."""
    parent = element.getparent()
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)
