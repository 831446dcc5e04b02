"""The declaration aggregate, given events → command → new events or a domain error."""

from __future__ import annotations

import pytest

from hub.declarations import Declaration, DeclarationError, content_hash, declaration_id
from hub.declarations.domainmodel import (
    AgencyNotRouted,
    DeclarationClosed,
    IdentityChanged,
    StaleResponse,
    UnknownVersion,
    VersionRejected,
)

from . import samples

ROUTES = {"customs": "every goods declaration", "port": "sea transport"}
ALERT = {"alert_id": "alert-1", "subject_kind": "container", "subject": "HLXU8000014", "reason": "tip-off",
         "raised_by": "officer:customs", "raised_at": "2026-12-01T08:00:00+00:00"}


def submitted(routes: dict[str, str] | None = None) -> Declaration:
    document = samples.goods()
    declaration = Declaration(
        kind="goods", declarant=samples.TRADER_A, reference=document["reference"],
        document=document, content_hash=content_hash(document), routes=routes or ROUTES,
    )
    declaration.collect_events()
    return declaration


def new_events(declaration: Declaration) -> list[str]:
    return [type(event).__name__ for event in declaration.collect_events()]


def released(declaration: Declaration) -> Declaration:
    """Every routed agency releases, and the enforcement process settles what that made due."""
    for agency in declaration.routed_agencies:
        declaration.record_response(agency, f"{agency}-release", "released", "2026-12-01T10:00:00Z")
    declaration.settle(declaration.version)
    declaration.collect_events()
    return declaration


def test_id_derives_from_declarant_and_reference():
    declaration = submitted()
    assert declaration.id == declaration_id(samples.TRADER_A, "TEST-GOODS-0001")
    assert declaration.id != declaration_id(samples.TRADER_B, "TEST-GOODS-0001")


def test_a_new_declaration_waits_on_every_routed_agency():
    declaration = submitted()
    assert declaration.status == "submitted"
    assert {name: state["status"] for name, state in declaration.agencies.items()} == {
        "customs": "pending", "port": "pending"}


def test_a_first_answer_puts_the_declaration_in_progress():
    declaration = submitted()
    declaration.record_response("customs", "m1", "received", "2026-12-01T09:00:00Z", code="02")
    assert new_events(declaration) == ["AgencyResponded"]
    assert declaration.status == "in_progress"
    assert declaration.agencies["customs"]["code"] == "02"


def test_release_by_the_last_routed_agency_is_settled_by_the_enforcement_process():
    declaration = submitted()
    declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z")
    assert new_events(declaration) == ["AgencyResponded"]
    declaration.record_response("port", "m2", "released", "2026-12-01T09:05:00Z")
    assert new_events(declaration) == ["AgencyResponded"]
    assert declaration.status == "in_progress"  # not released until settled (I3)
    assert declaration.settle(declaration.version)
    assert new_events(declaration) == ["GateOutAllowed", "Released"]
    assert declaration.status == "released"
    assert not declaration.settle(declaration.version)


def test_settling_waits_for_the_version_that_made_it_due():
    declaration = submitted()
    declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z")
    checked = declaration.version  # the enforcement process has seen the alerts up to here only
    declaration.record_response("port", "m2", "released", "2026-12-01T09:05:00Z")
    assert declaration.settle(checked)  # gate-out was due at `checked`: allowed
    assert new_events(declaration)[-1] == "GateOutAllowed"
    assert declaration.status == "in_progress"  # the release became due later: its own settle decides it
    assert declaration.settle(declaration.version - 1)
    assert declaration.status == "released"


def test_a_hold_placed_after_gate_out_revokes_it_and_its_lifting_waits_for_settle():
    declaration = submitted()
    declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z")
    declaration.settle(declaration.version)
    declaration.collect_events()
    assert declaration.gate_out
    declaration.place_hold(ALERT)
    assert new_events(declaration) == ["HoldPlaced", "GateOutRevoked"]
    assert not declaration.gate_out and declaration.status == "held"
    declaration.record_response("port", "m2", "released", "2026-12-01T09:05:00Z")
    assert not declaration.settle(declaration.version)  # a hold stands: nothing is allowed
    declaration.lift_hold("alert-1")
    assert new_events(declaration) == ["AgencyResponded", "HoldLifted"]
    assert declaration.status == "in_progress"
    assert declaration.settle(declaration.version)
    assert new_events(declaration) == ["GateOutAllowed", "Released"]


@pytest.mark.parametrize("late", ["amend", "reject", "inspect"])
def test_anything_that_stops_the_goods_after_gate_out_revokes_it(late: str):
    declaration = submitted({"customs": "every goods declaration", "inspection": "HS 03", "port": "sea"})
    declaration.record_response("customs", "c1", "released", "2026-12-01T09:00:00Z")
    declaration.record_response("inspection", "i1", "released", "2026-12-01T09:01:00Z")
    declaration.settle(declaration.version)
    declaration.collect_events()
    if late == "amend":
        document = samples.goods(containers=["MSCU1234566"])
        declaration.amend(document, content_hash(document), ROUTES)
    elif late == "reject":
        declaration.record_response("inspection", "i2", "rejected", "2026-12-01T09:02:00Z")
    else:
        declaration.record_inspection("inspection", "i3", "fail", "2026-12-01T09:02:00Z")
    events = new_events(declaration)
    assert events[events.index("GateOutRevoked") - 1] in ("Amended", "AgencyResponded", "InspectionRecorded")
    assert not declaration.gate_out


