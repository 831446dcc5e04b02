"""SPS certificates (UN/CEFACT SPSCertificate, as IPPC ePhyto carries them) in and out: certificate <-> licence content.

An inspection agency issues a sanitary, phytosanitary or veterinary
certificate over the broker: the certificate XML, signed with the agency's key
like any of its messages (docs/signing.md). The inbox (followers/inbox.py)
verifies the signature, then `certificate_content` reads the certificate into
the content of a licence (docs/licences.md; the fields of
`hub.declarations.licence.CONTENT_FIELDS`):

| licence field | from |
|---|---|
| number | `SPSExchangedDocument/ID` |
| type | `SPSExchangedDocument/TypeCode` (UN/EDIFACT 1001): 851 and 657 phytosanitary, 852 health (sanitary), 853 veterinary |
| issuer | always `inspection`: who signed it, never what the document says |
| holder | the USCC (`ID` with `schemeID="USCC"`) of the consignee when the goods come into China (`ImportSPSCountry` CN), of the consignor when they leave it (`ExportSPSCountry` CN) |
| hs_scope | every trade line item's HS code (`ApplicableSPSClassification` whose `SystemName` is HS), each once, in order |
| quantity, unit | the sum over the items of `NetWeightMeasure`, or for an item that is counted, of its level-1 `PhysicalSPSPackage/ItemQuantity` (with `unitCode`); GRM, KGM and TNE add up in the finest of them, other units only to themselves |
| valid_from, valid_to | `SPSExchangedDocument/EffectiveSPSPeriod` `StartDateTime` and `EndDateTime` (their dates as written) |

Every refusal is the XML gate's `Refused`, so the inbox dead-letters it with
its code and a reason naming the element, XPath-like
(`/rsm:SPSCertificate/rsm:SPSConsignment/ram:IncludedSPSConsignmentItem[1]/...`).
`certificate_xml` builds a valid certificate from licence content, for the
simulated inspection agency and the tests. The schema and why it is the hub's
own are in xsd/sps/README.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from lxml import etree

from adapters.signing import SIGNATURE, TrustedKey, verify
from adapters.xml import (
    BAD_SIGNATURE,
    MAX_MESSAGE_BYTES,
    SCHEMA_INVALID,
    Refused,
    Schema,
    admit,
    builders,
    check_outbound,
    one_line,
    parse_safely,
)
from hub.declarations import values
from hub.declarations.licence import UnitMismatch, convert, plain

RSM = "urn:un:unece:uncefact:data:standard:SPSCertificate:17"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:21"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:21"
NAMESPACES = {"rsm": RSM, "ram": RAM, "udt": UDT}
CERTIFICATE_SCHEMA = Schema("sps/certificate.xsd", f"{{{RSM}}}SPSCertificate")

ISSUER = "inspection"  # the one agency whose certificates become licences
HOME = "CN"  # the hub's country: the holder is the Chinese party of the consignment
USCC_SCHEME = "USCC"
HS_SYSTEM = "HS"
# UN/EDIFACT 1001 document name codes -> licence types, and the code the hub writes for each type.
TYPES = {"851": "phytosanitary_certificate", "657": "phytosanitary_certificate", "852": "health_certificate",
         "853": "veterinary_certificate"}
TYPE_CODES = {"phytosanitary_certificate": "851", "health_certificate": "852", "veterinary_certificate": "853"}
MASS_UNITS = ("GRM", "KGM", "TNE")  # finest first: a sum of mixed ones is in the finest present
COUNTED_PACKAGE = "NE"  # UN/ECE Rec 21 "unpacked": the package type of a counted item the hub writes

_CERTIFICATE = "/rsm:SPSCertificate"
_DOCUMENT = f"{_CERTIFICATE}/rsm:SPSExchangedDocument"
_CONSIGNMENT = f"{_CERTIFICATE}/rsm:SPSConsignment"


def _ram(name: str) -> str:
    return f"{{{RAM}}}{name}"


def _refused(path: str, message: str) -> Refused:
    return Refused(SCHEMA_INVALID, f"{path}: {message}")


def _text(parent: etree._Element, name: str) -> str:
    element = parent.find(_ram(name))
    return " ".join((element.text or "").split()) if element is not None else ""


def is_certificate(body: bytes | etree._Element) -> bool:
    """Whether an inbound message is an SPS certificate: its root, or for bytes a cheap look; the schema decides."""
    if isinstance(body, etree._Element):
        return body.tag == CERTIFICATE_SCHEMA.root
    return RSM.encode() in body[:4096]


# ---- reading --------------------------------------------------------------------------------------------------

def certificate_content(xml: bytes | etree._Element, *, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """The licence content an SPS certificate states, or `Refused` naming the element at fault.

    `xml` is the certificate as bytes (the whole gate runs: size, no DTD or entity, the schema), or the root the
    gate already parsed and the signature check verified (adapters.signing.verify), its signature detached.
    """
    root = admit(xml, CERTIFICATE_SCHEMA, limit=limit)
    document, consignment = root
    valid_from, valid_to = _period(document)
    return {
        "number": _text(document, "ID"),
        "type": TYPES[_text(document, "TypeCode")],
        "issuer": ISSUER,
        "holder": _holder(consignment),
        "hs_scope": _hs_scope(consignment),
        **_quantity(consignment),
        "valid_from": valid_from,
        "valid_to": valid_to,
    }


def _period(document: etree._Element) -> tuple[str, str]:
    _moment(document.find(f"{_ram('IssueDateTime')}/{{{UDT}}}DateTimeString"), f"{_DOCUMENT}/ram:IssueDateTime")
    period = document.find(_ram("EffectiveSPSPeriod"))
    path = f"{_DOCUMENT}/ram:EffectiveSPSPeriod"
    start, end = (_moment(period.find(f"{_ram(name)}/{{{UDT}}}DateTimeString"), f"{path}/ram:{name}")
                  for name in ("StartDateTime", "EndDateTime"))
    if end < start:
        raise _refused(f"{path}/ram:EndDateTime", f"{end} is before the start of the period, {start}")
    return start, end


def _moment(element: etree._Element, path: str) -> str:
    """The date of an ISO 8601 date or date-time, as written (the issuer's own calendar day)."""
    text = element.text or ""
    try:
        if "T" in text:
            datetime.fromisoformat(text)
        return values.calendar_date(text[:10])
    except ValueError:
        raise _refused(f"{path}/udt:DateTimeString", f"{text} is not a date that exists") from None


def _holder(consignment: etree._Element) -> str:
    """The USCC of the consignment's Chinese party: the consignee of an import, the consignor of an export."""
    countries = {}
    for name in ("ExportSPSCountry", "ImportSPSCountry"):
        code = _text(consignment.find(_ram(name)), "ID")
        try:
            countries[name] = values.country(code)
        except ValueError as error:
            raise _refused(f"{_CONSIGNMENT}/ram:{name}/ram:ID", str(error)) from None
    if countries["ImportSPSCountry"] == HOME:
        party = "ConsigneeSPSParty"
    elif countries["ExportSPSCountry"] == HOME:
        party = "ConsignorSPSParty"
    else:
        raise _refused(f"{_CONSIGNMENT}/ram:ImportSPSCountry/ram:ID",
                       f"the goods neither enter nor leave {HOME} ({countries['ExportSPSCountry']} to "
                       f"{countries['ImportSPSCountry']}): no holder the hub knows")
    identifier = consignment.find(f"{_ram(party)}/{_ram('ID')}")
    path = f"{_CONSIGNMENT}/ram:{party}/ram:ID"
    if identifier is None or identifier.get("schemeID") != USCC_SCHEME:
        raise _refused(path, f"the holder must be identified by its USCC (ID with schemeID=\"{USCC_SCHEME}\")")
    try:
        return values.uscc(identifier.text or "")
    except ValueError as error:
        raise _refused(path, str(error)) from None


def _line_items(consignment: etree._Element) -> list[tuple[str, etree._Element]]:
    """Every trade line item with its XPath-like path."""
    found = []
    for outer, item in enumerate(consignment.iterchildren(_ram("IncludedSPSConsignmentItem")), start=1):
        for inner, line in enumerate(item.iterchildren(_ram("IncludedSPSTradeLineItem")), start=1):
            found.append((f"{_CONSIGNMENT}/ram:IncludedSPSConsignmentItem[{outer}]"
                          f"/ram:IncludedSPSTradeLineItem[{inner}]", line))
    return found


def _hs_scope(consignment: etree._Element) -> list[str]:
    scope: dict[str, None] = {}  # ordered, each once
    for path, line in _line_items(consignment):
        codes = 0
        for index, classification in enumerate(line.iterchildren(_ram("ApplicableSPSClassification")), start=1):
            if _text(classification, "SystemName").upper() != HS_SYSTEM:
                continue
            where = f"{path}/ram:ApplicableSPSClassification[{index}]/ram:ClassCode"
            try:
                scope[values.hs_prefix(_text(classification, "ClassCode"))] = None
            except ValueError as error:
                raise _refused(where, str(error)) from None
            codes += 1
        if not codes:
            raise _refused(path, f"no HS code: an ApplicableSPSClassification with SystemName {HS_SYSTEM} and its "
                                 "ClassCode is required")
    return list(scope)


def _quantity(consignment: etree._Element) -> dict[str, str]:
    """{"quantity", "unit"}: the items' quantities summed, in the finest mass unit present, else their one unit."""
    stated = [_item_quantity(path, line) for path, line in _line_items(consignment)]
    units = {unit for _, _, unit in stated}
    unit = next((mass for mass in MASS_UNITS if mass in units), stated[0][2])
    total = Decimal(0)
    for path, amount, item_unit in stated:
        try:
            total += convert(amount, item_unit, unit)
        except UnitMismatch:
            raise _refused(path, f"its quantity is in {item_unit}, which does not add up with {unit} "
                                 "(GRM, KGM and TNE convert; any other unit only to itself)") from None
    quantity = plain(total)
    try:
        values.decimal(quantity, positive=True)
    except ValueError as error:
        raise _refused(_CONSIGNMENT, f"the items' quantities add up to {quantity} {unit}, which {error}") from None
    return {"quantity": quantity, "unit": unit}


def _item_quantity(path: str, line: etree._Element) -> tuple[str, Decimal, str]:
    """(path of the element, amount, unit) of one trade line item: its net weight, else its counted packages."""
    weight = line.find(_ram("NetWeightMeasure"))
    if weight is not None:
        where, element, unit = f"{path}/ram:NetWeightMeasure", weight, weight.get("unitCode")
    else:
        packages = [package for package in line.iterchildren(_ram("PhysicalSPSPackage"))
                    if _text(package, "LevelCode") == "1"]
        if len(packages) != 1:
            raise _refused(path, "no quantity: a NetWeightMeasure, or one PhysicalSPSPackage of LevelCode 1 with "
                                 "its ItemQuantity and unitCode, is required"
                                 if not packages else f"{len(packages)} PhysicalSPSPackage of LevelCode 1; one "
                                                      "states the quantity of a counted item")
        element = packages[0].find(_ram("ItemQuantity"))
        where, unit = f"{path}/ram:PhysicalSPSPackage/ram:ItemQuantity", element.get("unitCode")
        if unit is None:
            raise _refused(where, "the unitCode is required: it is the licence's unit")
    try:
        values.unit(unit)
    except ValueError as error:
        raise _refused(f"{where}/@unitCode", str(error)) from None
    return where, Decimal(" ".join((element.text or "").split())), unit


# ---- signatures ----------------------------------------------------------------------------------------------

def signing_key(signed: bytes, trusted: Mapping[str, TrustedKey], *, signer: str = ISSUER,
                now: float | None = None) -> str:
    """The fingerprint of the registered certificate whose key made the signature of `signed`, or `Refused`.

    The certificate the signature's KeyInfo names is tried first (every signer of the profile names it); without
    one, each registered certificate in turn.
    """
    now = time.time() if now is None else now
    named = _named_certificate(parse_safely(signed))
    candidates = [named] if named in trusted else [] if named else list(trusted)
    for fingerprint in candidates:
        try:
            verify(signed, {fingerprint: trusted[fingerprint]}, signer=signer, now=now)
        except Refused:
            continue
        return fingerprint
    raise Refused(BAD_SIGNATURE, f"no registered certificate of {signer} verifies the signature")


def _named_certificate(root: etree._Element) -> str:
    signature = root.find(SIGNATURE)
    if signature is None:
        return ""
    certificate = signature.find(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
    try:
        der = base64.b64decode("".join((certificate.text or "").split()), validate=True) if certificate is not None \
            else b""
    except (binascii.Error, ValueError):
        return ""
    return hashlib.sha256(der).hexdigest() if der else ""


def verified_certificate(signed: bytes, trusted: Mapping[str, TrustedKey], *, signer: str = ISSUER,
                         now: float | None = None) -> tuple[dict[str, Any], str]:
    """(licence content, fingerprint of the signing certificate) of a signed certificate, or `Refused`.

    What a licence's "xmldsig" signature is checked by: the signature against `signer`'s registered
    certificates, then the content read from the document it covers.
    """
    root = verify(signed, trusted, signer=signer, now=now)
    return certificate_content(root), signing_key(signed, trusted, signer=signer, now=now)


def signed_certificate_content(signed: bytes) -> dict[str, Any]:
    """The licence content of a signed certificate whose signature the caller has verified already: the
    enveloped ds:Signature detached as the transform does, then `certificate_content`. `Refused` (a ValueError)
    if it is not a certificate the hub reads; the extractor of adapters.licences.JwsSeal for "xmldsig"."""
    root = parse_safely(signed)
    signatures = list(root.iter(SIGNATURE))
    if len(signatures) != 1 or signatures[0].getparent() is not root:
        raise Refused(BAD_SIGNATURE, "a signed certificate holds one ds:Signature, enveloped in its root")
    detach_signature(signatures[0])
    return certificate_content(root)


def detach_signature(signature: etree._Element) -> None:
    """Remove an enveloped signature as the enveloped-signature transform does: the element, not its tail."""
    parent, previous = signature.getparent(), signature.getprevious()
    if signature.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        else:
            parent.text = (parent.text or "") + signature.tail
    parent.remove(signature)


def xmldsig(signed: bytes, fingerprint: str) -> dict[str, str]:
    """A licence's signature for a certificate that came signed: the XML as received, base64, and the key."""
    return {"format": "xmldsig", "value": base64.b64encode(signed).decode("ascii"), "key": fingerprint}


# ---- writing -------------------------------------------------------------------------------------------------

_TAGS = {name: f"{{{RAM}}}{name}" for name in (
    "Name", "ID", "TypeCode", "IssueDateTime", "IssuerSPSParty", "EffectiveSPSPeriod", "StartDateTime", "EndDateTime",
    "ConsignorSPSParty", "ConsigneeSPSParty", "ExportSPSCountry", "ImportSPSCountry", "IncludedSPSConsignmentItem",
    "IncludedSPSTradeLineItem", "SequenceNumeric", "Description", "NetWeightMeasure", "ApplicableSPSClassification",
    "SystemName", "ClassCode", "PhysicalSPSPackage", "LevelCode", "ItemQuantity")} | {
    "DateTimeString": f"{{{UDT}}}DateTimeString"}
_add, _add_with = builders(_TAGS)


def certificate_xml(content: Mapping[str, Any], *, direction: str = "import", partner_country: str = "NZ",
                    holder_name: str = "", partner_name: str = "Overseas trading partner",
                    issuer_name: str = "China inspection and quarantine (simulated)",
                    issued_at: datetime | None = None, description: str = "") -> bytes:
    """A schema-valid, unsigned SPS certificate that `certificate_content` reads back as `content`.

    `direction` says whether the goods come into China (the holder is the consignee) or leave it (the
    consignor); the other party is a foreign one in `partner_country`, identified by name only. Each HS prefix
    of the scope is one trade line item; the quantity is shared out among them exactly (the first takes what
    does not divide), as net weight for GRM, KGM and TNE, else as a counted package's ItemQuantity.
    """
    if direction not in ("import", "export"):
        raise ValueError(f"direction {direction!r}: expected import or export")
    if content["type"] not in TYPE_CODES:
        raise ValueError(f"an SPS certificate is none of {content['type']!r}; it is one of {sorted(TYPE_CODES)}")
    root = etree.Element(CERTIFICATE_SCHEMA.root, nsmap={"rsm": RSM, "ram": RAM, "udt": UDT})
    document = etree.SubElement(root, f"{{{RSM}}}SPSExchangedDocument")
    _add(document, "Name", one_line(f"{content['type'].replace('_', ' ').capitalize()}", 512))
    _add(document, "ID", content["number"])
    _add(document, "TypeCode", TYPE_CODES[content["type"]])
    _date_time(document, "IssueDateTime", (issued_at or datetime.now(UTC)).astimezone(UTC).isoformat(
        timespec="seconds"))
    _add(_add(document, "IssuerSPSParty"), "Name", _words(issuer_name, "Inspection agency"))
    period = _add(document, "EffectiveSPSPeriod")
    _date_time(period, "StartDateTime", content["valid_from"])
    _date_time(period, "EndDateTime", content["valid_to"])
    consignment = etree.SubElement(root, f"{{{RSM}}}SPSConsignment")
    holder = (content["holder"], _words(holder_name, f"Holder {content['holder']}"))
    partner = ("", _words(partner_name, "Overseas trading partner"))
    consignor, consignee = (partner, holder) if direction == "import" else (holder, partner)
    for name, (identifier, party_name) in (("ConsignorSPSParty", consignor), ("ConsigneeSPSParty", consignee)):
        party = _add(consignment, name)
        if identifier:
            _add_with(party, "ID", identifier, {"schemeID": USCC_SCHEME})
        _add(party, "Name", party_name)
    export, imported = (partner_country, HOME) if direction == "import" else (HOME, partner_country)
    _add(_add(consignment, "ExportSPSCountry"), "ID", export)
    _add(_add(consignment, "ImportSPSCountry"), "ID", imported)
    item = _add(consignment, "IncludedSPSConsignmentItem")
    scope, shares = list(content["hs_scope"]), _shares(Decimal(content["quantity"]), len(content["hs_scope"]))
    lines = [[prefix] for prefix in scope] if shares else [scope]  # too little to share out: one line, every code
    for sequence, (prefixes, share) in enumerate(zip(lines, shares or [Decimal(content["quantity"])], strict=True),
                                                 start=1):
        _line(item, sequence, prefixes, share, content["unit"], _words(description, ""))
    return check_outbound(root, CERTIFICATE_SCHEMA)


def _words(text: str, otherwise: str) -> str:
    """Free text as the Text type admits it (one line, not blank, 512 characters at most), else `otherwise`."""
    return one_line(text, 512) or otherwise


def _date_time(parent: etree._Element, name: str, text: str) -> None:
    _add(_add(parent, name), "DateTimeString", text)


def _line(item: etree._Element, sequence: int, prefixes: Sequence[str], share: Decimal, unit: str,
          description: str) -> None:
    line = _add(item, "IncludedSPSTradeLineItem")
    _add(line, "SequenceNumeric", str(sequence))
    if description:
        _add(line, "Description", description)
    if unit in MASS_UNITS:
        _add_with(line, "NetWeightMeasure", plain(share), {"unitCode": unit})
    for prefix in prefixes:
        classification = _add(line, "ApplicableSPSClassification")
        _add(classification, "SystemName", HS_SYSTEM)
        _add(classification, "ClassCode", prefix)
    if unit not in MASS_UNITS:
        package = _add(line, "PhysicalSPSPackage")
        _add(package, "LevelCode", "1")
        _add(package, "TypeCode", COUNTED_PACKAGE)
        _add_with(package, "ItemQuantity", plain(share), {"unitCode": unit})


def _shares(quantity: Decimal, parts: int) -> list[Decimal]:
    """`quantity` in `parts` shares above zero that add up to it exactly (equal ones, the first taking the rest),
    or [] when it is too small to share out at the six decimal places a quantity may have.

    The shares are cut as many places finer than the quantity's last digit as `parts` has digits (never finer
    than six places), so that quantity / parts >= 10^exponent / parts > 10^(exponent - digits of parts).
    """
    if parts == 1:
        return [quantity]
    exponent = int(quantity.normalize().as_tuple().exponent)
    step = Decimal(1).scaleb(max(exponent - len(str(parts)), -6))
    share = (quantity / parts).quantize(step, rounding=ROUND_DOWN)
    return [quantity - share * (parts - 1), *[share] * (parts - 1)] if share > 0 else []
