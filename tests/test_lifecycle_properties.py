"""RELIABILITY R10: a hypothesis state machine over the declaration lifecycle.

A small reference model says what each command should do; after every step
the stored declaration (replayed from its events) must agree with it, and
the lifecycle's invariants must hold.
"""

from __future__ import annotations

from collections import Counter

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hub.declarations import AGENCIES, Declarations, VersionConflict, content_hash, validate_document
from hub.declarations.domainmodel import (
    AGENCY_STATUSES,
    AgencyNotRouted,
    DeclarationClosed,
    DeclarationError,
    StaleResponse,
)

from . import samples

SHRIMP = {"hs_code": "0306170000", "description": "Frozen shrimps", "origin": "VN", "quantity": "10",
          "unit": "KGM", "gross_kg": "11", "net_kg": "10", "value": "100.00", "currency": "USD"}
SOLVENT = dict(SHRIMP, hs_code="3814000000", description="Solvent", un_number="1993")
# Variants that route differently: customs+port, +inspection, +maritime, customs only.
VARIANTS = [
    samples.goods(),
    samples.goods(items=[SHRIMP]),
    samples.goods(items=[SOLVENT]),
    samples.goods(containers=[], customs_office="3701"),
]
ACKNOWLEDGEMENTS = ("received", "cancelled")
STATUSES = [s for s in AGENCY_STATUSES if s != "pending"]


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})

    @initialize(variant=st.integers(0, len(VARIANTS) - 1))
    def submit(self, variant: int) -> None:
        declaration = self.app.submit(VARIANTS[variant]).declaration
        self.id = declaration.id
        self.content = variant
        self.agencies: dict[str, dict] = {}
        self._route(variant, since=1)
        self.holds: set[str] = set()
        self.withdrawn = False
        self.outcome = ""  # the last overall outcome recorded: "", "released" or "rejected"
        self.applied: set[str] = set()

    # ---- the reference model ---------------------------------------------------------------

    def _route(self, variant: int, since: int) -> None:
        routes = self.app.routing.route(validate_document(VARIANTS[variant]))
        for state in self.agencies.values():
            state.update(routed=False, status="cancelled")
        for agency in routes:
            self.agencies[agency] = {"routed": True, "status": "pending", "since": since}

    def expected_status(self) -> str:
        statuses = [s["status"] for s in self.agencies.values() if s["routed"]]
        if self.withdrawn:
            return "withdrawn"
        if "rejected" in statuses:
            return "rejected"
        if self.holds:
            return "held"
        if all(s == "released" for s in statuses):
            return "released"
        return "submitted" if all(s == "pending" for s in statuses) else "in_progress"

    @property
    def released(self) -> bool:
        return self.outcome == "released"

    def _expect(self, error: type[Exception] | None, call) -> None:
        try:
            call()
        except Exception as raised:  # noqa: BLE001 - compared with the model's verdict
            assert error is not None and type(raised) is error, f"unexpected {raised!r}"
            return
        assert error is None, f"expected {error.__name__}"

    # ---- commands ------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self.app.get(self.id).version

    @rule(variant=st.integers(0, len(VARIANTS) - 1), stale=st.booleans())
    def amend(self, variant: int, stale: bool) -> None:
        version = self.version - 1 if stale else self.version
        if variant == self.content and not self.withdrawn:
            error = None
        elif stale:
            error = VersionConflict
        elif self.withdrawn or self.released:
            error = DeclarationClosed
        else:
            error = None
        self._expect(error, lambda: self.app.amend(self.id, version, VARIANTS[variant]))
        if error is None and variant != self.content:
            self.content = variant
            self._route(variant, since=self.version)
            self.outcome = ""

    @rule()
    def withdraw(self) -> None:
        error = DeclarationClosed if self.released and not self.withdrawn else None
        self._expect(error, lambda: self.app.withdraw(self.id, "test"))
        if error is None:
            self.withdrawn = True

    # Biased towards release by customs (always routed), so runs reach the closed states.
    @rule(agency=st.one_of(st.just("customs"), st.sampled_from(AGENCIES)),
          status=st.one_of(st.just("released"), st.sampled_from(STATUSES)),
          message=st.integers(0, 30), stale=st.booleans())
    def respond(self, agency: str, status: str, message: int, stale: bool) -> None:
        message_id = f"m{message}"
        state = self.agencies.get(agency)
        answers = (state["since"] - 1 if stale else state["since"]) if state else self.version
        late_receipt = False
        if message_id in self.applied:
            error = None
        elif state is None or not (state["routed"] or status in ACKNOWLEDGEMENTS):
            error = AgencyNotRouted
        elif answers < state["since"]:
            error = StaleResponse
        elif status == "received" and state["status"] not in ("pending", "received"):
            error, late_receipt = None, True  # overtaken by the agency's decision: changes nothing
        elif status in ("accepted", "inspection_required", "inspected") and state["status"] == "released":
            error, late_receipt = None, True  # out of order after the agency's release: changes nothing
        elif status == "cancelled" and state["routed"] and not self.withdrawn:
            error = DeclarationError
        elif self.withdrawn and status not in ACKNOWLEDGEMENTS:
            error = DeclarationClosed
        elif self.released and status != "released" and not (
                not state["routed"] and status in ACKNOWLEDGEMENTS):
            error = DeclarationClosed
        elif status == "released" and state["status"] == "released":
            error, late_receipt = None, True  # a release restated with the same code: changes nothing
        else:
            error = None
        self._expect(error, lambda: self.app.record_response(
            self.id, agency, message_id, status, "2026-12-01T09:00:00Z", answers_version=answers))
        if error is None and message_id not in self.applied and not late_receipt:
            self.applied.add(message_id)
            state["status"] = status if state["routed"] else "cancelled"
            self._settled()

    @rule(alert=st.sampled_from(["a1", "a2"]), place=st.booleans())
    def hold(self, alert: str, place: bool) -> None:
        if place:
            closed = alert not in self.holds and (self.withdrawn or self.released)
            self._expect(DeclarationClosed if closed else None,
                         lambda: self.app.place_hold(self.id, {
                             "alert_id": alert, "subject_kind": "party", "subject": samples.TRADER_A,
                             "reason": "test", "raised_by": "admin", "raised_at": "2026-12-01T08:00:00+00:00"}))
            if not closed:
                self.holds.add(alert)
        else:
            self.app.lift_hold(self.id, alert)
            if alert in self.holds:
                self.holds.discard(alert)
                self._settled()

    def _settled(self) -> None:
        status = self.expected_status()
        if status in ("released", "rejected"):
            self.outcome = status

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def stored_declaration_agrees_with_the_model(self) -> None:
        stored = self.app.get(self.id)
        assert stored.status == self.expected_status()
        assert {a: s["status"] for a, s in stored.agencies.items()} == {
            a: s["status"] for a, s in self.agencies.items()}
        assert stored.content_hash == content_hash(validate_document(VARIANTS[self.content]))

    @invariant()
    def every_message_is_applied_at_most_once(self) -> None:
        history = self.app.history(self.id)
        counts = Counter(e["message_id"] for e in history if "message_id" in e)
        assert all(count == 1 for count in counts.values())
        assert [e["version"] for e in history] == list(range(1, len(history) + 1))

    @invariant()
    def outcomes_are_recorded_once_each_time_they_are_reached(self) -> None:
        history = self.app.history(self.id)
        outcomes = [e["type"] for e in history if e["type"] in ("Released", "Rejected", "Amended")]
        # Between two amendments an outcome is recorded at most once in a row.
        assert all(a != b for a, b in zip(outcomes, outcomes[1:], strict=False) if a != "Amended")
        if self.released:
            assert outcomes and outcomes[-1] == "Released"
            assert self.app.get(self.id).outcome == "released"


Lifecycle.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_declaration_lifecycle = Lifecycle.TestCase
