"""The declarations application: every command is get → command → save.

Saves go through group commit, so concurrent commands share transactions.
Optimistic concurrency turns races into `VersionConflict`, except for
commands whose effect does not depend on what the caller saw (agency
responses, holds, withdrawal without an expected version): those are
retried on a fresh copy.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from copy import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, JSONTranscoder
from eventsourcing.popo import POPOApplicationRecorder

from .alert import SUBJECT_KINDS, Alert
from .attachments import checked_attachment
from .documents import FieldError, InvalidDeclaration, InvalidLicence, content_hash, validate_document, validate_licence
from .domainmodel import PEOPLE, Declaration, scrub
from .groupcommit import AsyncGroupCommit, GroupCommit
from .licence import (
    ISSUERS,
    LEDGER_KINDS,
    VALID,
    Licence,
    LicenceClosed,
    LicenceNumber,
    LicenceSeal,
    LicenceSignatureInvalid,
    UnitMismatch,
    convert,
    licence_id,
    number_index_id,
    plain,
)
from .party import REGISTER_MODES, REGISTER_OFF, REGISTER_REQUIRED, Party, PartyInvalid, party_fields, party_id
from .party import fill_parties as _fill_parties
from .personal_data import DataKeys, KeyedPOPORecorder, MasterKeyError, PersonalDataMapper, master_key
from .routing import RoutingRules
from .snapshots import SetAsList, Snapshotter, snapshot_interval
from .values import container_number, imo_number, text, uscc

_RETRIES = 20

Offload = Callable[..., Awaitable[Any]]  # offload(function, *args): its result, computed on a thread


class Answer(Protocol):
    """An agency's answer, as the application applies it (adapters' `Reply` is one)."""

    def apply_to(self, declaration: Declaration) -> bool: ...


class DeclarationNotFound(LookupError):
    """No declaration has this id."""


class AlertNotFound(LookupError):
    """No alert has this id."""


class AlertInvalid(ValueError):
    """An alert with a field the hub cannot take; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Conflict(Exception):
    """The command is valid but contradicts what is stored (HTTP 409)."""


class DuplicateReference(Conflict):
    """The declarant already used this reference for a different document."""


class NotDeclarant(PermissionError):
    """A party tried to declare on another party's behalf."""


class VersionConflict(Conflict):
    """The caller's copy is stale: someone else changed the declaration first."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected version {expected}, but the declaration is at version {actual}")
        self.expected = expected
        self.actual = actual


class LicenceNotFound(LookupError):
    """No licence has this number (of this issuer)."""


class LicenceAmbiguous(LookupError):
    """Several issuers use this number: the caller must name the issuer."""


class LicenceRefused(InvalidDeclaration):
    """A declaration cites licences that do not allow it; `errors` names each citation and why."""


@dataclass(frozen=True)
class Submission:
    declaration: Declaration
    created: bool


@dataclass(frozen=True)
class Issuance:
    licence: Licence
    created: bool


@dataclass(frozen=True)
class _Cited:
    """One citation of a licence by a goods item, resolved to the licence's id."""

    path: str  # $.items[i].licences[j]
    item: int
    number: str
    issuer: str
    licence: UUID
    quantity: Decimal
    unit: str
    hs_code: str


