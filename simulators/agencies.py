"""Simulated agencies: what each does with a hub message, as deterministic rules.

An agency reads its message from the broker, as a real one would: the XML is
the message (headers only name what a Trafic2000 deletion notice does not
say), and it must pass the gate and the hub's published schema for it. The
agency then answers with a receipt, then a decision, each a separate message
in the agency's own reply format:

| agency | message | receipt | decision |
|---|---|---|---|
| customs | declaration, conveyance report or amendment | 02 received | 08 release; 03 rejected when the trader's reference contains `REJECT`; 05 physical control for controlled goods (below), then it waits for the inspection result |
| customs | recognition notice of a result | | 08 release on a pass, 03 rejected on a fail, without inspecting again; nothing for a version it rejected |
| customs | invalidation | | 10 invalidated |
| inspection | declaration or amendment | RCV | HPC, then IRP (inspection passed), then REL, as one message |
| inspection | recognition notice of a result | | REL on a pass, NAC on a fail |
| inspection | cancellation | | CAN |
| port | cargo notice or its amendment | RCV | none: goods wait for the release notice |
| port | release notice | RNR | REL |
| port | release revocation | RVR | HLD: the goods stop at the gate until a new release notice |
| port | visit request or its amendment | RCV | VID (visit id), then REL, as one message |
| port | cancellation | | CAN |
| maritime, border | FAL form | OK | Cleared |
| maritime, border | deletion of forms no longer needed | OK | |
| maritime, border | cancellation | | Cancelled |

The inspection agency also issues SPS certificates (`issue_certificate`:
UN/CEFACT SPSCertificate XML, adapters/inspection/sps.py), signed with its
key, on its own initiative rather than in answer to a hub message: a test or
`simulators.runner.publish_answers` sends them, and the hub makes each a
licence.

Customs controls physically the goods the shipped routing rules send to the
inspection agency: an item in HS chapters 01-24 or 44, or a health,
phytosanitary or veterinary certificate. Under mutual recognition it does
not inspect them itself: it answers 05 and releases on the inspection
agency's result when the hub's recognition notice brings it. A declaration
whose reference contains `ALERT` also makes customs raise a risk alert on its
first container (or, without containers, its declarant), with an alert
message of the hub's notice schema: the hub holds the declaration for it.
Other notices (alerts, and recognition notices to the port, maritime and
border agencies, which do not inspect here) are read and validated, and need
no answer.
Every reply's id derives from the message it answers, so a message delivered
twice is answered with the same ids and the hub applies the answer once.

Customs remembers what it rejected (`Memory`, one per simulator process, as a
real customs system keeps its decisions): a recognition notice about a
version it rejected is read and not answered, so it never releases what it
rejected; an amendment it does not reject clears the memory. The hub refuses
such a release anyway (docs/lifecycle.md, I2).

Given `Keys`, as the runner gives them, an agency checks the hub's enveloped
signature on every message before anything else (refusing an unsigned or
badly signed one as it refuses an invalid one), and signs every reply with
its own key, whose certificate the hub has registered for it
(docs/signing.md). Without, the rules alone: for tests of the rules.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from pathlib import Path
from typing import Any

from cryptography import x509
from lxml import etree
from stdnum.cn import uscc

from adapters.border import CREW_LIST_SCHEMA, PASSENGER_LIST_SCHEMA
from adapters.border import DECISION_SCHEMA as BORDER_DECISION
from adapters.border import RECEIPT_SCHEMA as BORDER_RECEIPT
from adapters.border import SUPPRESSION_SCHEMA as BORDER_SUPPRESSION
from adapters.customs import DECLARATION_SCHEMA as CUSTOMS_DECLARATION
from adapters.customs import RESPONSE_SCHEMA
from adapters.inspection import DECISION_SCHEMA as INSPECTION_DECISION
from adapters.inspection import DECLARATION_SCHEMA as INSPECTION_DECLARATION
from adapters.inspection.sps import certificate_xml
from adapters.keyring import hub_certificate, keys_directory, register_simulated
from adapters.maritime import DANGEROUS_GOODS_SCHEMA, GENERAL_DECLARATION_SCHEMA
from adapters.maritime import DECISION_SCHEMA as MARITIME_DECISION
from adapters.maritime import RECEIPT_SCHEMA as MARITIME_RECEIPT
from adapters.maritime import SUPPRESSION_SCHEMA as MARITIME_SUPPRESSION
from adapters.notices import ALERT_NOTICE_SCHEMA, NS, RECOGNITION_NOTICE_SCHEMA, agency_alert
from adapters.port import (
    CARGO_NOTICE_SCHEMA,
    RELEASE_NOTICE_SCHEMA,
    RELEASE_REVOCATION_SCHEMA,
    REPLIES_SCHEMA,
    VISIT_REQUEST_SCHEMA,
)
from adapters.signing import Signer, TrustedKey, verify
from adapters.xml import Schema, admit_any, check_outbound

PERSONALISATION = b"tradehub-sim-v1"
REJECT_MARK = "REJECT"
ALERT_MARK = "ALERT"
# Customs' risk profile: goods it controls physically (HS chapters, and WCO document codes of health,
# phytosanitary and veterinary certificates), the same goods the shipped rules route to inspection.
CONTROLLED_CHAPTERS = frozenset({f"{chapter:02d}" for chapter in range(1, 25)} | {"44"})
CONTROLLED_DOCUMENTS = frozenset({"851", "852", "853"})

MD = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"
DEC = "urn:wco:datamodel:WCO:DEC-DMS:2"
RES = "urn:wco:datamodel:WCO:RES-DMS:2"
RDS = "urn:wco:datamodel:WCO:Response_DS:DMS:2"
INSPECTION = "urn:tradehub:inspection:1"
PORT = "urn:tradehub:port:1"

NOTICES = (RECOGNITION_NOTICE_SCHEMA, ALERT_NOTICE_SCHEMA)
# What each agency accepts from the hub.
INBOX: dict[str, tuple[Schema, ...]] = {
    "customs": (CUSTOMS_DECLARATION, *NOTICES),
    "inspection": (INSPECTION_DECLARATION, *NOTICES),
    "port": (CARGO_NOTICE_SCHEMA, VISIT_REQUEST_SCHEMA, RELEASE_NOTICE_SCHEMA, RELEASE_REVOCATION_SCHEMA, *NOTICES),
    "maritime": (GENERAL_DECLARATION_SCHEMA, DANGEROUS_GOODS_SCHEMA, MARITIME_SUPPRESSION, *NOTICES),
    "border": (CREW_LIST_SCHEMA, PASSENGER_LIST_SCHEMA, BORDER_SUPPRESSION, *NOTICES),
}

# What each agency sends the hub, by root element: its reply schemas, and the alert notice customs raises.
REPLIES: dict[str, dict[str, Schema]] = {agency: {schema.root: schema for schema in schemas} for agency, schemas in {
    "customs": (RESPONSE_SCHEMA, ALERT_NOTICE_SCHEMA),
    "inspection": (INSPECTION_DECISION,),
    "port": (REPLIES_SCHEMA,),
    "maritime": (MARITIME_RECEIPT, MARITIME_DECISION),
    "border": (BORDER_RECEIPT, BORDER_DECISION),
}.items()}


@dataclass(frozen=True)
class Answer:
    """One reply message an agency sends the hub."""

    message_id: str
    body: bytes


Clock = Callable[[], datetime]


class Memory:
    """What a simulated agency remembers of its own decisions: the declarations customs rejected, and the
    version it rejected, the most recent `size` of them."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.rejected: OrderedDict[str, int] = OrderedDict()

    def reject(self, declaration_id: str, version: int) -> None:
        self.rejected[declaration_id] = version
        self.rejected.move_to_end(declaration_id)
        if len(self.rejected) > self.size:
            self.rejected.popitem(last=False)

    def assessed(self, declaration_id: str, version: int) -> None:
        """A later version assessed without rejecting it: the rejection no longer stands."""
        if self.rejected.get(declaration_id, version) < version:
            del self.rejected[declaration_id]

    def rejects(self, declaration_id: str) -> bool:
        return declaration_id in self.rejected


