"""The declaration aggregate: one event stream per (declarant, reference).

A declaration is stored once, as the events below; every agency message and
every read model is derived from them. Event bodies only assign state: guards
live in the public command methods, so tightening a rule never breaks replay.

The lifecycle's invariants (docs/lifecycle.md) are kept here:

- I1, goods leave only when nothing stops them: gate-out is allowed (`GateOutAllowed`, the port's release
  notice) only when every routed gate-out agency has released the current version, no hold stands, and the
  declaration is neither rejected nor withdrawn; the moment one of those stops being true while gate-out is
  allowed, `GateOutRevoked` follows in the same save.
- I2, a decision is final for its version: once an agency has rejected the current version, nothing but an
  amendment moves it forward (`VersionRejected`).
- I3, a hold cannot lose a race: neither gate-out nor the overall release is decided by the answer that
  completes them, but by `settle`, which the enforcement process calls once it has placed the holds of every
  alert before that answer in the log.
- I4, every answer names what it answers: a version that does not exist is refused (`UnknownVersion`), and one a
  later amendment replaced is stale (`StaleResponse`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

AGENCIES = ("customs", "inspection", "port", "maritime", "border")
# Who must have released goods (where routed) before the port lets them out (docs/messages.md).
GATE_OUT_AGENCIES = ("customs", "inspection")

# Per-agency statuses (docs/lifecycle.md), plus "pending" before the
# agency has answered and "cancelled" once it is no longer involved.
PENDING = "pending"
RECEIVED = "received"
ACCEPTED = "accepted"
REJECTED = "rejected"
INSPECTION_REQUIRED = "inspection_required"
INSPECTED = "inspected"
HELD = "held"
RELEASED = "released"
CANCELLED = "cancelled"
AGENCY_STATUSES = (
    PENDING, RECEIVED, ACCEPTED, REJECTED, INSPECTION_REQUIRED, INSPECTED, HELD, RELEASED, CANCELLED,
)
# How an agency acknowledges a cancellation (after withdrawal, or when routed away).
_ACKNOWLEDGEMENTS = (RECEIVED, CANCELLED)
# An agency's steps on the way to its decision: once it has released a version, they come too late.
_ON_THE_WAY = (RECEIVED, ACCEPTED, INSPECTION_REQUIRED, INSPECTED)

# Overall statuses (docs/lifecycle.md).
SUBMITTED = "submitted"
IN_PROGRESS = "in_progress"
WITHDRAWN = "withdrawn"
OVERALL_STATUSES = (SUBMITTED, IN_PROGRESS, HELD, REJECTED, RELEASED, WITHDRAWN)

INSPECTION_RESULTS = ("pass", "fail")

# Fixed forever: declaration ids derive from it, so a resubmission finds its stream.
DECLARATION_NAMESPACE = UUID("5b0e7c1e-2f8a-5d4c-9a57-7a3d1c6e9b20")


def declaration_id(declarant: str, reference: str) -> UUID:
    """The id of the declaration a declarant makes under its own reference."""
    return uuid5(DECLARATION_NAMESPACE, f"{declarant}:{reference}")


class DeclarationError(Exception):
    """A command the declaration refuses in its current state."""


class DeclarationClosed(DeclarationError):
    """The declaration is released or withdrawn: it can no longer change this way."""


class IdentityChanged(DeclarationError):
    """An amendment tried to change what identifies the declaration."""

    def __init__(self, field: str, old: str, new: str) -> None:
        super().__init__(f"{field} cannot change in an amendment (was {old!r}, got {new!r})")
        self.field = field


class AgencyNotRouted(DeclarationError):
    """An agency spoke about a declaration that is not routed to it."""


class StaleResponse(DeclarationError):
    """A response answers a version that a later amendment has replaced."""


class UnknownVersion(DeclarationError):
    """A response names no version of the declaration, or one it never had."""


class VersionRejected(DeclarationError):
    """An agency rejected the current version: only an amendment reopens it (I2)."""


# Supporting documents (docs/api.md, "Supporting documents"): at most this many per declaration.
MAX_ATTACHMENTS = 20


class TooManyAttachments(DeclarationError):
    """The declaration already has `MAX_ATTACHMENTS` supporting documents."""


class PersonalDataGone(DeclarationError):
    """The declaration's personal data was erased: its document can no longer be replaced (submit anew)."""