class Declarations(Application):
    """Declarations stored once, as event streams."""

    name = "declarations"

    def __init__(self, env: dict[str, str] | None = None, *, routing: RoutingRules | None = None,
                 seal: LicenceSeal | None = None, today: Callable[[], date] | None = None,
                 party_register: str = REGISTER_OFF):
        super().__init__(env)
        if party_register not in REGISTER_MODES:
            raise ValueError(f"party_register must be one of {', '.join(REGISTER_MODES)}, got {party_register!r}")
        self.party_register = party_register  # REGISTER_REQUIRED: declarations are checked against the register
        self.routing = routing or RoutingRules.load()
        self.seal = seal
        self.today = today or (lambda: datetime.now(UTC).date())
        self._group = GroupCommit(self.save_events)
        self._licences = _LicenceCache(self)
        self.data_keys = DataKeys(self._master_key(), self.recorder)  # type: ignore[arg-type]
        self.mapper.keys = self.data_keys  # the snapshot store's mapper too: eventsourcing gives it this one
        self.snapshotter = Snapshotter(self, snapshot_interval(self.env))  # hub/declarations/snapshots.py
        # How many recorded message bodies were sealed under a declaration's key (set where the views are wired).
        self.sealed_messages: Callable[[UUID], int] = lambda _: 0

    # ---- personal data (docs/personal-data.md) ---------------------------------------------

    def construct_recorder(self) -> Any:
        """eventsourcing's recorder; an in-memory one keeps data keys in memory too (`KeyedPOPORecorder`)."""
        recorder = super().construct_recorder()
        if type(recorder) is POPOApplicationRecorder:
            return KeyedPOPORecorder()
        return recorder

    def construct_mapper(self) -> Any:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=PersonalDataMapper)

    def _master_key(self) -> bytes:
        """PERSONAL_DATA_KEY of the environment (tradehub.bootstrap sets it); an in-memory store may go without,
        since its keys die with it."""
        encoded = self.env.get("PERSONAL_DATA_KEY")
        if encoded:
            return master_key(encoded)
        if isinstance(self.recorder, KeyedPOPORecorder):
            return os.urandom(32)
        raise MasterKeyError("PERSONAL_DATA_KEY is not set: a stored declaration's people are sealed under keys "
                             "wrapped by it (tradehub.bootstrap sets it from TRADEHUB_PERSONAL_DATA_KEY or the keys "
                             "directory)")

    def record_together(self, aggregate: Any) -> None:
        """Save an aggregate's new events in the next group commit with other callers' (docs/architecture.md);
        stored when this returns."""
        self._group.save(aggregate.collect_events())

    def erase_personal_data(self, declaration_id: UUID | str, by: str, reason: str) -> tuple[Declaration, bool]:
        """Erase the people a declaration names: destroy its data key, then record `PersonalDataErased`.

        Safe to run again, and after a crash between the two steps: the key is destroyed again (a no-op), and the
        event is recorded if it is not yet. Returns the declaration and whether this call recorded the erasure.
        `NothingToErase` for a declaration that names no one, or was stored before data keys."""
        by = text_field("erased_by", by, 70)
        reason = text_field("reason", reason, 500)
        declaration = self.get(declaration_id)
        if declaration.personal_data_erased is None and not declaration.data_key:
            declaration.erase_personal_data(by, reason, "", 0)  # raises NothingToErase, saying why
        self.data_keys.erase(declaration.id)
        if declaration.personal_data_erased is not None:
            return declaration, False
        messages = self.sealed_messages(declaration.id)
        recorded = False

        def command(current: Declaration) -> bool:
            nonlocal recorded
            recorded = current.erase_personal_data(by, reason, _now(), messages)
            return recorded

        return self._retrying(declaration.id, command, declaration), recorded

    def save_events(self, *events: Any) -> None:
        """`save` for domain events alone, as group commit hands them over: stored in one transaction.

        `Application.save` asks of every object whether it is an event or an aggregate through a runtime protocol
        check that costs about 20 µs each, a third of the Python work of saving an event, and done by the one
        thread that commits for all the others. The hub overrides no `_notify`, and takes its snapshots after
        the transaction, on a thread of their own (`Snapshotter`), so recording the events is all that `save`
        would do with them here."""
        processing = ProcessingEvent()
        processing.events.extend(events)
        self._record(processing)
        self.snapshotter.due(events)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(SetAsList())  # a snapshot's `applied_messages`

    def close(self) -> None:
        self.snapshotter.close()  # the snapshot being written first, then the store
        super().close()

    def submit(self, raw: Any, *, on_behalf_of: str | None = None) -> Submission:
        """Declare once. The same (declarant, reference) with the same content returns it.

        With `on_behalf_of`, the document's declarant must be that party. `submit_on_loop` is the same
        for an event loop.
        """
        declaration = self.prepare_submission(raw, on_behalf_of=on_behalf_of)
        try:
            if _citations(declaration.document):
                return self._kept(self._submit_citing(declaration))
            try:
                self._group.save(declaration.collect_events())
            except IntegrityError:
                return self.settle_duplicate(declaration)
            return self._kept(Submission(declaration, created=True))
        finally:
            self.data_keys.discard(declaration.data_key)  # a key whose submission was not stored

    async def submit_on_loop(self, raw: Any, committer: AsyncGroupCommit, offload: Offload, *,
                             on_behalf_of: str | None = None) -> Submission:
        """`submit`, for a caller on an event loop. Validation is CPU work and runs on the loop; the save joins
        `committer`'s next batch (built on this application's `save`); only a repeated submission reads the
        store, through `offload`, which runs a function on a thread. A declaration citing licences reads them
        and reserves its quantities: all of it on a thread."""
        if _cites_licences(raw):
            return await offload(self.submit, raw, on_behalf_of=on_behalf_of)
        if self.party_register == REGISTER_REQUIRED:  # the register is read from the store: on a thread
            return await offload(self.submit, raw, on_behalf_of=on_behalf_of)
        declaration = self.prepare_submission(raw, on_behalf_of=on_behalf_of)
        try:
            try:
                await committer.save(declaration.collect_events())
            except IntegrityError:
                return await offload(self.settle_duplicate, declaration)
            return self._kept(Submission(declaration, created=True))
        finally:
            self.data_keys.discard(declaration.data_key)

    def prepare_submission(self, raw: Any, *, on_behalf_of: str | None = None) -> Declaration:
        """Validate and route a submission, unsaved: the rules of `submit` up to the save."""
        raw = self.fill_parties(raw)
        document = validate_document(raw)
        if on_behalf_of is not None and document["declarant"]["id"] != on_behalf_of:
            raise NotDeclarant(f"{on_behalf_of} cannot declare as {document['declarant']['id']}")
        self._resolve_citations(document)
        return Declaration(
            kind=document["kind"],
            declarant=document["declarant"]["id"],
            reference=document["reference"],
            document=document,
            content_hash=content_hash(document),
            routes=self.routing.route(document),
            data_key=self.data_keys.new() if _names_people(document) else "",
        )

    def _kept(self, submission: Submission) -> Submission:
        """A stored submission's fresh data key becomes the store's (and this process's cached copy)."""
        if submission.created and submission.declaration.data_key:
            self.data_keys.saved(submission.declaration.id, submission.declaration.data_key)
        return submission

    def settle_duplicate(self, declaration: Declaration) -> Submission:
        """After `declaration` clashed with a stored one: that one if the content is the same."""
        existing = self.get(declaration.id)
        if existing.submitted_hash != declaration.content_hash:
            raise DuplicateReference(
                f"reference {existing.reference!r} of declarant {existing.declarant} "
                f"is already declaration {existing.id} with other content"
            )
        return Submission(existing, created=False)

    def amend(self, declaration_id: UUID | str, expected_version: int, raw: Any) -> Declaration:
        """Replace the document, if the caller saw the current version."""
        raw = self.fill_parties(raw)
        document = validate_document(raw)
        self._resolve_citations(document)
        digest = content_hash(document)
        for attempt in range(_RETRIES):
            declaration = self.get(declaration_id)
            if declaration.content_hash == digest and not declaration.withdrawn:
                return declaration  # already in effect: a repeated amendment changes nothing
            if declaration.version != expected_version:
                raise VersionConflict(expected_version, declaration.version)
            cited_before = {cited.licence for cited in _cited(declaration.document)}
            declaration.amend(document, digest, self.routing.route(document))
            if not cited_before and not _citations(document):
                try:
                    self._group.save(declaration.collect_events())
                except IntegrityError:
                    raise VersionConflict(expected_version, self.get(declaration_id).version) from None
                return declaration
            events = declaration.collect_events()
            citing = _cited(document)
            cited_now = {cited.licence for cited in citing}
            with self._licences.locked(cited_before | cited_now, fresh=attempt > 0) as licences:
                try:
                    events += self._write_off(document, citing, str(declaration.id), declaration.version, licences,
                                              given_back=cited_before - cited_now)
                except LicenceRefused:
                    if attempt > 0:
                        raise
                    continue  # decided on cached copies: a refusal is decided again on fresh ones
                try:
                    self._group.save(events)
                except IntegrityError:
                    self._licences.evict(cited_before | cited_now)
                    continue  # the declaration or a licence changed meanwhile: decide again on fresh copies
            return declaration
        raise VersionConflict(expected_version, self.get(declaration_id).version)

    def withdraw(
        self, declaration_id: UUID | str, reason: str, expected_version: int | None = None
    ) -> Declaration:
        def command(declaration: Declaration) -> bool:
            if expected_version is not None and declaration.version != expected_version:
                raise VersionConflict(expected_version, declaration.version)
            return declaration.withdraw(reason)

        return self._retrying(declaration_id, command)

    def record_response(self, declaration_id: UUID | str, agency: str, message_id: str,
                        status: str, responded_at: str, **details: Any) -> Declaration:
        """Apply an agency's answer, once per message id however often it arrives."""
        return self._retrying(
            declaration_id,
            lambda d: d.record_response(agency, message_id, status, responded_at, **details),
        )

    def record_inspection(self, declaration_id: UUID | str, agency: str, message_id: str,
                          result: str, inspected_at: str, **details: Any) -> Declaration:
        return self._retrying(
            declaration_id,
            lambda d: d.record_inspection(agency, message_id, result, inspected_at, **details),
        )

    def answer(self, declaration_id: UUID | str, answers: Sequence[Answer],
               *, current: Declaration | None = None) -> tuple[Declaration, bool]:
        """Apply several of an agency's answers together: all of them in one save, or none.

        Each is applied once per its message id; the flag says whether any changed the declaration.
        `current`, the declaration as just read (`get_many`), saves reading it again; if it turns
        out not to be current, the save clashes and the answers are decided again on a fresh read.
        """
        changed = [False]

        def command(declaration: Declaration) -> bool:
            changed[0] = any([answer.apply_to(declaration) for answer in answers])  # not short-circuited
            return changed[0]

        return self._retrying(declaration_id, command, current), changed[0]

    def place_hold(self, declaration_id: UUID | str, alert: dict[str, str]) -> Declaration:
        """Hold the declaration for an open alert (`Alert.details()`); a repeat changes nothing."""
        return self._retrying(declaration_id, lambda d: d.place_hold(alert))

    def lift_hold(self, declaration_id: UUID | str, alert_id: str) -> Declaration:
        return self._retrying(declaration_id, lambda d: d.lift_hold(alert_id))

    def dispatch_failed(self, declaration_id: UUID | str, agency: str, failed_version: int,
                        reason: str, failed_at: str) -> Declaration:
        """Record a dispatch failure on the declaration (docs/dispatch.md); a repeat changes nothing."""
        return self._retrying(declaration_id, lambda d: d.dispatch_failed(agency, failed_version, reason, failed_at))

    def dispatch_resumed(self, declaration_id: UUID | str, agency: str) -> Declaration:
        """Record that the agency's held-back messages are all published; a repeat changes nothing."""
        return self._retrying(declaration_id, lambda d: d.dispatch_resumed(agency))

    def attach_document(self, declaration_id: UUID | str, sha256: str, filename: str, media_type: str, size: int,
                        attached_by: str, attached_at: str) -> Declaration:
        """Record a supporting document whose bytes are already stored under `sha256`. A repeat of the same
        content changes nothing; `AttachmentInvalid` names a field at fault, `TooManyAttachments` past 20,
        `DeclarationClosed` once withdrawn. Racing callers are decided one after the other on fresh copies."""
        fields = checked_attachment(sha256, filename, media_type, size, attached_by, attached_at).fields()
        return self._retrying(declaration_id, lambda d: d.attach_document(**fields))

    def settle(self, checked: Mapping[UUID, int]) -> list[Declaration]:
        """Record the gate-out and releases now due (`Declaration.settle`), for each declaration the version
        through which the caller has held it for every earlier alert. One save for all where nothing clashes;
        the ones that changed are returned."""
        found = self.get_many(list(checked))
        settled = [declaration for ident, declaration in found.items() if declaration.settle(checked[ident])]
        if not settled:
            return []
        try:
            self._group.save([event for declaration in settled for event in declaration.collect_events()])
        except IntegrityError:  # one changed meanwhile: decide each again on a fresh copy
            return [self._retrying(declaration.id, lambda d, ident=declaration.id: d.settle(checked[ident]))
                    for declaration in settled]
        return settled

    # ---- licences and certificates (docs/licences.md): in the same log -------------------------------

    def issue_licence(self, fields: Any, issued_by: str, *, source: str = "api",
                      signature: dict[str, str] | None = None) -> Issuance:
        """Record a licence: signed here for its issuer when `signature` is None, else verified.

        `InvalidLicence` names the fields at fault (`$.signature` for a signature that does not verify); the
        same licence issued again returns the stored one; another under the same (issuer, number) is a
        `Conflict`."""
        content = validate_licence(fields)
        try:
            if signature is None:
                signature = self._seal().sign(content["issuer"], content)
            else:
                self._seal().verify(content["issuer"], content, signature)
        except LicenceSignatureInvalid as error:
            raise InvalidLicence([FieldError("$.signature", str(error))]) from None
        ident = licence_id(content["issuer"], content["number"])
        for _ in range(_RETRIES):
            existing = self._licences.fresh(ident)
            if existing is not None:
                if existing.content() != content:
                    raise Conflict(f"licence {content['number']} of {content['issuer']} is already issued with other "
                                   "content")
                return Issuance(existing, created=False)
            licence = Licence(**content, signature=signature, source=source, issued_by=issued_by)
            index = self._licences.fresh(number_index_id(content["number"]))
            if index is None:
                index = LicenceNumber(number=content["number"], issuer=content["issuer"])
            else:
                index.add(content["issuer"])
            try:
                self._group.save([*licence.collect_events(), *index.collect_events()])
            except IntegrityError:
                self._licences.evict({ident, index.id})
                continue  # issued meanwhile (the same licence, or another with this number): decide again
            return Issuance(licence, created=True)
        raise Conflict(f"licence {content['number']} of {content['issuer']} is being issued concurrently")

    def get_licence(self, number: str, issuer: str | None = None) -> Licence:
        """The licence (fresh from the store) numbered `number`: `LicenceNotFound`, or `LicenceAmbiguous` when
        several issuers use the number and none is named."""
        licence = self._licences.fresh(licence_id(self._issuer_of(number, issuer), number))
        if licence is None:
            raise LicenceNotFound(f"unknown licence {number}" + (f" of {issuer}" if issuer else ""))
        return licence

    def licence_with_ledger(self, number: str, issuer: str | None = None) -> tuple[Licence, list[dict[str, Any]]]:
        """The licence and its ledger: each reservation, return and consumption, oldest first, from one read of
        its stream."""
        ident = licence_id(self._issuer_of(number, issuer), number)
        licence, ledger = None, []
        for stored in self.events.get(ident):
            licence = stored.mutate(licence)
            kind = LEDGER_KINDS.get(type(stored))
            if kind is not None:
                ledger.append({"time": stored.timestamp.isoformat(), "kind": kind,
                               "declaration_id": stored.declaration_id,
                               "declaration_version": stored.declaration_version,
                               "quantity": stored.quantity, "unit": licence.unit,
                               "reason": getattr(stored, "reason", "")})
        if not isinstance(licence, Licence):
            raise LicenceNotFound(f"unknown licence {number}" + (f" of {issuer}" if issuer else ""))
        return licence, ledger

    def revoke_licence(self, number: str, issuer: str | None, by: str, reason: str) -> Licence:
        return self._licence_command(number, issuer, lambda licence, at: licence.revoke(by, reason, at))

    def suspend_licence(self, number: str, issuer: str | None, by: str, reason: str) -> Licence:
        return self._licence_command(number, issuer, lambda licence, at: licence.suspend(by, reason, at))

    def reinstate_licence(self, number: str, issuer: str | None, by: str, reason: str) -> Licence:
        return self._licence_command(number, issuer, lambda licence, at: licence.reinstate(by, reason, at))

    def settle_licences(self, declaration_id: UUID | str, declaration_version: int, outcome: str,
                        licence_ids: Sequence[UUID]) -> int:
        """Consume (`outcome` "released") or give back ("withdrawn", "rejected") the declaration's reservations
        made at or before `declaration_version`. Idempotent: the licensing follower applies it from the log, and
        again after a crash. Returns how many licences changed."""
        key = str(declaration_id)
        for attempt in range(_RETRIES):
            with self._licences.locked(set(licence_ids), fresh=attempt > 0) as licences:
                changed = [licence for licence in licences.values()
                           if (licence.consume(key, declaration_version) if outcome == "released"
                               else licence.give_back(key, declaration_version, outcome))]
                if not changed:
                    if attempt == 0:
                        continue  # decided on cached copies: "nothing to do" is decided again on fresh ones
                    return 0
                try:
                    self._group.save([event for licence in changed for event in licence.collect_events()])
                except IntegrityError:
                    self._licences.evict(set(licence_ids))
                    continue
                return len(changed)
        raise Conflict(f"the licences of declaration {key} keep changing; try again")

    def _licence_command(self, number: str, issuer: str | None,
                         command: Callable[[Licence, str], bool]) -> Licence:
        ident = licence_id(self._issuer_of(number, issuer), number)
        for _ in range(_RETRIES):
            with self._licences.locked({ident}, fresh=True) as licences:
                licence = licences.get(ident)
                if licence is None:
                    raise LicenceNotFound(f"unknown licence {number}" + (f" of {issuer}" if issuer else ""))
                if not command(licence, datetime.now(UTC).isoformat()):
                    return licence
                try:
                    self._group.save(licence.collect_events())
                except IntegrityError:
                    self._licences.evict({ident})
                    continue
                return licence
        raise Conflict(f"licence {number} keeps changing; try again")

    def _issuer_of(self, number: str, issuer: str | None) -> str:
        if issuer is not None:
            if issuer not in ISSUERS:
                raise LicenceNotFound(f"no issuer {issuer!r}")
            return issuer
        index = self._licences.number_index(number)
        if index is None:
            raise LicenceNotFound(f"unknown licence {number}")
        if len(index.issuers) > 1:
            raise LicenceAmbiguous(f"licence number {number} is used by {' and '.join(index.issuers)}: name the issuer")
        return index.issuers[0]

    def _seal(self) -> LicenceSeal:
        if self.seal is None:
            raise LicenceSignatureInvalid("this hub has no licence seal configured: licences cannot be signed or verified")
        return self.seal

    def _resolve_citations(self, document: dict[str, Any]) -> None:
        """Name each citation's issuer in the stored document; `LicenceRefused` for a number no issuer used, or
        several did and the citation names none."""
        errors = []
        for path, _, citation in _each_citation(document):
            if "issuer" in citation:
                continue
            try:
                citation["issuer"] = self._issuer_of(citation["number"], None)
            except (LicenceNotFound, LicenceAmbiguous) as error:
                errors.append(FieldError(f"{path}.number", str(error)))
        if errors:
            raise LicenceRefused(self._with_other_faults(document, errors))

    def _with_other_faults(self, document: dict[str, Any], errors: list[FieldError]) -> list[FieldError]:
        """`errors` of citations that name no licence, with whatever is wrong with the other citations (a dry run
        of the write-off, on fresh copies it leaves unsaved), in the document's order."""
        citing = _cited(document)
        ids = {cited.licence for cited in citing}
        if ids:
            with self._licences.locked(ids, fresh=True) as licences:
                try:
                    self._write_off(document, citing, "", 0, licences)
                except LicenceRefused as more:
                    errors = errors + more.errors
                finally:
                    self._licences.evict(ids)
        order = {path: n for n, (path, _, _) in enumerate(_each_citation(document))}
        return sorted(errors, key=lambda error: order.get(error.path.rsplit(".", 1)[0], len(order)))

    def _submit_citing(self, declaration: Declaration) -> Submission:
        """Save a new declaration with the reservations of the licences it cites, in one transaction."""
        events = declaration.collect_events()
        citing = _cited(declaration.document)
        ids = {cited.licence for cited in citing}
        for attempt in range(_RETRIES):
            with self._licences.locked(ids, fresh=attempt > 0) as licences:
                try:
                    reserved = self._write_off(declaration.document, citing, str(declaration.id),
                                               declaration.version, licences)
                except (LicenceRefused, Conflict) as refusal:
                    if attempt == 0:
                        continue  # decided on cached copies: a refusal is decided again on fresh ones
                    try:  # declared before, and its quantity since consumed or given back: answer from the store
                        return self.settle_duplicate(declaration)
                    except DeclarationNotFound:
                        raise refusal from None
                try:
                    self._group.save([*events, *reserved])
                except IntegrityError:
                    self._licences.evict(ids)
                else:
                    return Submission(declaration, created=True)
            try:
                return self.settle_duplicate(declaration)  # declared before: nothing is reserved twice
            except DeclarationNotFound:
                continue  # a licence changed meanwhile: check again on fresh copies
        raise Conflict(f"the licences cited by declaration {declaration.id} keep changing; try again")

    def _write_off(self, document: dict[str, Any], citing: Sequence[_Cited], declaration_id: str, version: int,
                   licences: Mapping[UUID, Licence], given_back: set[UUID] = frozenset()) -> list[Any]:
        """Check every citation of `document` (`citing`) and reserve what it cites for the declaration's
        `version` (replacing its reservation), giving back the reservations of `given_back`. The licences' new
        events, or `LicenceRefused` naming every citation at fault."""
        errors: list[FieldError] = []
        wanted: dict[UUID, Decimal] = {}
        items: dict[UUID, list[dict[str, Any]]] = {}
        day = self.today()
        holders = {document["declarant"]["id"], (document.get("consignee") or {}).get("id")}
        refused: set[UUID] = set()
        for cited in citing:
            licence = licences.get(cited.licence)
            problem = (f"unknown licence {cited.number} of {cited.issuer}" if licence is None
                       else self._unusable(licence, day, holders, cited))
            if problem is not None:
                errors.append(FieldError(f"{cited.path}.{problem[0]}", problem[1]) if isinstance(problem, tuple)
                              else FieldError(f"{cited.path}.number", problem))
                continue
            wanted[cited.licence] = wanted.get(cited.licence, Decimal(0)) + convert(cited.quantity, cited.unit,
                                                                                   licence.unit)
            items.setdefault(cited.licence, []).append(
                {"item": cited.item, "quantity": plain(cited.quantity), "unit": cited.unit})
            available = licence.available_to(declaration_id)
            if wanted[cited.licence] > available and cited.licence not in refused:
                refused.add(cited.licence)
                errors.append(FieldError(f"{cited.path}.quantity",
                                         f"insufficient: {plain(available)} {licence.unit} remain on licence "
                                         f"{licence.number}, the declaration cites {plain(wanted[cited.licence])}"))
        if errors:
            raise LicenceRefused(errors)
        try:
            for ident, total in wanted.items():
                licences[ident].reserve(declaration_id, version, total, items[ident])
        except LicenceClosed as error:
            raise Conflict(str(error)) from None
        for ident in given_back:
            if ident in licences:
                licences[ident].give_back(declaration_id, version, "amended: no longer cited")
        return [event for licence in licences.values() for event in licence.collect_events()]

    def _unusable(self, licence: Licence, day: date, holders: set[str | None],
                  cited: _Cited) -> str | tuple[str, str] | None:
        """Why the citation cannot use the licence (a message for its number, or (field, message)), or None."""
        try:
            self._seal().verify(licence.issuer, licence.content(), licence.signature)
        except LicenceSignatureInvalid as error:
            return f"licence {licence.number} of {licence.issuer}: the signature does not verify ({error})"
        status = licence.status_on(day)
        if status != VALID:
            return f"licence {licence.number} is {_STATUS_WORDS[status](licence)}"
        if licence.holder not in holders:
            return f"licence {licence.number} is held by {licence.holder}, neither the declarant nor the consignee"
        if not licence.covers(cited.hs_code):
            return (f"HS code {cited.hs_code} is out of the scope of licence {licence.number} "
                    f"({', '.join(licence.hs_scope)})")
        try:
            convert(cited.quantity, cited.unit, licence.unit)
        except UnitMismatch as error:
            return ("unit", str(error))
        return None

    def get(self, declaration_id: UUID | str) -> Declaration:
        try:
            declaration = self.repository.get(_uuid(declaration_id))
        except AggregateNotFoundError:
            declaration = None
        if not isinstance(declaration, Declaration):  # the log holds alerts too
            raise DeclarationNotFound(f"no declaration {declaration_id}")
        return declaration

    # ---- alerts (enforcement assistance): stored in the same log as the declarations they hold ----

    def raise_alert(self, subject_kind: str, subject: str, reason: str, raised_by: str,
                    *, alert_id: UUID | None = None) -> Alert:
        """Raise an alert on a party (USCC), vessel (IMO number) or container (ISO 6346 number).

        `AlertInvalid` names the field at fault. With `alert_id` (an agency's alert, whose id derives
        from its message), raising it again returns the alert already raised.
        """
        values = _alert_values(subject_kind, subject, reason, raised_by)
        alert = Alert(**values) if alert_id is None else Alert._create(Alert.Raised, id=alert_id, **values)
        try:
            self._group.save(alert.collect_events())
        except IntegrityError:
            if alert_id is None:
                raise
            return self.get_alert(alert_id)
        return alert

    def clear_alert(self, alert_id: UUID | str, cleared_by: str) -> Alert:
        """Clear an alert (`AlertNotFound` if there is none); clearing it again changes nothing."""
        for _ in range(_RETRIES):
            alert = self.get_alert(alert_id)
            if not alert.clear(text_field("cleared_by", cleared_by, 70)):
                return alert
            try:
                self._group.save(alert.collect_events())
            except IntegrityError:
                continue
            return alert
        raise VersionConflict(alert.version, self.get_alert(alert_id).version)

    def get_alert(self, alert_id: UUID | str) -> Alert:
        try:
            alert = self.repository.get(_uuid(alert_id, AlertNotFound))
        except AggregateNotFoundError:
            alert = None
        if not isinstance(alert, Alert):
            raise AlertNotFound(f"no alert {alert_id}")
        return alert

    def get_many(self, declaration_ids: Sequence[UUID | str]) -> dict[UUID, Declaration]:
        """Several declarations, read in one query where the store can (PostgreSQL); unknown ids left out."""
        ids = list(dict.fromkeys(_uuid(ident) for ident in declaration_ids))
        select_streams = getattr(self.recorder, "select_streams", None)
        if select_streams is None:
            found = {}
            for ident in ids:
                try:
                    found[ident] = self.get(ident)
                except DeclarationNotFound:
                    pass
            return found
        declarations: dict[UUID, Declaration] = {}
        for stored in select_streams(ids):
            event = self.mapper.to_domain_event(stored)
            declarations[event.originator_id] = event.mutate(declarations.get(event.originator_id))
        return {ident: found for ident, found in declarations.items() if isinstance(found, Declaration)}

    def history(self, declaration_id: UUID | str) -> list[dict[str, Any]]:
        """The declaration's events, oldest first, as plain data."""
        return self.with_history(declaration_id)[1]

    def with_history(self, declaration_id: UUID | str) -> tuple[Declaration, list[dict[str, Any]]]:
        """The declaration and its events, from one read of its stream. Once its personal data is erased, no
        event shows a person, even in a process that still holds a copy of the erased key."""
        events = list(self.events.get(_uuid(declaration_id)))
        if not events:
            raise DeclarationNotFound(f"no declaration {declaration_id}")
        declaration = None
        for event in events:
            declaration = event.mutate(declaration)
        if not isinstance(declaration, Declaration):
            raise DeclarationNotFound(f"no declaration {declaration_id}")
        history = [_describe(event) for event in events]
        if declaration.personal_data_erased is not None:
            for entry in history:
                if isinstance(entry.get("document"), dict):
                    entry["document"] = scrub(entry["document"])
        return declaration, history

    def _retrying(self, declaration_id: UUID | str, command: Callable[[Declaration], bool],
                  current: Declaration | None = None) -> Declaration:
        for _ in range(_RETRIES):
            declaration = current if current is not None else self.get(declaration_id)
            current = None  # a retry reads afresh
            seen = declaration.version
            if not command(declaration):
                return declaration
            try:
                self._group.save(declaration.collect_events())
            except IntegrityError:
                continue  # someone else saved first: decide again on a fresh copy
            return declaration
        raise VersionConflict(seen, self.get(declaration_id).version)

    # ---- the business register (一照一码): parties by USCC, in the same log (hub/declarations/party.py) ----

    def register_party(self, uscc: str, name: str, address: str, status: str, by: str) -> PartyRegistration:
        """Register a party, or bring its entry to these fields; a repeat with the same fields changes nothing.

        `PartyInvalid` names every field at fault. Racing writers are decided again on a fresh copy, so the
        last to save wins, as with a record kept by hand.
        """
        fields = party_fields(uscc, name, address, status)
        for _ in range(_RETRIES):
            registration = _registration(fields, by, self.parties([fields["uscc"]]).get(fields["uscc"]))
            if not registration.changed:
                return registration
            try:
                self._group.save(registration.party.collect_events())
            except IntegrityError:
                continue  # someone registered or changed it meanwhile: decide again on a fresh copy
            return registration
        raise Conflict(f"the register entry of {fields['uscc']} kept changing; try again")

    def register_parties(self, entries: Sequence[Mapping[str, str]], by: str) -> list[PartyRegistration]:
        """`register_party` for many entries (each `party_fields`, every USCC once): one read and one save for
        all, or, if a save clashes with another writer, each on its own."""
        usccs = [fields["uscc"] for fields in entries]
        if len(set(usccs)) != len(usccs):
            raise ValueError("each USCC may appear once in a batch")
        found = self.parties(usccs)
        registrations = [_registration(fields, by, found.get(fields["uscc"])) for fields in entries]
        events = [event for done in registrations if done.changed for event in done.party.collect_events()]
        if events:
            try:
                self._group.save(events)
            except IntegrityError:
                return [self.register_party(**fields, by=by) for fields in entries]
        return registrations

    def get_party(self, uscc: str) -> Party:
        """The register's entry for a USCC (`PartyNotFound` if it has none, or if this is no USCC)."""
        try:
            canonical = party_fields(uscc, "-", "-", "active")["uscc"]
        except PartyInvalid:
            raise PartyNotFound(f"no party {str(uscc)[:40]}") from None
        party = self.parties([canonical]).get(canonical)
        if party is None:
            raise PartyNotFound(f"no party {canonical}")
        return party

    def parties(self, usccs: Collection[str]) -> dict[str, Party]:
        """The register's entries for these canonical USCCs, those it holds: one read on PostgreSQL, one per
        party elsewhere."""
        ids = [party_id(code) for code in dict.fromkeys(usccs)]
        select_streams = getattr(self.recorder, "select_streams", None)
        found: list[Any] = []
        if select_streams is None:
            for ident in ids:
                try:
                    found.append(self.repository.get(ident))
                except AggregateNotFoundError:
                    pass
        else:
            aggregates: dict[UUID, Any] = {}
            for stored in select_streams(ids):
                event = self.mapper.to_domain_event(stored)
                aggregates[event.originator_id] = event.mutate(aggregates.get(event.originator_id))
            found = list(aggregates.values())
        return {party.uscc: party for party in found if isinstance(party, Party)}

    def fill_parties(self, raw: Any) -> Any:
        """A submitted document checked against the business register and filled from it (`party.fill_parties`),
        before it is validated; `raw` itself when the register is off. Refusals are an `InvalidDeclaration`
        naming each party's field, with whatever else validation finds in the filled document."""
        if self.party_register != REGISTER_REQUIRED:
            return raw
        filled, errors = _fill_parties(raw, self.parties)
        if errors:
            try:
                validate_document(filled)
            except InvalidDeclaration as error:
                # what the register would have filled is no news: a refused party's missing name or country
                named = {refusal.path for refusal in errors}
                refused = tuple(path.removesuffix("id") for path in named)
                errors += [found for found in error.errors if found.path not in named
                           and not (found.path.startswith(refused) and found.message == "is required")]
            raise InvalidDeclaration(errors)
        return filled


