"""The declarations application: every command is get → command → save.

Saves go through group commit, so concurrent commands share transactions.
Optimistic concurrency turns races into `VersionConflict`, except for
commands whose effect does not depend on what the caller saw (agency
responses, holds, withdrawal without an expected version): those are
retried on a fresh copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from .alert import SUBJECT_KINDS, Alert
from .documents import content_hash, validate_document
from .domainmodel import Declaration
from .groupcommit import AsyncGroupCommit, GroupCommit
from .routing import RoutingRules
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


@dataclass(frozen=True)
class Submission:
    declaration: Declaration
    created: bool


class Declarations(Application):
    """Declarations stored once, as event streams."""

    name = "declarations"

    def __init__(self, env: dict[str, str] | None = None, *, routing: RoutingRules | None = None):
        super().__init__(env)
        self.routing = routing or RoutingRules.load()
        self._group = GroupCommit(self.save)

    def submit(self, raw: Any, *, on_behalf_of: str | None = None) -> Submission:
        """Declare once. The same (declarant, reference) with the same content returns it.

        With `on_behalf_of`, the document's declarant must be that party. `submit_on_loop` is the same
        for an event loop.
        """
        declaration = self.prepare_submission(raw, on_behalf_of=on_behalf_of)
        try:
            self._group.save(declaration.collect_events())
        except IntegrityError:
            return self.settle_duplicate(declaration)
        return Submission(declaration, created=True)

    async def submit_on_loop(self, raw: Any, committer: AsyncGroupCommit, offload: Offload, *,
                             on_behalf_of: str | None = None) -> Submission:
        """`submit`, for a caller on an event loop. Validation is CPU work and runs on the loop; the save joins
        `committer`'s next batch (built on this application's `save`); only a repeated submission reads the
        store, through `offload`, which runs a function on a thread."""
        declaration = self.prepare_submission(raw, on_behalf_of=on_behalf_of)
        try:
            await committer.save(declaration.collect_events())
        except IntegrityError:
            return await offload(self.settle_duplicate, declaration)
        return Submission(declaration, created=True)

    def prepare_submission(self, raw: Any, *, on_behalf_of: str | None = None) -> Declaration:
        """Validate and route a submission, unsaved: the rules of `submit` up to the save."""
        document = validate_document(raw)
        if on_behalf_of is not None and document["declarant"]["id"] != on_behalf_of:
            raise NotDeclarant(f"{on_behalf_of} cannot declare as {document['declarant']['id']}")
        return Declaration(
            kind=document["kind"],
            declarant=document["declarant"]["id"],
            reference=document["reference"],
            document=document,
            content_hash=content_hash(document),
            routes=self.routing.route(document),
        )

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
        document = validate_document(raw)
        digest = content_hash(document)
        declaration = self.get(declaration_id)
        if declaration.content_hash == digest and not declaration.withdrawn:
            return declaration  # already in effect: a repeated amendment changes nothing
        if declaration.version != expected_version:
            raise VersionConflict(expected_version, declaration.version)
        declaration.amend(document, digest, self.routing.route(document))
        try:
            self._group.save(declaration.collect_events())
        except IntegrityError:
            raise VersionConflict(expected_version, self.get(declaration_id).version) from None
        return declaration

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
        """The declaration and its events, from one read of its stream."""
        events = list(self.events.get(_uuid(declaration_id)))
        if not events:
            raise DeclarationNotFound(f"no declaration {declaration_id}")
        declaration = None
        for event in events:
            declaration = event.mutate(declaration)
        if not isinstance(declaration, Declaration):
            raise DeclarationNotFound(f"no declaration {declaration_id}")
        return declaration, [_describe(event) for event in events]

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


_ENVELOPE = ("originator_id", "originator_version", "timestamp", "originator_topic")


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