class NothingToErase(DeclarationError):
    """The declaration has no personal data of its own to erase: it names no one, or was stored before personal
    data was sealed under a key of its own (docs/personal-data.md)."""


# What an erased field of a person reads as, everywhere (docs/personal-data.md).
ERASED = "[erased]"
# The lists of people a document may carry: each entry is personal data, every field of it.
PEOPLE = ("crew", "passengers")


def scrub(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with each person replaced by `erased_people`' entry: the lists keep their length, so counts
    and answers that point at a person by position (`$.crew[2]`) keep their meaning."""
    if not any(document.get(people) for people in PEOPLE):
        return document
    return {**document, **{people: erased_people(people, len(document[people]))
                           for people in PEOPLE if document.get(people)}}


def erased_people(people: str, count: int) -> list[dict[str, Any]]:
    """`count` erased entries of the `people` list: every field a person of that list must have, each `ERASED`
    (a passenger's optional ports are left out, since whether they were given is the passenger's too)."""
    person = {"family_name": ERASED, "given_names": ERASED, "nationality": ERASED, "date_of_birth": ERASED,
              "document": {"type": ERASED, "number": ERASED}}
    if people == "crew":
        person["rank"] = ERASED
    return [{**person, "document": dict(person["document"])} for _ in range(count)]


class Declaration(Aggregate):
    """A goods declaration or a vessel call, with its status at every agency.

    Version 2 of its state (snapshots) added `data_key` and `personal_data_erased`; `upcast_v1_v2` gives older
    snapshots both, as of a declaration stored before personal data had keys (docs/events.md).
    """

    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["data_key"] = ""
        state["personal_data_erased"] = None

    @staticmethod
    def create_id(declarant: str, reference: str, **_: Any) -> UUID:
        return declaration_id(declarant, reference)

    class Submitted(Aggregate.Created):
        """The trader declared once. `routes` maps each agency to why it is involved.

        `data_key` (version 2) names the declaration's own key, under which the store seals the people its
        document names (hub/declarations/personal_data.py); "" when it names no one. Version 1 events, stored
        before personal data had keys, keep their people in the event as they came: they upcast to "".
        """

        class_version = 2

        kind: str
        declarant: str
        reference: str
        document: dict[str, Any]
        content_hash: str
        routes: dict[str, str]
        data_key: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["data_key"] = ""

    class Amended(Aggregate.Event):
        """The document was replaced; agencies are routed afresh and assess it again."""

        document: dict[str, Any]
        content_hash: str
        routes: dict[str, str]

    class Withdrawn(Aggregate.Event):
        """The declarant withdrew the declaration; agencies get cancellations."""

        reason: str

    class AgencyResponded(Aggregate.Event):
        """An agency answered: its status for this declaration is now `status`."""

        agency: str
        message_id: str
        status: str
        code: str
        text: str
        responded_at: str

    class InspectionRecorded(Aggregate.Event):
        """An agency inspected the goods or the ship, with a pass or fail result."""

        agency: str
        message_id: str
        result: str
        findings: str
        inspected_at: str

    class HoldPlaced(Aggregate.Event):
        """An enforcement alert holds the declaration whatever the agencies decide.

        `alert` is what the agencies are told of it (`Alert.details()`): subject, reason, who raised it, when.
        """

        alert_id: str
        subject: str
        alert: dict[str, str]

    class HoldLifted(Aggregate.Event):
        """An enforcement hold was cleared."""

        alert_id: str

    class GateOutAllowed(Aggregate.Event):
        """Nothing stops the goods any more: the port gets a release notice (I1).

        Recorded by the enforcement process (`settle`) once it has seen every alert before the release that
        allowed it (I3).
        """

    class GateOutRevoked(Aggregate.Event):
        """A release notice no longer stands (a hold, an amendment, a rejection or a withdrawal came after it):
        the port is told to stop the goods at the gate."""

        reason: str

    class Released(Aggregate.Event):
        """Every routed agency has released and no hold stands (overall outcome).

        Recorded by the enforcement process (`settle`), like `GateOutAllowed`.
        """

    class Rejected(Aggregate.Event):
        """A routed agency rejected the declaration (overall outcome)."""

        agency: str

    class DispatchFailed(Aggregate.Event):
        """The hub could not build or publish `agency`'s message(s) for version `failed_version`: that agency's
        dispatch of this declaration waits, and is retried with back-off, while every other goes on
        (docs/dispatch.md). Later messages to the agency wait behind it."""

        agency: str
        failed_version: int
        reason: str
        failed_at: str

    class DispatchResumed(Aggregate.Event):
        """What waited for `agency` since `failed_version`'s failure has all been published, in order."""

        agency: str
        failed_version: int

    class PersonalDataErased(Aggregate.Event):
        """The declaration's data key was deleted: the people its document named are gone from every event, every
        snapshot and every recorded message body that was sealed under it. Who erased them, why and when stay.
        `messages` counts the recorded messages that named them: the agencies have them; the hub can no longer
        show or resend them."""

        erased_by: str
        reason: str
        erased_at: str
        messages: int

    class DocumentAttached(Aggregate.Event):
        """A supporting document (PDF, JPEG, PNG or XML) was attached, stored by its content's SHA-256.

        The bytes live in the document store (projections/attachments.py), never in the log: the event records
        what names them. Agencies hear of it in their next declaration message (docs/api.md).
        """

        sha256: str
        filename: str
        media_type: str
        size: int
        attached_by: str
        attached_at: str

    # ---- event bodies: assignment only ------------------------------------------------

    @event(Submitted)
    def __init__(
        self,
        kind: str,
        declarant: str,
        reference: str,
        document: dict[str, Any],
        content_hash: str,
        routes: dict[str, str],
        data_key: str = "",
    ) -> None:
        self.kind = kind
        self.data_key = data_key
        self.personal_data_erased: dict[str, Any] | None = None
        self.declarant = declarant
        self.reference = reference
        self.document = document
        self.content_hash = content_hash
        self.submitted_hash = content_hash
        self.agencies: dict[str, dict[str, Any]] = {}
        self.applied_messages: set[str] = set()
        self.inspections: list[dict[str, Any]] = []
        self.holds: dict[str, dict[str, str]] = {}  # alert id -> the alert, as agencies are told of it
        self.withdrawn = False
        self.withdrawal_reason = ""
        self.outcome = ""
        self.gate_out = False  # a release notice stands
        self.gate_out_version = 0  # the version of the last release notice
        # The version since which gate-out / the overall release have been due, holds aside (0: not due).
        self.gate_out_due_since = 0
        self.release_due_since = 0
        # agency -> the dispatch failure that holds its messages back: version, reason, since (docs/dispatch.md)
        self.dispatch_failures: dict[str, dict[str, Any]] = {}
        # sha256 -> the supporting document's details and the version of its `DocumentAttached`
        self.attachments: dict[str, dict[str, Any]] = {}
        self._route(routes, since_version=1)

    @event(Amended)
    def _amended(self, document: dict[str, Any], content_hash: str, routes: dict[str, str]) -> None:
        self.document = document
        self.content_hash = content_hash
        self.outcome = ""
        self._route(routes, since_version=self.version + 1)
        self._note_due()

    @event(Withdrawn)
    def _withdrawn(self, reason: str) -> None:
        self.withdrawn = True
        self.withdrawal_reason = reason
        self._note_due()

    @event(AgencyResponded)
    def _responded(
        self, agency: str, message_id: str, status: str, code: str, text: str, responded_at: str
    ) -> None:
        self.applied_messages.add(message_id)
        state = self.agencies[agency]
        # An agency routed away only acknowledges its cancellation: it stays cancelled.
        state.update(status=status if state["routed"] else CANCELLED, code=code, text=text,
                     updated_at=responded_at)
        self._note_due()

    @event(InspectionRecorded)
    def _inspection_recorded(
        self, agency: str, message_id: str, result: str, findings: str, inspected_at: str
    ) -> None:
        self.applied_messages.add(message_id)
        self.inspections.append(
            {"agency": agency, "message_id": message_id, "result": result,
             "findings": findings, "inspected_at": inspected_at}
        )
        self.agencies[agency].update(status=INSPECTED, updated_at=inspected_at)
        self._note_due()

    @event(HoldPlaced)
    def _hold_placed(self, alert_id: str, subject: str, alert: dict[str, str]) -> None:
        self.holds[alert_id] = alert

    @event(HoldLifted)
    def _hold_lifted(self, alert_id: str) -> None:
        del self.holds[alert_id]

    @event(GateOutAllowed)
    def _gate_out_allowed(self) -> None:
        self.gate_out = True
        self.gate_out_version = self.version + 1

    @event(GateOutRevoked)
    def _gate_out_revoked(self, reason: str) -> None:
        self.gate_out = False

    @event(Released)
    def _released(self) -> None:
        self.outcome = RELEASED

    @event(Rejected)
    def _rejected(self, agency: str) -> None:
        self.outcome = REJECTED

    @event(DispatchFailed)
    def _dispatch_failed(self, agency: str, failed_version: int, reason: str, failed_at: str) -> None:
        self.dispatch_failures[agency] = {"version": failed_version, "reason": reason, "since": failed_at}

    @event(DispatchResumed)
    def _dispatch_resumed(self, agency: str, failed_version: int) -> None:
        self.dispatch_failures.pop(agency, None)

    @event(PersonalDataErased)
    def _personal_data_erased(self, erased_by: str, reason: str, erased_at: str, messages: int) -> None:
        self.personal_data_erased = {"by": erased_by, "reason": reason, "at": erased_at, "messages": messages}
        self.document = scrub(self.document)

    @event(DocumentAttached)
    def _document_attached(self, sha256: str, filename: str, media_type: str, size: int, attached_by: str,
                           attached_at: str) -> None:
        self.attachments[sha256] = {"sha256": sha256, "filename": filename, "media_type": media_type, "size": size,
                                    "attached_by": attached_by, "attached_at": attached_at,
                                    "version": self.version + 1}

    def _note_due(self) -> None:
        """Remember since which version gate-out and the release are due (an event body's last step)."""
        version = self.version + 1  # the event being applied
        gate_out, release = self.gate_out_due, self.release_due
        self.gate_out_due_since = (self.gate_out_due_since or version) if gate_out else 0
        self.release_due_since = (self.release_due_since or version) if release else 0

    def _route(self, routes: dict[str, str], since_version: int) -> None:
        for agency, state in self.agencies.items():
            if agency not in routes and state["routed"]:
                state.update(routed=False, status=CANCELLED)
        for agency, reason in routes.items():
            self.agencies[agency] = {
                "routed": True, "reason": reason, "status": PENDING, "code": "", "text": "",
                "since_version": since_version, "updated_at": "",
            }

    # ---- derived state -------------------------------------------------------------------

    @property
    def routed_agencies(self) -> dict[str, dict[str, Any]]:
        return {name: state for name, state in self.agencies.items() if state["routed"]}

    @property
    def status(self) -> str:
        """The overall status, derived from the agencies, the holds, withdrawal and the recorded release.

        Every routed agency having released is not enough: the declaration is released once `settle` has
        found no hold standing (I3).
        """
        if self.withdrawn:
            return WITHDRAWN
        statuses = [state["status"] for state in self.routed_agencies.values()]
        if REJECTED in statuses:
            return REJECTED
        if self.holds:
            return HELD
        if self.outcome == RELEASED:
            return RELEASED
        if all(status == PENDING for status in statuses):
            return SUBMITTED
        return IN_PROGRESS

    @property
    def rejected(self) -> bool:
        return any(state["status"] == REJECTED for state in self.routed_agencies.values())

    @property
    def gate_out_due(self) -> bool:
        """Holds aside, the goods may leave the port (I1): a goods declaration routed to the port, neither
        rejected nor withdrawn, whose routed gate-out agencies have all released the current version."""
        routed = self.routed_agencies
        deciders = [agency for agency in GATE_OUT_AGENCIES if agency in routed]
        return (self.kind == "goods" and "port" in routed and not self.withdrawn and not self.rejected
                and bool(deciders) and all(routed[agency]["status"] == RELEASED for agency in deciders))

    @property
    def release_due(self) -> bool:
        """Holds aside, the declaration is released: every routed agency has released the current version."""
        return not self.withdrawn and all(state["status"] == RELEASED for state in self.routed_agencies.values())

    # ---- commands: guards, then events ---------------------------------------------------

    def amend(self, document: dict[str, Any], content_hash: str, routes: dict[str, str]) -> bool:
        """Replace the document. Returns False when it already is the current one."""
        for field, old, new in (
            ("kind", self.kind, document["kind"]),
            ("declarant", self.declarant, document["declarant"]["id"]),
            ("reference", self.reference, document["reference"]),
        ):
            if old != new:
                raise IdentityChanged(field, old, new)
        self._refuse_if_closed("amended")
        if self.personal_data_erased is not None:
            raise PersonalDataGone("the declaration's personal data was erased: it can no longer be amended; "
                                   "submit a new declaration")
        if content_hash == self.content_hash:
            return False
        self._amended(document, content_hash, routes)
        self._revoke_gate_out(f"amended: version {self.version} awaits the agencies' decisions")
        return True

    def withdraw(self, reason: str) -> bool:
        """Withdraw the declaration. Returns False when it already was withdrawn."""
        if self.withdrawn:
            return False
        if self.outcome == RELEASED:
            raise DeclarationClosed("a released declaration cannot be withdrawn")
        self._withdrawn(reason)
        self._revoke_gate_out("withdrawn by the declarant")
        return True

    def record_response(
        self,
        agency: str,
        message_id: str,
        status: str,
        responded_at: str,
        *,
        code: str = "",
        text: str = "",
        answers_version: int | None = None,
    ) -> bool:
        """Apply an agency's answer once. Returns False for a message already applied."""
        if message_id in self.applied_messages:
            return False
        if status not in AGENCY_STATUSES or status == PENDING:
            raise ValueError(f"not an agency status: {status!r}")
        acknowledging = status in _ACKNOWLEDGEMENTS
        self._check_agency_may_speak(agency, answers_version, acknowledging=acknowledging)
        state = self.agencies[agency]
        routed_away = not state["routed"]
        if status == CANCELLED and not (routed_away or self.withdrawn):
            raise DeclarationError(f"{agency} may only acknowledge a cancellation the hub sent")
        if self.withdrawn and not acknowledging:
            raise DeclarationClosed(f"the declaration is withdrawn; {agency} cannot set it {status}")
        if status == RECEIVED and (state["status"] not in (PENDING, RECEIVED) or self.rejected):
            return False  # a receipt overtaken by the agency's own decision, or another's rejection, changes nothing
        if status in _ON_THE_WAY and state["status"] == RELEASED:
            return False  # answers applied out of order (redelivered, say): the agency's release stands
        if self.rejected and status != REJECTED and not (acknowledging and (routed_away or self.withdrawn)):
            raise VersionRejected(
                f"version {state['since_version']} was rejected; {agency} cannot set it {status}: "
                "only an amendment reopens it")
        if self.outcome == RELEASED and status != RELEASED and not (routed_away and acknowledging):
            raise DeclarationClosed(f"the declaration is released; {agency} cannot set it {status}")
        if status == RELEASED and state["status"] == RELEASED and state["code"] == code:
            return False  # a release restated (on a recognised result, say) takes nothing further
        self._responded(agency, message_id, status, code, text, responded_at)
        self._revoke_gate_out(f"{agency} set the declaration {status}")
        if status == REJECTED and self.outcome != REJECTED:
            self._rejected(agency)
        return True

    def record_inspection(
        self,
        agency: str,
        message_id: str,
        result: str,
        inspected_at: str,
        *,
        findings: str = "",
        answers_version: int | None = None,
    ) -> bool:
        """Record an agency's inspection result once. Returns False for a repeat."""
        if message_id in self.applied_messages:
            return False
        if result not in INSPECTION_RESULTS:
            raise ValueError(f"not an inspection result: {result!r}")
        self._check_agency_may_speak(agency, answers_version)
        self._refuse_if_closed("inspected")
        if self.rejected:
            raise VersionRejected(f"version {self.agencies[agency]['since_version']} was rejected; "
                                  f"{agency}'s inspection result comes too late: only an amendment reopens it")
        self._inspection_recorded(agency, message_id, result, findings, inspected_at)
        self._revoke_gate_out(f"{agency} is inspecting the goods")
        return True

    def place_hold(self, alert: dict[str, str]) -> bool:
        """Hold for an open alert (`Alert.details()`). Returns False when it already holds it."""
        if alert["alert_id"] in self.holds:
            return False
        self._refuse_if_closed("held")
        self._hold_placed(alert["alert_id"], f"{alert['subject_kind']} {alert['subject']}", dict(alert))
        self._revoke_gate_out("held for control")
        return True

    def lift_hold(self, alert_id: str) -> bool:
        """Lift a hold. What it was stopping is decided again by `settle`, never here (I3)."""
        if alert_id not in self.holds:
            return False
        self._hold_lifted(alert_id)
        return True

    def settle(self, checked_version: int) -> bool:
        """Allow gate-out and record the release that are due, if no hold stands (I1, I3).

        The enforcement process calls it having placed the hold of every alert that comes before version
        `checked_version`'s event in the log; what became due only after that version waits for the call
        made for it. Returns whether anything was recorded.
        """
        if self.holds or self.withdrawn:
            return False
        changed = False
        if self.gate_out_due and not self.gate_out and 0 < self.gate_out_due_since <= checked_version:
            self._gate_out_allowed()
            changed = True
        if self.release_due and self.outcome != RELEASED and 0 < self.release_due_since <= checked_version:
            self._released()
            changed = True
        return changed

    def dispatch_failed(self, agency: str, failed_version: int, reason: str, failed_at: str) -> bool:
        """Record that `agency`'s message(s) for a version could not be sent. Returns False when that failure is
        already recorded: dispatch gives the command again when it applies a batch again after a crash.

        Recorded whatever the declaration's state: a cancellation to a withdrawn one can fail too."""
        if agency not in AGENCIES:
            raise ValueError(f"not an agency: {agency!r}")
        if not 0 < failed_version <= self.version:
            raise UnknownVersion(f"the declaration never had version {failed_version}")
        if self.dispatch_failures.get(agency, {}).get("version") == failed_version:
            return False
        self._dispatch_failed(agency, failed_version, reason[:1000], failed_at)
        return True

    def dispatch_resumed(self, agency: str) -> bool:
        """Record that every message held back for `agency` has been published. False when none was."""
        failure = self.dispatch_failures.get(agency)
        if failure is None:
            return False
        self._dispatch_resumed(agency, failure["version"])
        return True

    def attach_document(self, sha256: str, filename: str, media_type: str, size: int, attached_by: str,
                        attached_at: str) -> bool:
        """Attach a supporting document. Returns False when a document with this content is already attached
        (whatever name it came under: the first name stays).

        A withdrawn declaration takes none. A released or rejected one still does: documents are evidence kept
        with the declaration (a certificate asked for after release, in a post-clearance audit, say), and
        attaching one changes no decision."""
        if sha256 in self.attachments:
            return False
        if self.withdrawn:
            raise DeclarationClosed("a withdrawn declaration takes no documents")
        if len(self.attachments) >= MAX_ATTACHMENTS:
            raise TooManyAttachments(f"a declaration takes at most {MAX_ATTACHMENTS} documents; "
                                     f"this one has {len(self.attachments)}")
        self._document_attached(sha256, filename, media_type, size, attached_by, attached_at)
        return True

    def erase_personal_data(self, erased_by: str, reason: str, erased_at: str, messages: int) -> bool:
        """Record that the declaration's data key was deleted. Returns False when that is already recorded.

        Allowed in any state: a data subject's request does not wait for a decision. The key itself is deleted by
        the application, before this is recorded (hub/declarations/application.py)."""
        if self.personal_data_erased is not None:
            return False
        if not self.data_key:
            if self.kind == "vessel_call":
                raise NothingToErase("the declaration was stored before personal data had keys of its own: its "
                                     "people are in the log as they came, and deleting a key cannot erase them")
            raise NothingToErase("the declaration names no one: there is no personal data to erase")
        self._personal_data_erased(erased_by, reason, erased_at, messages)
        return True

    def _revoke_gate_out(self, reason: str) -> None:
        """If a release notice stands that should not, revoke it (I1)."""
        if self.gate_out and (self.holds or not self.gate_out_due):
            self._gate_out_revoked(reason)

    def _check_agency_may_speak(
        self, agency: str, answers_version: int | None, *, acknowledging: bool = False
    ) -> None:
        """Only routed agencies speak, about a version there is; one re-routed away may still acknowledge
        its cancellation."""
        state = self.agencies.get(agency)
        if state is None or not (state["routed"] or acknowledging):
            raise AgencyNotRouted(f"the declaration is not routed to {agency}")
        if answers_version is not None and not 0 < answers_version <= self.version:
            raise UnknownVersion(f"{agency} answered version {answers_version}, which the declaration never had")
        if answers_version is not None and answers_version < state["since_version"]:
            raise StaleResponse(
                f"{agency} answered version {answers_version}, "
                f"but version {state['since_version']} replaced it"
            )

    def _refuse_if_closed(self, verb: str) -> None:
        if self.withdrawn:
            raise DeclarationClosed(f"a withdrawn declaration cannot be {verb}")
        if self.outcome == RELEASED:
            raise DeclarationClosed(f"a released declaration cannot be {verb}")