def _now() -> datetime:
    return datetime.now(UTC)


def reply_id(answered: str, kind: str) -> str:
    """Deterministic: the same hub message always gets the same reply ids (32 hex digits)."""
    return blake2b(f"{answered}:{kind}".encode(), digest_size=16, person=PERSONALISATION).hexdigest()


@dataclass(frozen=True)
class Keys:
    """What the simulated agencies sign their replies with, and the hub certificate they check its messages by."""

    signers: Mapping[str, Signer]
    hub: Mapping[str, TrustedKey]

    @classmethod
    def load(cls, keys_dir: Path, agencies: Iterable[str]) -> Keys:
        """The agencies' keys in `keys_dir`, generated and registered with the hub on first start."""
        signers = register_simulated(keys_dir, agencies)
        trusted = TrustedKey.of(x509.load_pem_x509_certificate(hub_certificate(keys_dir)))
        return cls(signers, {trusted.fingerprint: trusted})

    @classmethod
    def from_environment(cls, agencies: Iterable[str], environ: Mapping[str, str] = os.environ) -> Keys:
        """`load` from the hub's keys directory: TRADEHUB_KEYS_DIR, else `keys` in TRADEHUB_DATA_DIR (./var)."""
        data_dir = Path(environ.get("TRADEHUB_DATA_DIR") or "var")
        return cls.load(keys_directory(data_dir, environ.get("TRADEHUB_KEYS_DIR", "")), agencies)


