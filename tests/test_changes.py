"""Which declaration events the agencies hear about, and what each agency is told."""

from __future__ import annotations

import copy

from adapters.messages import (
    AMENDMENT,
    CANCELLATION,
    GATE_OUT,
    GATE_OUT_REVOKED,
    HOLD_LIFTED,
    HOLD_PLACED,
    INSPECTED,
    ORIGINAL,
    RECOGNITION,
    RELEASE_NOTICE,
    RELEASE_REVOCATION,
    change_of,
)
from adapters.outbound import messages_for
from hub.declarations import Declarations, RoutingRules

from . import samples

FOOD = samples.goods()["items"][0] | {"hs_code": "0306170000"}


def replay(app: Declarations, declaration_id) -> list:
    """The change each stored event makes, in order (None for events no agency hears about)."""
    changes, before = [], None
    for event in app.events.get(declaration_id):
        changes.append(change_of(event, copy.deepcopy(before) if before is not None else None))
        before = event.mutate(before)
    return changes


def kinds(changes) -> list:
    return [change.event if change else None for change in changes]


def test_the_port_hears_once_customs_and_inspection_have_both_released():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(samples.goods(items=[FOOD])).declaration
    assert set(declaration.routed_agencies) == {"customs", "inspection", "port"}
    app.record_response(declaration.id, "customs", "c-1", "released", "2026-03-02T10:00:00Z")
    app.record_response(declaration.id, "port", "p-1", "received", "2026-03-02T10:05:00Z")
    app.record_response(declaration.id, "inspection", "i-1", "released", "2026-03-02T11:00:00Z")
    app.record_response(declaration.id, "customs", "c-2", "released", "2026-03-02T12:00:00Z",
                       code="09")  # cleared, after the release
    samples.settle(app, declaration.id)
    changes = replay(app, declaration.id)
    assert kinds(changes) == ["submitted", None, None, None, None, GATE_OUT]
    gate_out = changes[5]
    assert [agency for agency in ("customs", "inspection", "port", "maritime") if gate_out.action_for(agency)] == [
        "port"]
    assert gate_out.action_for("port") == RELEASE_NOTICE
    assert gate_out.agencies["inspection"]["updated_at"] == "2026-03-02T11:00:00Z"


def test_without_inspection_the_customs_release_alone_lets_the_goods_out():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(samples.goods()).declaration
    assert "inspection" not in declaration.routed_agencies
    app.record_response(declaration.id, "customs", "c-1", "released", "2026-03-02T10:00:00Z")
    assert kinds(replay(app, declaration.id)) == ["submitted", None]  # until the enforcement process settles it
    samples.settle(app, declaration.id)
    assert kinds(replay(app, declaration.id)) == ["submitted", None, GATE_OUT]


def test_no_release_notice_without_the_port_or_for_a_ship():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    by_road = app.submit(samples.goods(reference="ROAD", transport={"mode": "road"}, containers=[])).declaration
    app.record_response(by_road.id, "customs", "c-1", "released", "2026-03-02T10:00:00Z")
    samples.settle(app, by_road.id)
    assert app.get(by_road.id).status == "released"
    assert GATE_OUT not in kinds(replay(app, by_road.id))  # released overall, but there is no port to tell
    call = app.submit(samples.vessel_call()).declaration
    for agency in ("customs", "inspection"):
        app.record_response(call.id, agency, f"{agency}-1", "released", "2026-03-02T10:00:00Z")
    samples.settle(app, call.id)
    assert GATE_OUT not in kinds(replay(app, call.id))


def test_a_release_after_an_amendment_notifies_the_port_again():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(samples.goods()).declaration
    app.record_response(declaration.id, "customs", "c-1", "released", "2026-03-02T10:00:00Z")
    samples.settle(app, declaration.id)
    app.amend(declaration.id, 3, samples.goods(customs_office="3701"))
    app.record_response(declaration.id, "customs", "c-2", "released", "2026-03-02T12:00:00Z")
    samples.settle(app, declaration.id)
    changes = replay(app, declaration.id)
    assert kinds(changes) == ["submitted", None, GATE_OUT, "amended", GATE_OUT_REVOKED, None, GATE_OUT]
    assert changes[2].version != changes[6].version
    assert changes[4].action_for("port") == RELEASE_REVOCATION and changes[4].revoked == changes[2].version


def test_what_each_agency_is_told_about_an_amendment_that_reroutes():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(samples.goods()).declaration  # customs, port
    app.amend(declaration.id, 1, samples.goods(items=[FOOD], transport={"mode": "road"}, containers=[]))
    amended = replay(app, declaration.id)[1]
    assert {agency: amended.action_for(agency) for agency in ("customs", "inspection", "port", "border")} == {
        "customs": AMENDMENT, "inspection": ORIGINAL, "port": CANCELLATION, "border": None}


def test_an_inspection_result_is_recognised_by_the_agencies_whose_rules_say_so():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(samples.goods(items=[FOOD])).declaration
    app.record_inspection(declaration.id, "inspection", "i-1", "pass", "2026-03-02T11:00:00Z", findings="clean")
    change = replay(app, declaration.id)[-1]
    assert change.event == INSPECTED
    assert change.inspection == {"agency": "inspection", "message_id": "i-1", "result": "pass",
                                 "findings": "clean", "inspected_at": "2026-03-02T11:00:00Z"}
    assert {agency: change.action_for(agency) for agency in ("customs", "inspection", "port")} == {
        "customs": RECOGNITION, "inspection": None, "port": RECOGNITION}
    # The shipped rules: customs recognises inspection, the port does not (it recognises maritime).
    sent = messages_for(change, app.routing)
    assert [(message.agency, message.name) for message in sent] == [("customs", "recognition-notice")]
    assert b"<ResultCode>pass</ResultCode>" in sent[0].body
    assert messages_for(change, RoutingRules(app.routing.rules, {})) == []


def test_a_hold_tells_every_routed_agency_of_its_alert_and_lifting_it_cancels_that():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(samples.goods(items=[FOOD])).declaration
    alert = {"alert_id": "6f1c3d0e-0000-4000-8000-000000000001", "subject_kind": "container",
             "subject": declaration.document["containers"][0], "reason": "tip-off", "raised_by": "officer:customs",
             "raised_at": "2026-03-02T09:00:00+00:00"}
    app.place_hold(declaration.id, alert)
    app.lift_hold(declaration.id, alert["alert_id"])
    placed, lifted = replay(app, declaration.id)[-2:]
    assert (placed.event, placed.alert) == (HOLD_PLACED, alert)
    assert (lifted.event, lifted.alert) == (HOLD_LIFTED, alert)
    routed = sorted(declaration.routed_agencies)
    assert sorted((m.agency, m.name, m.function_code) for m in messages_for(placed, app.routing)) == [
        (agency, "alert-notice", "9") for agency in routed]
    assert sorted((m.agency, m.name, m.function_code) for m in messages_for(lifted, app.routing)) == [
        (agency, "alert-cleared-notice", "1") for agency in routed]