_ENVELOPE = ("originator_id", "originator_version", "timestamp", "originator_topic", "data_key")

_STATUS_WORDS: dict[str, Callable[[Licence], str]] = {
    "revoked": lambda licence: f"revoked ({(licence.revoked or {}).get('reason', '')})",
    "suspended": lambda licence: f"suspended ({(licence.suspended or {}).get('reason', '')})",
    "expired": lambda licence: f"expired: valid to {licence.valid_to}",
    "not_yet_valid": lambda licence: f"not yet valid: valid from {licence.valid_from}",
}


def _cites_licences(raw: Any) -> bool:
    """Whether a raw submission cites licences (before validation: a cheap look, never an error)."""
    items = raw.get("items") if isinstance(raw, dict) else None
    return isinstance(items, list) and any(isinstance(item, dict) and item.get("licences") for item in items)


def _each_citation(document: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(JSON path, goods item index, citation) for every licence the document cites."""
    for i, item in enumerate(document.get("items", ()) if document.get("kind") == "goods" else ()):
        for j, citation in enumerate(item.get("licences") or ()):
            yield f"$.items[{i}].licences[{j}]", i, citation


def _citations(document: Mapping[str, Any]) -> bool:
    return any(True for _ in _each_citation(document))


def _cited(document: Mapping[str, Any]) -> list[_Cited]:
    """Every citation of a validated document whose issuer is resolved."""
    return [_Cited(path, item, citation["number"], citation["issuer"], licence_id(citation["issuer"], citation["number"]),
                   Decimal(citation["quantity"]),
                   citation["unit"], document["items"][item]["hs_code"])
            for path, item, citation in _each_citation(document) if "issuer" in citation]


class _LicenceCache:
    """Licences (and their number index) as last read in this process.

    A hot licence is cited by many declarations; reading it for each would cost a query per citation. The cache
    trusts optimistic concurrency instead: a reservation decided on a cached copy is saved as the licence's next
    version, which fails if any process changed the licence since (the save then evicts it, and the command is
    decided again on a fresh copy). What is decided without a save (a refusal, "nothing to do") the callers
    decide again on a fresh copy (`locked(..., fresh=True)`), so no answer rests on a stale copy alone.

    Changes happen under a per-licence lock, on the cached copy; a failed save evicts it. The number index,
    which a save does not check, is read again when older than `INDEX_TTL` seconds.
    """

    INDEX_TTL = 1.0

    def __init__(self, app: Declarations) -> None:
        self._app = app
        self._cached: dict[UUID, Any] = {}
        self._indexes: dict[str, tuple[float, LicenceNumber]] = {}
        self._locks: dict[UUID, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def locked(self, ids: set[UUID], *, fresh: bool) -> Iterator[dict[UUID, Licence]]:
        """The licences among `ids` that exist, held under their locks (taken in one order: no deadlock); read
        from the store first when `fresh`, else as cached."""
        with ExitStack() as stack:
            for ident in sorted(ids):
                stack.enter_context(self._lock(ident))
            found = {ident: self._current(ident, fresh=fresh) for ident in sorted(ids)}
            yield {ident: licence for ident, licence in found.items() if isinstance(licence, Licence)}

    def fresh(self, ident: UUID) -> Any:
        """A current copy of the aggregate (a licence or a number index), for reading only; None if none."""
        with self._lock(ident):
            current = self._current(ident, fresh=True)
            return None if current is None else _detached(current)

    def number_index(self, number: str) -> LicenceNumber | None:
        """Which issuers use `number`, read at most `INDEX_TTL` seconds ago (or, while another thread is reading
        it afresh, the copy that read will replace: callers never queue behind one another for the same index)."""
        cached = self._indexes.get(number)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.INDEX_TTL:
            return cached[1]
        ident = number_index_id(number)
        lock = self._lock(ident)
        if cached is None:
            lock.acquire()
        elif not lock.acquire(blocking=False):
            return cached[1]  # another thread is reading it afresh this moment
        try:
            current = self._current(ident, fresh=True)
            index = None if current is None else _detached(current)
        finally:
            lock.release()
        if index is not None:
            self._indexes[number] = (now, index)
            if len(self._indexes) > _INDEX_CACHE_SIZE:
                self._indexes.pop(next(iter(self._indexes)))
        return index

    def evict(self, ids: set[UUID]) -> None:
        for ident in ids:
            self._cached.pop(ident, None)

    def _lock(self, ident: UUID) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(ident, threading.Lock())

    def _current(self, ident: UUID, *, fresh: bool) -> Any:
        cached = self._cached.get(ident)
        if cached is not None and cached.pending_events:
            cached = None  # a command changed it and was never saved: read afresh
        if cached is None:
            try:
                cached = self._app.repository.get(ident)
            except AggregateNotFoundError:
                return None
        elif fresh:
            for stored in self._app.events.get(ident, gt=cached.version):
                cached = stored.mutate(cached)
        if not isinstance(cached, Licence | LicenceNumber):
            return None
        self._cached[ident] = cached
        return cached


_INDEX_CACHE_SIZE = 10_000


def _detached(aggregate: Any) -> Any:
    """A copy later commands on `aggregate` leave alone. Event bodies replace the entries of its dicts and lists
    rather than change them, so copying the containers is enough (a deep copy of a licence used ten thousand
    times would cost milliseconds)."""
    clone = copy(aggregate)
    for name, value in vars(aggregate).items():
        if isinstance(value, dict | list):
            setattr(clone, name, value.copy())
    return clone




def _names_people(document: Mapping[str, Any]) -> bool:
    return any(document.get(people) for people in PEOPLE)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe(event: Any) -> dict[str, Any]:
    fields = {key: value for key, value in vars(event).items() if key not in _ENVELOPE}
    return {
        "type": type(event).__name__,
        "version": event.originator_version,
        "time": event.timestamp.isoformat(),
        **fields,
    }


def _uuid(value: UUID | str, missing: type[LookupError] = DeclarationNotFound) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        what = "alert" if missing is AlertNotFound else "declaration"
        raise missing(f"no {what} {value}") from None


_SUBJECT_CHECKS = {"party": uscc, "vessel": imo_number, "container": container_number}


def alert_subject(subject_kind: str, subject: str) -> str:
    """An alert's subject as the hub writes it (and declarations hold it); `AlertInvalid` if it is none."""
    if subject_kind not in SUBJECT_KINDS:
        raise AlertInvalid("subject_kind", f"must be one of {', '.join(SUBJECT_KINDS)}, got {subject_kind!r}")
    try:
        return _SUBJECT_CHECKS[subject_kind](str(subject).strip())
    except ValueError as error:
        raise AlertInvalid("subject", str(error)) from None


def _alert_values(subject_kind: str, subject: str, reason: str, raised_by: str) -> dict[str, str]:
    """An alert's fields, checked; `AlertInvalid` names the first one at fault."""
    return {"subject_kind": subject_kind, "subject": alert_subject(subject_kind, subject), "reason": text_field("reason", reason, 512),
            "raised_by": text_field("raised_by", raised_by, 70)}


def text_field(field: str, value: str, max_length: int) -> str:
    """One line of free text for a message to agencies; `AlertInvalid` naming `field` if it is not."""
    if not isinstance(value, str):
        raise AlertInvalid(field, "must be text")
    try:
        return text(value, max_length)
    except ValueError as error:
        raise AlertInvalid(field, str(error)) from None


class PartyNotFound(LookupError):
    """The business register holds no party with this USCC."""


@dataclass(frozen=True)
class PartyRegistration:
    party: Party
    created: bool
    changed: bool


def _registration(fields: Mapping[str, str], by: str, party: Party | None) -> PartyRegistration:
    """The register entry brought to `fields` (unsaved), created if there was none."""
    if party is None:
        return PartyRegistration(Party(**fields, by=by), created=True, changed=True)
    changed = party.update(fields["name"], fields["address"], fields["status"], by)
    return PartyRegistration(party, created=False, changed=changed)