def answer(agency: str, body: bytes, headers: Mapping[str, str], clock: Clock = _now,
           memory: Memory | None = None, *, keys: Keys | None = None) -> list[Answer]:
    """The replies `agency` sends for one hub message, in order; `Refused` if the message is not valid.

    `memory` is what the agency remembers of its decisions (a fresh one, remembering nothing, if not given).
    With `keys`, the hub's signature is checked first (`Refused` coded unsigned or bad-signature), and every
    reply is signed with the agency's key.
    """
    if keys is None:
        return _answer(agency, admit_any(body, INBOX[agency]), headers, clock, memory)
    content = verify(body, keys.hub, signer="the hub")
    replies = _answer(agency, admit_any(content, INBOX[agency]), headers, clock, memory)  # the gate parsed it once
    signer = keys.signers[agency]
    return [Answer(reply.message_id, signer.sign(reply.body)) for reply in replies]


def _answer(agency: str, root: etree._Element, headers: Mapping[str, str], clock: Clock,
            memory: Memory | None) -> list[Answer]:
    memory = memory if memory is not None else Memory()
    if root.tag == RECOGNITION_NOTICE_SCHEMA.root:
        recognise = _RECOGNISING.get(agency)
        return recognise(root, clock(), memory) if recognise else []
    if root.tag in (schema.root for schema in NOTICES):
        return []
    return _RULES[agency](root, headers, clock(), memory)


def _recognised(root: etree._Element) -> tuple[str, str, str, str, str]:
    """A recognition notice's id, declaration id and version, and the inspecting agency and its result."""
    return (_text(root, f"{{{NS}}}FunctionalReferenceID"), _text(root, f"{{{NS}}}ID"),
            _text(root, f"{{{NS}}}VersionID"), _text(root, f"{{{NS}}}Inspection/{{{NS}}}AgencyCode"),
            _text(root, f"{{{NS}}}Inspection/{{{NS}}}ResultCode"))


# ---- customs (WCO RES-DMS:2) -------------------------------------------------------------------

def _customs(root: etree._Element, _headers: Mapping[str, str], now: datetime, memory: Memory) -> list[Answer]:
    declaration = root.find(f"{{{DEC}}}Declaration")
    answered = _text(declaration, f"{{{DEC}}}FunctionalReferenceID")
    ident = _text(declaration, f"{{{DEC}}}ID")
    version = next(_text(statement, f"{{{DEC}}}StatementDescription")
                   for statement in declaration.iterchildren(f"{{{DEC}}}AdditionalInformation")
                   if _text(statement, f"{{{DEC}}}StatementCode") == "VERSION")
    if _text(declaration, f"{{{DEC}}}TypeCode") == "INV":
        return [customs_response(answered, ident, version, "10", now)]
    reference = _text(root, f".//{{{DEC}}}TraderAssignedReferenceID")
    receipt = customs_response(answered, ident, version, "02", now)
    if REJECT_MARK in reference:
        memory.reject(ident, int(version))
        return [receipt, customs_response(answered, ident, version, "03", now,
                                           error=f"reference {reference} is marked {REJECT_MARK}")]
    memory.assessed(ident, int(version))
    alert = [_customs_alert(declaration, answered, ident, version, reference, now)] if ALERT_MARK in reference else []
    if _controlled(declaration):
        return [receipt, *alert, customs_response(answered, ident, version, "05", now)]
    return [receipt, *alert, customs_response(answered, ident, version, "08", now)]


