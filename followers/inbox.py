"""The inbox: each agency's answers, applied to the declarations once, and recorded.

`Inbox.receive` decides what one inbound message does, with no broker in
sight (so it is tested directly); `messaging.consumers.consume` runs it behind
one durable consumer per agency, on JetStream or RabbitMQ, and settles each
delivery by the verdict it gives:

1. the message passes the XML gate, then the signature check (its one
   enveloped signature by a certificate registered for the agency, else dead
   as `unsigned` or `bad-signature`: docs/signing.md), then the agency's
   reply schema, and is read into `Reply`s (adapters);
2. the replies of a batch (whatever is ready when the first arrives, up to
   64: messaging.broker.consume_batches) are applied per declaration in one save
   (the declarations at once, so group commit shares transactions), each once
   per its reply id: the ids live in the aggregate, so the inbox and the
   effect commit together, and a redelivery, even long after the broker's
   duplicate window, changes nothing. A declaration whose answers the hub
   refuses together has them tried one message at a time, so only the
   refused message is dead-lettered;
3. the batch is recorded, in one transaction, for
   `GET /v1/declarations/{id}/messages`;
4. only then is it acknowledged. A crash before the ack, or an ack lost on
   the way, redelivers it: step 2 is then a no-op and step 3 fills in what
   is missing.

An agency may also raise a risk alert (enforcement assistance, docs/lifecycle.md): an
alert notice of the hub's own schema (xsd/notices/, function 9) about a
declaration routed to it, on one of that declaration's parties, its ship or
one of its containers (I7, docs/lifecycle.md); anything else is dead-lettered.
The alert's id derives from the agency, its message id and the alert's
content, so a redelivery raises nothing new while nobody can guess it from
the message id; the enforcement process then holds the declarations it
touches. A declaration already released or withdrawn is not reopened, but the
alert is raised all the same, for the declarations still to come.

The inspection agency may also issue a sanitary, phytosanitary or veterinary
certificate: UN/CEFACT SPSCertificate XML (xsd/sps/, the ePhyto shape),
signed like its answers. Once the signature verifies, it becomes a licence
(`Declarations.issue_licence`, source `broker`), keeping the signed XML as
its signature; a redelivery is the same licence, and a certificate from any
other agency, or with the number of a licence issued with other content, is
dead-lettered (`not-issuer`, `licence-conflict`).

A message the hub refuses (hostile, invalid, unreadable, about an unknown
declaration or one not routed to that agency, about a version it cannot
establish or one replaced since, moving forward a version an agency rejected,
or too late) changes nothing: its verdict is `dead`, with a stable code
below, and the consumer publishes it to `tradehub.dead.<agency>` with its
reason in headers, then settles it so that it is never delivered again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from lxml import etree

from adapters.border import parse_border_replies
from adapters.customs import parse_responses
from adapters.inspection import parse_decisions
from adapters.inspection.sps import ISSUER, certificate_content, is_certificate, signing_key, xmldsig
from adapters.keyring import Registry
from adapters.maritime import parse_maritime_replies
from adapters.messages import Reply
from adapters.notices import NS, ORIGINAL, read_agency_alert
from adapters.outbound import answered_version
from adapters.port import parse_port_replies
from adapters.signing import verify
from adapters.xml import UNEXPECTED_ROOT, UNSIGNED, Refused
from hub.declarations import (
    AlertInvalid,
    AlertNotFound,
    Conflict,
    Declarations,
    InvalidLicence,
    agency_alert_id,
    subject_key,
    subjects_of,
)
from hub.declarations.application import DeclarationNotFound, alert_subject
from hub.declarations.domainmodel import (
    AgencyNotRouted,
    Declaration,
    DeclarationClosed,
    DeclarationError,
    StaleResponse,
    UnknownVersion,
    VersionRejected,
)
from messaging.outcomes import APPLIED, DEAD, UNCHANGED, DeadLetter, Verdict, dead
from projections import dead_letters
from projections.dead_letters import DeadLetters, Refusal
from projections.messages import INBOUND, Record, record

Lookup = Callable[[str], dict[str, Any] | None]
# agency -> reads one inbound message into its replies, or raises `Refused`.
# A reader takes the bytes, or the root the gate parsed and the signature check verified (adapters.xml.admit_any).
READERS: dict[str, Callable[[bytes | etree._Element, Lookup], list[Reply]]] = {
    "customs": parse_responses,
    "inspection": lambda data, _lookup: parse_decisions(data),
    "port": lambda data, _lookup: parse_port_replies(data),
    "maritime": lambda data, _lookup: parse_maritime_replies(data),
    "border": lambda data, _lookup: parse_border_replies(data),
}

# Why a message was dead-lettered, beside the gate's own refusal codes (adapters.xml.REFUSAL_CODES).
UNREADABLE = "unreadable"
NO_REPLY = "no-reply"
MIXED_DECLARATIONS = "mixed-declarations"
UNKNOWN_DECLARATION = "unknown-declaration"
NOT_ROUTED = "not-routed"
FOREIGN_SUBJECT = "foreign-subject"
STALE = "stale"
UNKNOWN_VERSION = "unknown-version"
REJECTED_VERSION = "rejected-version"
CLOSED = "closed"
REFUSED_BY_HUB = "refused-by-hub"
UNKNOWN_AGENCY = "unknown-agency"
# An SPS certificate (adapters/inspection/sps.py): from an agency that does not issue them; with content the
# licence registry refuses; or numbered as a licence already issued with other content.
NOT_ISSUER = "not-issuer"
LICENCE_INVALID = "licence-invalid"
LICENCE_CONFLICT = "licence-conflict"

# The application's refusals of an answer, as dead-letter codes: the first class that matches.
REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (DeclarationNotFound, UNKNOWN_DECLARATION),
    (AgencyNotRouted, NOT_ROUTED),
    (StaleResponse, STALE),
    (UnknownVersion, UNKNOWN_VERSION),
    (VersionRejected, REJECTED_VERSION),
    (DeclarationClosed, CLOSED),
    (DeclarationError, REFUSED_BY_HUB),
    (ValueError, REFUSED_BY_HUB),
)
NOTICES_NAMESPACE = NS.encode()
_NOTICE_TAG = f"{{{NS}}}"
ALERT_RAISED = ORIGINAL  # an alert notice's function code when it raises the alert
# The declarations of a batch are applied at once, so that group commit puts their saves in one transaction.
_THREADS = ThreadPoolExecutor(16, thread_name_prefix="answers")


def in_notices(body: bytes | etree._Element) -> bool:
    """Whether a message may be in the hub's notice schema: a cheap test, the schema decides."""
    return NOTICES_NAMESPACE in body if isinstance(body, bytes) else body.tag.startswith(_NOTICE_TAG)


