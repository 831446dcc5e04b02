"""What the agency mappings take and give: changes in, messages out, replies back.

A `Change` is one declaration event the agencies must hear about (submitted,
amended, withdrawn, or an answer that lets the goods out of the port), with
everything a mapping needs and nothing it must look up: mappings are pure
functions of it. A `Message` is one XML message for one
agency, already validated against the hub's schema. A `Reply` is an agency's
answer, parsed from XML that passed the gate, ready to become a hub command.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, Literal

from hub.declarations import Declaration

# Fixed forever: message ids derive from it, so a resend carries the same id.
MESSAGE_PERSONALISATION = b"tradehub-msg-v1"

SUBMITTED, AMENDED, WITHDRAWN = "submitted", "amended", "withdrawn"
# The enforcement process allowed gate-out (customs and inspection released, nothing holds the goods), or
# revoked it (a hold, an amendment or a rejection came after): see docs/lifecycle.md, I1.
GATE_OUT, GATE_OUT_REVOKED = "gate_out", "gate_out_revoked"
# An agency recorded an inspection result (mutual recognition); an alert's hold was placed or lifted
# (enforcement assistance).
INSPECTED, HOLD_PLACED, HOLD_LIFTED = "inspected", "hold_placed", "hold_lifted"

# What an agency must be told about a change.
ORIGINAL, AMENDMENT, CANCELLATION = "original", "amendment", "cancellation"
RELEASE_NOTICE, RELEASE_REVOCATION = "release_notice", "release_revocation"
RECOGNITION, ALERT, ALERT_CLEARED = "recognition", "alert", "alert_cleared"  # the hub's notices

# Lists of people: their entries are personal data, so a change inside one is named by the list alone.
PERSONAL_LISTS = ("$.crew", "$.passengers")


@dataclass(frozen=True)
class Change:
    """A declaration event, as the mappings see it."""

    event: Literal["submitted", "amended", "withdrawn", "gate_out", "gate_out_revoked", "inspected", "hold_placed",
                   "hold_lifted"]
    declaration_id: str
    version: int
    time: datetime  # the event's time, in UTC: messages are issued at it, never at the clock's
    document: dict[str, Any]  # the document in effect after the event
    routes: dict[str, str]  # agency -> why it is routed, after the event
    previous_document: dict[str, Any] | None = None  # before an amendment
    previous_routes: dict[str, str] = field(default_factory=dict)  # before the event
    reason: str = ""  # why it was withdrawn, or why gate-out was revoked
    agencies: dict[str, dict[str, Any]] = field(default_factory=dict)  # each agency's state after the event
    # agency -> the version whose messages it held before the event (its last original or amendment): a
    # mapping names them by it, as Trafic2000 deletes forms by the LARefId they were sent with
    previous_versions: dict[str, int] = field(default_factory=dict)
    inspection: dict[str, str] = field(default_factory=dict)  # the result recorded (`Declaration.inspections`)
    alert: dict[str, str] = field(default_factory=dict)  # the alert whose hold was placed or lifted
    revoked: int = 0  # for a revocation, the version whose release notice it revokes
    # The supporting documents attached up to the event (`Declaration.attachments` values, in the order attached):
    # an agency's next declaration message names them by hash (adapters/attachments.py)
    documents: tuple[dict[str, Any], ...] = ()
    # What the licence registry says of each licence the goods items cite, keyed by (issuer, number): looked up
    # and verified again by dispatch when it builds the message, never by a mapping (adapters/citations.py)
    licences: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.document["kind"]

    def changed_fields(self) -> list[str]:
        """JSON paths of what an amendment changed, sorted; a change to a person is named by its list."""
        before = _leaves(self.previous_document or {})
        after = _leaves(self.document)
        return sorted({_public(path) for path in before.keys() | after.keys() if before.get(path) != after.get(path)})

    def action_for(self, agency: str) -> str | None:
        """What `agency` must be told: an original, an amendment, a cancellation, a notice, or nothing.

        A recognition goes to every other routed agency; the routing rules then say which of them
        recognise the inspecting agency (`adapters.outbound`).
        """
        now, before = agency in self.routes, agency in self.previous_routes
        if self.event == GATE_OUT:
            return RELEASE_NOTICE if agency == "port" and now else None
        if self.event == GATE_OUT_REVOKED:
            return RELEASE_REVOCATION if agency == "port" and now else None
        if self.event == INSPECTED:  # never about a rejected or withdrawn version (I2): `advance` gives none
            return RECOGNITION if now and agency != self.inspection["agency"] else None
        if self.event in (HOLD_PLACED, HOLD_LIFTED):
            return (ALERT if self.event == HOLD_PLACED else ALERT_CLEARED) if now else None
        if self.event == SUBMITTED:
            return ORIGINAL if now else None
        if self.event == WITHDRAWN:
            return CANCELLATION if before else None
        if now:
            return AMENDMENT if before else ORIGINAL
        return CANCELLATION if before else None


def change_of(event: Any, before: Declaration | None) -> Change | None:
    """The change a stored declaration event makes, given the declaration just before it.

    Events the agencies need not hear about (most answers, holds) give None.
    """
    return advance(event, copy.deepcopy(before))[0]


def advance(event: Any, before: Declaration | None) -> tuple[Change | None, Declaration]:
    """`change_of`, and the declaration after the event, for a follower of the log.

    `before` is consumed: the event is applied to it in place, which spares a
    follower a copy of every declaration for every event.
    """
    common = {"declaration_id": str(event.originator_id), "version": event.originator_version,
              "time": _utc(event.timestamp)}
    if isinstance(event, Declaration.Submitted):
        return Change(SUBMITTED, document=event.document, routes=dict(event.routes), **common), event.mutate(None)
    if before is None:
        raise ValueError(f"{type(event).__name__} needs the declaration as it was before it")
    previous_routes = {name: state["reason"] for name, state in before.routed_agencies.items()}
    previous_versions = {name: state["since_version"] for name, state in before.routed_agencies.items()}
    previous_document, allowed_at = before.document, before.gate_out_version
    lifted = before.holds.get(event.alert_id) if isinstance(event, Declaration.HoldLifted) else None
    after = event.mutate(before)
    if isinstance(event, Declaration.InspectionRecorded):
        if after.rejected or after.withdrawn:
            return None, after
        return Change(INSPECTED, document=after.document, routes=previous_routes, previous_routes=previous_routes,
                      inspection=dict(after.inspections[-1]), **common), after
    if isinstance(event, Declaration.HoldPlaced | Declaration.HoldLifted):
        alert = event.alert if isinstance(event, Declaration.HoldPlaced) else lifted
        return Change(HOLD_PLACED if lifted is None else HOLD_LIFTED, document=after.document, routes=previous_routes,
                      previous_routes=previous_routes, alert=dict(alert), **common), after
    if isinstance(event, Declaration.GateOutAllowed):
        return Change(GATE_OUT, document=after.document, routes=previous_routes, previous_routes=previous_routes,
                      agencies=copy.deepcopy(after.agencies), **common), after
    if isinstance(event, Declaration.GateOutRevoked):
        # A withdrawal revokes gate-out too, but the port's cancellation, in the same save, already says so.
        routes = {} if after.withdrawn else {name: state["reason"] for name, state in after.routed_agencies.items()}
        return Change(GATE_OUT_REVOKED, document=after.document, routes=routes, previous_routes=previous_routes,
                      reason=event.reason, revoked=allowed_at, **common), after
    if isinstance(event, Declaration.Amended):
        return Change(AMENDED, document=event.document, routes=dict(event.routes),
                      previous_document=previous_document, previous_routes=previous_routes,
                      previous_versions=previous_versions, documents=_documents(after), **common), after
    if isinstance(event, Declaration.Withdrawn):
        return Change(WITHDRAWN, document=previous_document, routes={}, previous_routes=previous_routes,
                      previous_versions=previous_versions, reason=event.reason, **common), after
    return None, after


def _documents(declaration: Declaration) -> tuple[dict[str, Any], ...]:
    """The declaration's supporting documents, oldest first (none on a declaration stored before they existed)."""
    attachments = getattr(declaration, "attachments", {})
    return tuple(dict(entry) for entry in sorted(attachments.values(), key=lambda entry: entry["version"]))