def _controlled(declaration: etree._Element) -> bool:
    """Whether customs would control these goods physically (its risk profile, above)."""
    classification = "/".join(f"{{{DEC}}}{name}" for name in (
        "GoodsShipment", "GovernmentAgencyGoodsItem", "Commodity", "Classification", "ID"))
    chapters = {(element.text or "")[:2] for element in declaration.iterfind(classification)}
    documents = {_text(document, f"{{{DEC}}}TypeCode")
                 for document in declaration.iterchildren(f"{{{DEC}}}AdditionalDocument")}
    return bool(chapters & CONTROLLED_CHAPTERS or documents & CONTROLLED_DOCUMENTS)


def _customs_recognises(root: etree._Element, now: datetime, memory: Memory) -> list[Answer]:
    answered, ident, version, inspector, result = _recognised(root)
    if memory.rejects(ident):
        return []  # customs rejected this declaration: another agency's result changes nothing
    if result == "pass":
        return [customs_response(answered, ident, version, "08", now)]
    return [customs_response(answered, ident, version, "03", now,
                              error=f"the {inspector} inspection failed; customs recognises its result")]


def _customs_alert(declaration: etree._Element, answered: str, ident: str, version: str, reference: str,
                   now: datetime) -> Answer:
    """A risk alert customs raises on the declaration's first container, else on its declarant."""
    container = _text(declaration,
                      f"{{{DEC}}}GoodsShipment/{{{DEC}}}Consignment/{{{DEC}}}TransportEquipment/{{{DEC}}}ID")
    declarant = _text(declaration, f"{{{DEC}}}Declarant/{{{DEC}}}ID")
    subject = {"subject_kind": "container", "subject": container} if container else {
        "subject_kind": "party", "subject": declarant + uscc.calc_check_digit(declarant)}
    ident_of_alert = reply_id(answered, "customs-alert")
    alert = {"alert_id": f"CUS-{ident_of_alert[:12].upper()}", **subject, "raised_by": "customs",
             "raised_at": now.isoformat(), "reason": f"reference {reference} is marked {ALERT_MARK}"}
    return Answer(ident_of_alert, agency_alert(alert, ident_of_alert, ident, int(version), now))


def customs_response(answered: str, ident: str, version: str, code: str, now: datetime, *,
                     error: str = "") -> Answer:
    """The simulated customs' WCO RES response with function `code` to hub message `answered`.

    It quotes the declaration `ident` at `version`, carries `error` as its error description when given,
    and is checked against the published response schema before it is returned.
    """
    reference = reply_id(answered, f"customs-{code}")
    root = etree.Element(f"{{{MD}}}MetaData", nsmap={"md": MD, None: RES, "ds": RDS})
    etree.SubElement(root, f"{{{MD}}}WCODataModelVersionCode").text = "3.6"
    etree.SubElement(root, f"{{{MD}}}WCOTypeName").text = "RES"
    response = etree.SubElement(root, f"{{{RES}}}Response")
    etree.SubElement(response, f"{{{RES}}}FunctionCode").text = code
    etree.SubElement(response, f"{{{RES}}}FunctionalReferenceID").text = reference
    issued = etree.SubElement(response, f"{{{RES}}}IssueDateTime")
    etree.SubElement(issued, f"{{{RDS}}}DateTimeString", formatCode="304").text = _compact(now)
    if error:
        failure = etree.SubElement(response, f"{{{RES}}}Error")
        etree.SubElement(failure, f"{{{RES}}}Description").text = error
        etree.SubElement(failure, f"{{{RES}}}ValidationCode").text = "SIM001"
    _reference(response, RES, answered, ident, version)
    return Answer(reference, check_outbound(root, RESPONSE_SCHEMA))


