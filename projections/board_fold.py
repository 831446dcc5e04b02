"""What the status board shows of a declaration, folded from its events' fields without replaying the aggregate.

Replaying a copy of each `Declaration` (every event body, with its `_note_due` and the derived properties it
reads) was about half of the board's rebuild time (issue 20). The board shows far less than the aggregate
keeps: the overall status, each agency's status and whether it is routed, the version and the time of the
last event. `Folded` keeps only what those need (and what the notifications feed, followers/notifications.py,
writes beside the status: declarant, reference, consignee), and `fold` assigns it the way the event bodies of
hub/declarations/domainmodel.py do. The overall status is not written again here: `Folded.status` is
`Declaration.status` itself, run on this smaller state, so the rule has one home.

The status depends on every agency, the holds, withdrawal and the recorded outcome, so it cannot come from one
event alone: a `Folded` is kept per declaration, and read back from the store (from the aggregate, at the
version before the event) when it is missing or not at that version: `Replay(app, size, Folded.of)` keeps them.

The fold is checked, not trusted: tests/test_board_fold.py issues random commands on the real aggregate and
checks, after every event, that the fold and the replayed aggregate agree. An event class the fold does not
know stops it (`UnknownEvent`) rather than being passed over: a new declaration event must be placed in
`_EFFECTS` or `NO_EFFECT`, and a test checks that those two cover every one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from hub.declarations import Declaration
from hub.declarations.domainmodel import CANCELLED, INSPECTED, PENDING, REJECTED, RELEASED


class UnknownEvent(TypeError):
    """A declaration event the fold has no rule for: the board cannot say what it changed."""


class Folded:
    """A declaration as the board needs it: its agencies (`{"status", "routed"}` each, in the aggregate's
    order, which is also the board's summary), its holds' alert ids, withdrawal, outcome, version and time; and
    who a notification of it is for: declarant, reference and the document's consignee (`consignee`)."""

    __slots__ = ("id", "version", "modified_on", "agencies", "holds", "withdrawn", "outcome", "declarant",
                 "reference", "consignee")

    # The domain model's own derivations, on this state: the same names, the same meaning.
    routed_agencies = Declaration.routed_agencies
    status = Declaration.status

    def __init__(self, ident: UUID, version: int, modified_on: datetime, agencies: dict[str, dict[str, Any]],
                 holds: set[str], withdrawn: bool, outcome: str, *, declarant: str, reference: str,
                 consignee: str | None) -> None:
        self.id = ident
        self.version = version
        self.modified_on = modified_on
        self.agencies = agencies
        self.holds = holds
        self.withdrawn = withdrawn
        self.outcome = outcome
        self.declarant = declarant
        self.reference = reference
        self.consignee = consignee

    @classmethod
    def of(cls, declaration: Declaration) -> Folded:
        """What the board needs of a declaration read back from the store."""
        agencies = {name: {"status": state["status"], "routed": state["routed"]}
                    for name, state in declaration.agencies.items()}
        return cls(declaration.id, declaration.version, declaration.modified_on, agencies, set(declaration.holds),
                   declaration.withdrawn, declaration.outcome, declarant=declaration.declarant,
                   reference=declaration.reference, consignee=consignee(declaration.document))


def consignee(document: dict[str, Any]) -> str | None:
    """The id of the party a document consigns the goods to, if it names one."""
    party = document.get("consignee")
    return party.get("id") if isinstance(party, dict) else None


def _route(folded: Folded, routes: dict[str, str]) -> None:
    """`Declaration._route`: agencies routed away are cancelled, the routed ones start again, pending."""
    for agency, state in folded.agencies.items():
        if agency not in routes and state["routed"]:
            state.update(routed=False, status=CANCELLED)
    for agency in routes:
        folded.agencies[agency] = {"status": PENDING, "routed": True}


def _amended(folded: Folded, event: Any) -> None:
    folded.outcome = ""
    folded.consignee = consignee(event.document)
    _route(folded, event.routes)


def _withdrawn(folded: Folded, _event: Any) -> None:
    folded.withdrawn = True


def _responded(folded: Folded, event: Any) -> None:
    state = folded.agencies[event.agency]
    # An agency routed away only acknowledges its cancellation: it stays cancelled.
    state["status"] = event.status if state["routed"] else CANCELLED


def _inspection_recorded(folded: Folded, event: Any) -> None:
    folded.agencies[event.agency]["status"] = INSPECTED


def _hold_placed(folded: Folded, event: Any) -> None:
    folded.holds.add(event.alert_id)


def _hold_lifted(folded: Folded, event: Any) -> None:
    folded.holds.remove(event.alert_id)


def _released(folded: Folded, _event: Any) -> None:
    folded.outcome = RELEASED


def _rejected(folded: Folded, _event: Any) -> None:
    folded.outcome = REJECTED


_EFFECTS: dict[type, Callable[[Folded, Any], None]] = {
    Declaration.Amended: _amended,
    Declaration.Withdrawn: _withdrawn,
    Declaration.AgencyResponded: _responded,
    Declaration.InspectionRecorded: _inspection_recorded,
    Declaration.HoldPlaced: _hold_placed,
    Declaration.HoldLifted: _hold_lifted,
    Declaration.Released: _released,
    Declaration.Rejected: _rejected,
}
# Events that change nothing the board shows (beyond the version and the time): gate-out is the port's
# business, dispatch failures are dispatch's, and erasure and attachments leave every status as it was. Erasure
# scrubs the people a document lists (`scrub`), never its consignee, a party.
NO_EFFECT = frozenset({
    Declaration.GateOutAllowed, Declaration.GateOutRevoked, Declaration.DispatchFailed,
    Declaration.DispatchResumed, Declaration.PersonalDataErased, Declaration.DocumentAttached,
})
FOLDED = frozenset({Declaration.Submitted, *_EFFECTS, *NO_EFFECT})


def fold(before: Folded | None, event: Any) -> Folded:
    """The declaration after `event`, given it as it was just before (None before `Submitted`).

    `before` is changed in place and returned, except on `Submitted`, which starts afresh.
    """
    kind = type(event)
    if kind is Declaration.Submitted:
        folded = Folded(event.originator_id, event.originator_version, event.timestamp, {}, set(), False, "",
                        declarant=event.declarant, reference=event.reference, consignee=consignee(event.document))
        _route(folded, event.routes)
        return folded
    if kind not in FOLDED:
        raise UnknownEvent(f"the status board has no rule for {kind.__qualname__}: add it to projections/board_fold.py")
    if before is None:
        raise ValueError(f"{kind.__qualname__} of declaration {event.originator_id} has no declaration before it")
    effect = _EFFECTS.get(kind)
    if effect is not None:
        effect(before, event)
    before.version = event.originator_version
    before.modified_on = event.timestamp
    return before