def _public(path: str) -> str:
    for prefix in PERSONAL_LISTS:
        if path.startswith(prefix + "["):
            return prefix
    return path


def _leaves(value: Any, path: str = "$") -> dict[str, Any]:
    """Every scalar of a JSON document by its JSON path."""
    if isinstance(value, dict):
        leaves: dict[str, Any] = {}
        for key, inner in value.items():
            leaves.update(_leaves(inner, f"{path}.{key}"))
        return leaves
    if isinstance(value, list):
        leaves = {}
        for index, inner in enumerate(value):
            leaves.update(_leaves(inner, f"{path}[{index}]"))
        return leaves
    return {path: value}


def listing(lead: str, fields: list[str], limit: int = 512) -> str:
    """`lead` and as many fields as fit in `limit` characters, then how many more there are."""
    text = lead
    for shown, field_path in enumerate(fields):
        rest = len(fields) - shown - 1
        entry = f" {field_path}" if shown == 0 else f", {field_path}"
        tail = f" and {rest} more" if rest else ""
        if len(text) + len(entry) + len(tail) > limit:
            return f"{text} and {len(fields) - shown} more"
        text += entry
    return text


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def message_id(declaration_id: str, version: int, agency: str, name: str) -> str:
    """Deterministic: the same declaration version always gives an agency the same id (32 hex digits)."""
    key = f"{declaration_id}:{version}:{agency}:{name}".encode()
    return blake2b(key, digest_size=16, person=MESSAGE_PERSONALISATION).hexdigest()