# ---- inspection and port (the hub's own reply schemas) -----------------------------------------

def _inspection_recognises(root: etree._Element, now: datetime, _memory: Memory) -> list[Answer]:
    answered, ident, version, _, result = _recognised(root)
    return [_replies(INSPECTION, "Decisions", INSPECTION_DECISION, answered, ident, version, now,
                     [("Decision", "REL" if result == "pass" else "NAC")])]


def _inspection(root: etree._Element, _headers: Mapping[str, str], now: datetime, _memory: Memory) -> list[Answer]:
    answered, ident, version, _ = _hub_message(root, INSPECTION)
    if _text(root, f"{{{INSPECTION}}}TypeCode") == "INV":
        return [_replies(INSPECTION, "Decisions", INSPECTION_DECISION, answered, ident, version, now,
                         [("Decision", "CAN")])]
    return [_replies(INSPECTION, "Decisions", INSPECTION_DECISION, answered, ident, version, now,
                     [("Decision", "RCV")]),
            _replies(INSPECTION, "Decisions", INSPECTION_DECISION, answered, ident, version, now,
                     [("Decision", "HPC"), ("Decision", "IRP"), ("Decision", "REL")])]


def _port(root: etree._Element, _headers: Mapping[str, str], now: datetime, _memory: Memory) -> list[Answer]:
    answered, ident, version, function = _hub_message(root, PORT)

    def replies(*kinds: tuple[str, str]) -> Answer:
        return _replies(PORT, "Replies", REPLIES_SCHEMA, answered, ident, version, now, list(kinds))

    if root.tag == RELEASE_REVOCATION_SCHEMA.root:  # a cancellation of the release notice, not of the cargo
        return [replies(("Acknowledgement", "RVR"), ("Decision", "HLD"))]
    if function == "1":
        return [replies(("Acknowledgement", "CAN"))]
    if root.tag == RELEASE_NOTICE_SCHEMA.root:
        return [replies(("Acknowledgement", "RNR")), replies(("Decision", "REL"))]
    if root.tag == VISIT_REQUEST_SCHEMA.root:
        return [replies(("Acknowledgement", "RCV")), replies(("Visit", "VID"), ("Decision", "REL"))]
    return [replies(("Acknowledgement", "RCV"))]


def _hub_message(root: etree._Element, namespace: str) -> tuple[str, str, str, str]:
    """The answered message id, declaration id, version and function code of a hub message."""
    return (_text(root, f"{{{namespace}}}FunctionalReferenceID"), _text(root, f"{{{namespace}}}ID"),
            _text(root, f"{{{namespace}}}VersionID"), _text(root, f"{{{namespace}}}FunctionCode"))


def _replies(namespace: str, envelope: str, schema: Schema, answered: str, ident: str, version: str,
             now: datetime, kinds: list[tuple[str, str]]) -> Answer:
    """One reply message holding a reply of each (element, code) in `kinds`, in order."""
    root = etree.Element(f"{{{namespace}}}{envelope}", nsmap={None: namespace})
    for kind, code in kinds:
        reply = etree.SubElement(root, f"{{{namespace}}}{kind}")
        etree.SubElement(reply, f"{{{namespace}}}FunctionCode").text = code
        etree.SubElement(reply, f"{{{namespace}}}FunctionalReferenceID").text = reply_id(answered, f"{kind}-{code}")
        issued = etree.SubElement(reply, f"{{{namespace}}}IssueDateTime")
        etree.SubElement(issued, f"{{{namespace}}}DateTimeString", formatCode="304").text = _compact(now)
        _reference(reply, namespace, answered, ident, version)
        if code == "VID":
            visit = etree.SubElement(reply, f"{{{namespace}}}CallTransportEvent")
            etree.SubElement(visit, f"{{{namespace}}}ID").text = f"V-{answered[:12].upper()}"
    first_kind, first_code = kinds[0]
    return Answer(reply_id(answered, f"{first_kind}-{first_code}"), check_outbound(root, schema))