def test_a_rejected_version_takes_no_step_forward_until_amended():
    declaration = submitted({"customs": "every goods declaration", "inspection": "HS 03", "port": "sea"})
    declaration.record_response("customs", "c1", "rejected", "2026-12-01T09:00:00Z", answers_version=1)
    declaration.collect_events()
    assert not declaration.record_response("port", "p-receipt", "received", "2026-12-01T09:01:00Z")  # nothing
    for agency, status in (("customs", "released"), ("inspection", "released"), ("port", "accepted"),
                           ("inspection", "inspection_required")):
        with pytest.raises(VersionRejected):
            declaration.record_response(agency, f"{agency}-{status}", status, "2026-12-01T09:01:00Z",
                                        answers_version=1)
    with pytest.raises(VersionRejected):
        declaration.record_inspection("inspection", "i1", "pass", "2026-12-01T09:01:00Z", answers_version=1)
    assert declaration.record_response("inspection", "i2", "rejected", "2026-12-01T09:02:00Z")  # a rejection too
    assert new_events(declaration) == ["AgencyResponded"]
    assert declaration.status == "rejected" and not declaration.settle(declaration.version)
    document = samples.goods(containers=["MSCU1234566"])
    declaration.amend(document, content_hash(document), ROUTES)  # an amendment reopens it
    declaration.collect_events()
    assert declaration.record_response("customs", "c2", "released", "2026-12-01T09:03:00Z",
                                       answers_version=declaration.version)


def test_an_answer_to_a_version_the_declaration_never_had_is_refused():
    declaration = submitted()
    for version in (0, 2, 99):
        with pytest.raises(UnknownVersion):
            declaration.record_response("customs", f"m{version}", "released", "2026-12-01T09:00:00Z",
                                        answers_version=version)
    assert new_events(declaration) == []


def test_one_rejection_rejects_the_declaration():
    declaration = submitted()
    declaration.record_response("port", "m1", "released", "2026-12-01T09:00:00Z")
    declaration.record_response("customs", "m2", "rejected", "2026-12-01T09:01:00Z", text="bad HS")
    assert new_events(declaration) == ["AgencyResponded", "AgencyResponded", "Rejected"]
    assert declaration.status == "rejected"


def test_a_repeated_message_is_applied_once():
    declaration = submitted()
    assert declaration.record_response("customs", "m1", "accepted", "2026-12-01T09:00:00Z")
    assert not declaration.record_response("customs", "m1", "accepted", "2026-12-01T09:00:00Z")
    assert new_events(declaration) == ["AgencyResponded"]


def test_an_unrouted_agency_cannot_answer():
    declaration = submitted()
    with pytest.raises(AgencyNotRouted):
        declaration.record_response("border", "m1", "released", "2026-12-01T09:00:00Z")
    assert new_events(declaration) == []


def test_an_unknown_status_is_refused():
    declaration = submitted()
    with pytest.raises(ValueError, match="not an agency status"):
        declaration.record_response("customs", "m1", "approved", "2026-12-01T09:00:00Z")


def test_a_hold_overrides_release_until_lifted():
    declaration = submitted()
    declaration.place_hold(ALERT)
    released(declaration)
    assert declaration.status == "held"
    assert declaration.lift_hold("alert-1")
    assert new_events(declaration) == ["HoldLifted"]
    assert declaration.settle(declaration.version)
    assert new_events(declaration) == ["GateOutAllowed", "Released"]
    assert declaration.status == "released"


def test_placing_the_same_hold_twice_changes_nothing():
    declaration = submitted()
    assert declaration.place_hold(ALERT)
    assert not declaration.place_hold(ALERT)
    assert new_events(declaration) == ["HoldPlaced"]


def test_amendment_reroutes_and_asks_every_agency_again():
    declaration = submitted()
    declaration.record_response("customs", "m1", "accepted", "2026-12-01T09:00:00Z")
    declaration.collect_events()
    document = samples.goods(containers=[])
    changed = declaration.amend(document, content_hash(document), {"customs": "every goods declaration"})
    assert changed and new_events(declaration) == ["Amended"]
    assert declaration.agencies["customs"]["status"] == "pending"
    assert declaration.agencies["port"]["status"] == "cancelled"
    assert list(declaration.routed_agencies) == ["customs"]


def test_amendment_with_the_current_content_changes_nothing():
    declaration = submitted()
    assert not declaration.amend(declaration.document, declaration.content_hash, ROUTES)
    assert new_events(declaration) == []