@dataclass(frozen=True)
class Message:
    """One outbound XML message, valid against the hub's schema for it."""

    agency: str
    name: str  # what it is, e.g. "declaration", "amendment", "invalidation"
    message_id: str
    declaration_id: str
    version: int
    function_code: str
    issued_at: datetime
    body: bytes

    @property
    def filename(self) -> str:
        return f"{self.agency}-{self.name}.xml"


@dataclass(frozen=True)
class ReplyError:
    """One error an agency reported, with the declaration field it points at when known."""

    code: str
    text: str = ""
    field: str = ""  # a JSON path into the declaration document, e.g. "$.items[1].hs_code"


@dataclass(frozen=True)
class Reply:
    """An agency's answer about one declaration.

    `status` is the agency status the hub records (see the domain model), or
    None for a notice that changes no status. `inspection` is "pass" or
    "fail" when the reply carries an inspection result.
    """

    agency: str
    message_id: str  # the reply's own id: the hub applies each once
    declaration_id: str  # as the reply names it; resolving it is the consumer's job
    version: int | None  # the declaration version it answers, when it says
    answers: str  # the id of the hub message it answers, when it says
    issued_at: str  # ISO 8601, UTC
    code: str  # the agency's own code for the outcome, e.g. WCO "03"
    status: str | None
    text: str = ""
    errors: tuple[ReplyError, ...] = ()
    inspection: str | None = None

    def apply(self, declarations: Any) -> Any:
        """Apply the reply through the hub's application (`Declarations`): once per message id."""
        declaration, _ = declarations.answer(self.declaration_id, [self])
        return declaration

    def apply_to(self, declaration: Declaration) -> bool:
        """Apply the reply to the declaration aggregate, once per message id; whether it changed anything."""
        changed = False
        if self.inspection is not None:
            changed = declaration.record_inspection(
                self.agency, self.message_id, self.inspection, self.issued_at,
                findings=self.summary, answers_version=self.version)
        if self.status is not None:
            changed = declaration.record_response(
                self.agency, self.message_id + ("" if self.inspection is None else ":status"),
                self.status, self.issued_at, code=self.code, text=self.summary,
                answers_version=self.version) or changed
        return changed

    @property
    def summary(self) -> str:
        """The text, then each error, as one line for people."""
        parts = [self.text] if self.text else []
        for error in self.errors:
            where = f" at {error.field}" if error.field else ""
            parts.append(f"{error.code}{where}" + (f": {error.text}" if error.text else ""))
        return "; ".join(parts)