def issue_certificate(content: Mapping[str, Any], keys: Keys, **details: Any) -> Answer:
    """An SPS certificate the simulated inspection agency issues: licence `content` as UN/CEFACT SPSCertificate
    XML (`certificate_xml`, which `details` go to: direction, names, issue time), signed with its key.

    The message id derives from the content alone, so the same certificate sent twice is one message to the
    broker's duplicate window; one with the same number and other content is another message (which the hub
    refuses as a conflict).
    """
    body = certificate_xml(content, **details)
    digest = blake2b(json.dumps(dict(content), sort_keys=True).encode(), digest_size=16, person=PERSONALISATION)
    return Answer(f"sps-{digest.hexdigest()}", keys.signers["inspection"].sign(body))


# ---- maritime and border (Trafic2000 receipts and formality decisions) --------------------------

def _fal(agency: str, receipt_schema: Schema, decision_schema: Schema, suppression: Schema):
    def rules(root: etree._Element, headers: Mapping[str, str], now: datetime, _memory: Memory) -> list[Answer]:
        answered = root.find("Header").get("LARefId")
        if root.tag == suppression.root:
            ship_call = headers.get("Tradehub-Declaration-Id", "")
            if headers.get("Tradehub-Message") == "cancellation":
                return [fal_reply(decision_schema, agency, answered, ship_call, now, "Cancelled")]
            return [fal_reply(receipt_schema, agency, answered, ship_call, now, "OK")]
        ship_call = root.find("Body/ShipCallInformation").get("ShipCallId")
        return [fal_reply(receipt_schema, agency, answered, ship_call, now, "OK"),
                fal_reply(decision_schema, agency, answered, ship_call, now, "Cleared")]

    return rules


def fal_reply(schema: Schema, agency: str, answered: str, ship_call: str, now: datetime, code: str) -> Answer:
    """A Trafic2000 receipt or formality decision (`schema`) from `agency` to hub message `answered`.

    `code` is the receipt's or the decision's status (OK, Cleared, Cancelled) for the ship call
    `ship_call`; the reply is checked against `schema` before it is returned.
    """
    reference = reply_id(answered, f"{schema.root}-{code}")
    root = etree.Element(schema.root)
    header = etree.SubElement(root, "Header", Version="5.2", LARefId=reference, NCARefId=answered,
                              SentAt=now.strftime("%Y-%m-%dT%H:%M:%SZ"), From=agency.upper(), To="TRADEHUB")
    body = etree.SubElement(root, "Body", ShipCallId=ship_call)
    if schema.root.endswith("Receipt"):
        header.set("StatusCode", code)
    else:
        body.set("StatusCode", code)
    return Answer(reference, check_outbound(root, schema))


# ---- common -------------------------------------------------------------------------------------

def _reference(parent: etree._Element, namespace: str, answered: str, ident: str, version: str) -> None:
    declaration = etree.SubElement(parent, f"{{{namespace}}}Declaration")
    etree.SubElement(declaration, f"{{{namespace}}}FunctionalReferenceID").text = answered
    etree.SubElement(declaration, f"{{{namespace}}}ID").text = ident
    etree.SubElement(declaration, f"{{{namespace}}}VersionID").text = version


def _text(parent: etree._Element, path: str) -> str:
    element = parent.find(path)
    return (element.text or "").strip() if element is not None else ""


def _compact(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


Rules = Callable[[etree._Element, Mapping[str, str], datetime, Memory], list[Answer]]
_RULES: dict[str, Rules] = {
    "customs": _customs,
    "inspection": _inspection,
    "port": _port,
    "maritime": _fal("maritime", MARITIME_RECEIPT, MARITIME_DECISION, MARITIME_SUPPRESSION),
    "border": _fal("border", BORDER_RECEIPT, BORDER_DECISION, BORDER_SUPPRESSION),
}
AGENCIES = tuple(_RULES)
# What the agencies that recognise another's inspections do with its result (the others need no answer).
_RECOGNISING: dict[str, Callable[[etree._Element, datetime, Memory], list[Answer]]] = {
    "customs": _customs_recognises,
    "inspection": _inspection_recognises,
}