class Inbox:
    """Applies inbound messages to the declarations and records them; thread-safe."""

    def __init__(self, app: Declarations, views: Any, dead: DeadLetters | None = None, *,
                 signatures: Registry | None = None) -> None:
        self.app = app
        self.views = views
        # The agencies' registered certificates: every message must be signed by one of its agency's
        # (docs/signing.md). The hub's wiring always passes them; None only in tests of what follows.
        self.signatures = signatures
        self.dead = dead or DeadLetters(views)  # the dead-letter table, bodies sealed as the hub is configured

    def receive(self, agency: str, body: bytes) -> Verdict:
        """Read, apply and record one message from `agency`; errors other than refusals propagate."""
        return self.receive_many(agency, [body])[0]

    def receive_many(self, agency: str, bodies: Sequence[bytes]) -> list[Verdict]:
        """`receive` for a batch: each declaration's answers in one save, every record in one transaction.

        A declaration whose answers the hub refuses together is tried again message by message, so that
        only the refused message is dead-lettered. The verdicts come in the order of `bodies`.
        """
        verdicts: list[Verdict | None] = [None] * len(bodies)
        read: dict[str, list[tuple[int, list[Reply]]]] = {}
        for index, signed in enumerate(bodies):
            body = self._verified(agency, signed)
            if isinstance(body, Verdict):
                verdicts[index] = body
                continue
            if is_certificate(body):  # a certificate the agency issues: a licence, about no declaration
                verdicts[index] = self._certificate(agency, body, signed)
                continue
            if in_notices(body):  # an agency's own alert, in the hub's notice schema
                verdicts[index] = self._alert(agency, body, signed)
                if verdicts[index] is not None:
                    continue
            outcome = self._read(agency, body)
            if isinstance(outcome, Verdict):
                verdicts[index] = outcome
            else:
                read.setdefault(outcome[0].declaration_id, []).append((index, outcome))
        current = self.app.get_many(list(read)) if read else {}  # one read for the batch, where the store can
        records = []
        groups = [(declaration_id, messages, current.get(UUID(declaration_id)))
                  for declaration_id, messages in read.items()]
        for outcomes in _THREADS.map(self._apply_messages, groups):
            for index, replies, (refusal, declaration, changed) in outcomes:
                verdicts[index] = refusal or Verdict(APPLIED if changed else UNCHANGED, replies[0].declaration_id)
                if refusal is None:
                    records.append((bodies[index], replies, declaration.version))
        self._answers_recorded(agency, records)
        return verdicts

    def _verified(self, agency: str, body: bytes) -> bytes | etree._Element | Verdict:
        """The message as its agency signed it, the signature detached, or why it is dead: `unsigned` or
        `bad-signature` (after the gate's parse, before its schema and before anything is applied).

        The parsed root is what the readers get (adapters.xml.admit_any takes it): parsed once, by the gate."""
        if self.signatures is None or agency not in READERS:
            return body
        try:
            return verify(body, self.signatures.keys_for(agency), signer=agency)
        except Refused as refused:
            return dead(refused.code, str(refused))

    def _alert(self, agency: str, body: bytes | etree._Element, signed: bytes) -> Verdict | None:
        """Raise the risk alert an agency sends, once per its message id; None if the body is no alert.

        `signed` is the message as it came, signature included: what the record keeps."""
        try:
            alert = read_agency_alert(body)
        except Refused as refused:
            return None if refused.code == UNEXPECTED_ROOT else dead(refused.code, str(refused))
        if alert.function_code != ALERT_RAISED:
            return dead(REFUSED_BY_HUB, "an agency raises alerts (function 9); only an officer clears them",
                        alert.declaration_id)
        try:
            declaration = self.app.get(alert.declaration_id)
        except DeclarationNotFound as error:
            return dead(UNKNOWN_DECLARATION, str(error), alert.declaration_id)
        if agency not in declaration.routed_agencies:
            return dead(NOT_ROUTED, f"the declaration is not routed to {agency}", alert.declaration_id)
        try:
            subject = alert_subject(alert.subject_kind, alert.subject)
        except AlertInvalid as error:
            return dead(REFUSED_BY_HUB, str(error), alert.declaration_id)
        if subject_key(alert.subject_kind, subject) not in subjects_of(declaration.document):
            return dead(FOREIGN_SUBJECT, f"{alert.subject_kind} {subject} is none of the parties, ship or containers "
                                         f"of declaration {alert.declaration_id}", alert.declaration_id)
        alert_id = agency_alert_id(agency, alert.message_id, alert.subject_kind, subject, alert.reason,
                                   alert.declaration_id)
        try:
            raised, outcome = self.app.get_alert(alert_id), UNCHANGED  # delivered again
        except AlertNotFound:
            try:
                raised = self.app.raise_alert(alert.subject_kind, alert.subject, alert.reason, f"agency:{agency}",
                                              alert_id=alert_id)
            except AlertInvalid as error:
                return dead(REFUSED_BY_HUB, str(error), alert.declaration_id)
            outcome = APPLIED
        self._record([Record(INBOUND, agency, alert.message_id, alert.declaration_id, alert.version,
                             f"alert {raised.subject_kind} {raised.subject}", ALERT_RAISED,
                             raised.created_on.isoformat(), _text_of(signed))])
        return Verdict(outcome, alert.declaration_id)

    def _certificate(self, agency: str, body: bytes | etree._Element, signed: bytes) -> Verdict:
        """Issue the licence an SPS certificate states (docs/licences.md), once: a certificate delivered or sent
        again is the licence issued before, unchanged; one with that number and other content is refused.

        Only the inspection agency issues certificates over the broker: from any other, even signed by it, the
        certificate is dead as `not-issuer`. The licence keeps the certificate as the agency signed it
        (`signed`, base64) with the fingerprint of the registered certificate whose key made the signature, so
        that its signature can be checked again on every use. Certificates are not in the message record: that
        is kept per declaration, and the licence holds the signed document itself."""
        if agency != ISSUER:
            return dead(NOT_ISSUER, f"{agency} sent an SPS certificate; only {ISSUER} issues certificates over the "
                                    "broker")
        if self.signatures is None or not isinstance(body, etree._Element):
            return dead(UNSIGNED, "an SPS certificate becomes a licence only with its issuer's verified signature")
        try:
            content = certificate_content(body)
            key = signing_key(signed, self.signatures.keys_for(agency), signer=agency)
        except Refused as refused:
            return dead(refused.code, str(refused))
        try:
            issued = self.app.issue_licence(content, f"agency:{agency}", source="broker",
                                            signature=xmldsig(signed, key))
        except InvalidLicence as error:
            return dead(LICENCE_INVALID, f"certificate {content['number']}: {error}")
        except Conflict as error:
            return dead(LICENCE_CONFLICT, f"certificate {content['number']}: {error}")
        return Verdict(APPLIED if issued.created else UNCHANGED)

    def _apply_messages(self, group: tuple[str, list[tuple[int, list[Reply]]], Declaration | None]
                        ) -> list[tuple[int, list[Reply], tuple]]:
        """One declaration's messages in one save; if the hub refuses them together, one by one."""
        declaration_id, messages, current = group
        together = self._apply(declaration_id, [reply for _, message in messages for reply in message], current)
        if together[0] is None or len(messages) == 1:
            return [(index, message, together) for index, message in messages]
        return [(index, message, self._apply(declaration_id, message)) for index, message in messages]

    def _read(self, agency: str, body: bytes | etree._Element) -> Verdict | list[Reply]:
        """The replies of one message about one declaration, or why it is refused."""
        reader = READERS.get(agency)
        if reader is None:
            return dead(UNKNOWN_AGENCY, f"no agency {agency!r}")
        try:
            replies = reader(body, self._document)
        except Refused as refused:
            return dead(refused.code, str(refused))
        except (KeyError, ValueError, AttributeError, TypeError) as error:  # valid to the schema, yet not ours to read
            return dead(UNREADABLE, f"{type(error).__name__}: {error}")
        if not replies:
            return dead(NO_REPLY, "the message holds no reply")
        declarations = {reply.declaration_id for reply in replies}
        if len(declarations) > 1:
            return dead(MIXED_DECLARATIONS, f"one message answers {len(declarations)} declarations; "
                                            "send one message per declaration")
        [declaration_id] = declarations
        try:
            UUID(declaration_id)
        except ValueError:
            return dead(UNKNOWN_DECLARATION, f"{declaration_id!r} is not a declaration id", declaration_id)
        return replies

    def _apply(self, declaration_id: str, replies: Sequence[Reply], current: Declaration | None = None
               ) -> tuple[Verdict | None, Any, bool]:
        """Apply replies in one save: (None, declaration, changed), or (why the hub refuses them, None, False).

        `current` is the declaration as read for the batch; a refusal may leave it half changed, so it
        is used for one attempt only.
        """
        try:
            declaration, changed = self.app.answer(declaration_id, [Answering(reply) for reply in replies],
                                                   current=current)
        except (DeclarationNotFound, DeclarationError, ValueError) as error:
            code = next(code for refusal, code in REFUSALS if isinstance(error, refusal))
            return dead(code, str(error), declaration_id), None, False
        return None, declaration, changed

    def _document(self, declaration_id: str) -> dict[str, Any] | None:
        try:
            return self.app.get(declaration_id).document
        except (DeclarationNotFound, ValueError):
            return None

    def _answers_recorded(self, agency: str, answers: Sequence[tuple[bytes, Sequence[Reply], int]]) -> None:
        """Record applied messages, (body, replies, declaration version) each, in one transaction."""
        self._record([Record(INBOUND, agency, replies[0].message_id, replies[0].declaration_id,
                             replies[0].version or version, "reply " + "+".join(reply.code for reply in replies),
                             replies[0].code, max(_iso(reply.issued_at) for reply in replies), _text_of(body))
                      for body, replies, version in answers])

    def _record(self, records: Sequence[Record]) -> None:
        if records:
            with self.views.transaction() as cursor:
                record(cursor, records)

    def dead_lettered(self, agency: str, letters: Sequence[DeadLetter]) -> None:
        """Record what the consumer is about to dead-letter, in one transaction (docs/dead-letters.md)."""
        with self.views.transaction() as cursor:
            self.dead.record(cursor, agency, [
                Refusal(letter.body, letter.verdict.code, letter.verdict.reason, letter.verdict.declaration_id,
                        letter.deliveries, letter.headers) for letter in letters])

    def replay_requested(self, agencies: Sequence[str]) -> int:
        """Replay the dead letters of these agencies an admin asked for: each taken by one worker only, received
        as a delivery would be (so the reply ids keep anything from applying twice), its outcome recorded."""
        replayed = 0
        for letter_id in self.dead.requested(agencies):
            letter = self.dead.claim(letter_id)
            if letter is None:
                continue  # another worker took it
            try:
                verdict = self.receive_many(letter.agency, [letter.body])[0]
            except Exception as error:  # noqa: BLE001 - the hub's own trouble: said on the letter, asked again
                self.dead.replayed(letter.id, dead_letters.FAILED, "", f"{type(error).__name__}: {error}")
            else:
                outcome = dead_letters.DEAD if verdict.outcome == DEAD else verdict.outcome
                self.dead.replayed(letter.id, outcome, verdict.code, verdict.reason)
            replayed += 1
        return replayed


@dataclass(frozen=True)
class Answering:
    """A reply, applied to the version it answers (I4, docs/lifecycle.md): the version it names, or else the
    version of the hub message it quotes (Trafic2000 replies name none). One it cannot establish is refused,
    never applied to whatever version is current."""

    reply: Reply

    def apply_to(self, declaration: Declaration) -> bool:
        reply = self.reply
        if reply.version is None:
            version = answered_version(declaration, reply.agency, reply.answers)
            if version is None:
                raise UnknownVersion(f"{reply.agency}'s reply {reply.message_id} names no version, and answers "
                                     f"{reply.answers or 'no message'}, which the hub never sent it about this "
                                     "declaration")
            reply = replace(reply, version=version)
        return reply.apply_to(declaration)


_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _text_of(body: bytes) -> str:
    """The message as text, decoded as it declares (the gate has admitted it, so it decodes)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        declared = _ENCODING.match(body)
        try:
            return body.decode(declared.group(1).decode() if declared else "utf-8", errors="replace")
        except LookupError:
            return body.decode("utf-8", errors="replace")


def _iso(moment: str) -> str:
    """An ISO 8601 time as the message record writes every time, so records sort by it."""
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).isoformat()