@pytest.mark.parametrize("field, changes", [
    ("reference", {"reference": "OTHER-REF"}),
    ("declarant", {"declarant": {"id": samples.TRADER_B, "name": "Other"}}),
])
def test_amendment_cannot_change_identity(field, changes):
    declaration = submitted()
    document = samples.goods(**changes)
    with pytest.raises(IdentityChanged) as raised:
        declaration.amend(document, content_hash(document), ROUTES)
    assert raised.value.field == field


def test_no_amendment_or_withdrawal_after_release():
    declaration = released(submitted())
    document = samples.goods(containers=[])
    with pytest.raises(DeclarationClosed):
        declaration.amend(document, content_hash(document), ROUTES)
    with pytest.raises(DeclarationClosed):
        declaration.withdraw("changed my mind")
    assert new_events(declaration) == []


def test_a_response_to_a_replaced_version_is_stale():
    declaration = submitted()
    document = samples.goods(containers=[])
    declaration.amend(document, content_hash(document), ROUTES)
    declaration.collect_events()
    with pytest.raises(StaleResponse):
        declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z", answers_version=1)
    declaration.record_response("customs", "m2", "released", "2026-12-01T09:00:00Z", answers_version=2)
    assert new_events(declaration) == ["AgencyResponded"]


def test_withdrawal_is_final_but_agencies_may_acknowledge_it():
    declaration = submitted()
    assert declaration.withdraw("shipment cancelled")
    assert not declaration.withdraw("again")
    assert new_events(declaration) == ["Withdrawn"]
    assert declaration.status == "withdrawn"
    declaration.record_response("customs", "m1", "cancelled", "2026-12-01T09:00:00Z", code="10")
    with pytest.raises(DeclarationClosed):
        declaration.record_response("port", "m2", "released", "2026-12-01T09:00:00Z")
    assert new_events(declaration) == ["AgencyResponded"]


def test_an_agency_routed_away_may_only_acknowledge():
    declaration = submitted()
    document = samples.goods(containers=[])
    declaration.amend(document, content_hash(document), {"customs": "every goods declaration"})
    declaration.record_response("port", "m1", "cancelled", "2026-12-01T09:00:00Z")
    assert declaration.agencies["port"]["status"] == "cancelled"
    with pytest.raises(AgencyNotRouted):
        declaration.record_response("port", "m2", "released", "2026-12-01T09:00:00Z")


def test_inspection_is_recorded_once_per_message():
    declaration = submitted()
    assert declaration.record_inspection("customs", "i1", "pass", "2026-12-01T09:00:00Z", findings="ok")
    assert not declaration.record_inspection("customs", "i1", "pass", "2026-12-01T09:00:00Z")
    assert new_events(declaration) == ["InspectionRecorded"]
    assert declaration.agencies["customs"]["status"] == "inspected"
    with pytest.raises(ValueError, match="inspection result"):
        declaration.record_inspection("customs", "i2", "maybe", "2026-12-01T09:00:00Z")


def test_an_agency_routed_away_may_acknowledge_even_after_release():
    declaration = submitted()
    document = samples.goods(containers=[])
    declaration.amend(document, content_hash(document), {"customs": "every goods declaration"})
    declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z")
    declaration.settle(declaration.version)
    declaration.collect_events()
    assert declaration.status == "released"
    assert declaration.record_response("port", "m2", "cancelled", "2026-12-01T09:05:00Z")
    assert new_events(declaration) == ["AgencyResponded"]


def test_a_routed_agency_cannot_cancel_a_live_declaration():
    declaration = submitted()
    declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z")
    with pytest.raises(DeclarationError, match="only acknowledge a cancellation"):
        declaration.record_response("port", "m2", "cancelled", "2026-12-01T09:00:00Z")
    assert declaration.status == "in_progress"


def test_a_hold_keeps_what_agencies_are_told_of_its_alert():
    declaration = submitted()
    declaration.place_hold(ALERT)
    [event] = declaration.collect_events()
    assert (event.alert_id, event.subject, event.alert) == ("alert-1", "container HLXU8000014", ALERT)
    assert declaration.holds == {"alert-1": ALERT}


def test_a_release_restated_changes_nothing():
    declaration = submitted()
    declaration.record_response("customs", "m1", "released", "2026-12-01T09:00:00Z", code="08")
    declaration.collect_events()
    assert not declaration.record_response("customs", "m2", "released", "2026-12-01T09:05:00Z", code="08")
    assert new_events(declaration) == []
    assert declaration.record_response("customs", "m3", "released", "2026-12-01T09:06:00Z", code="09")
    assert new_events(declaration) == ["AgencyResponded"]


@pytest.mark.parametrize("late", ["received", "accepted", "inspection_required", "inspected"])
def test_an_agencys_step_applied_after_its_release_takes_nothing_back(late: str):
    declaration = submitted()
    declaration.record_response("customs", "m-08", "released", "2026-12-01T09:05:00Z", code="08")
    declaration.collect_events()
    assert not declaration.record_response("customs", "m-05", late, "2026-12-01T09:00:00Z", code="05")
    assert new_events(declaration) == [] and declaration.agencies["customs"]["status"] == "released"
    assert declaration.record_response("customs", "m-03", "rejected", "2026-12-01T09:10:00Z", code="03")
