"""Issue 14's seven ways past enforcement, each tried again as a hostile trader or agency would, on both stores.

Dispatch, the simulated agencies and the inbox loop in process (test_simulators.Loop), with the projections and
the enforcement process stepped between rounds, as `tradehub serve` runs them. docs/lifecycle.md states the
invariants (I1-I7) these examples pin down; tests/test_lifecycle_properties.py checks them at random.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from uuid import uuid5

from lxml import etree

from adapters.maritime import DECISION_SCHEMA as MARITIME_DECISION
from adapters.messages import message_id
from adapters.notices import agency_alert
from adapters.outbound import MESSAGE_NAMES, answered_version
from followers.inbox import (
    CLOSED,
    FOREIGN_SUBJECT,
    NOT_ROUTED,
    REJECTED_VERSION,
    STALE,
    UNKNOWN_VERSION,
    Inbox,
)
from hub.declarations import agency_alert_id
from hub.declarations.alert import ALERT_NAMESPACE
from messaging.outcomes import APPLIED
from projections.exchange import exchange_view
from projections.messages import recorded_messages
from simulators.agencies import REJECT_MARK, Memory, customs_response, fal_reply
from tradehub.bootstrap import Hub

from . import samples
from .test_simulators import Loop, assert_dead, example

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
MESSAGE = "a1e2" * 8  # an agency alert notice's id


def types(hub: Hub, ident: str, agency: str) -> list[str]:
    return [row["type"] for row in recorded_messages(hub.views, ident) if row["agency"] == agency]


# ---- 1. gate-out while held (I1) ---------------------------------------------------------------

def test_goods_held_by_an_alert_never_get_a_release_notice_and_go_once_it_is_cleared(hub: Hub):
    app = hub.declarations
    document = example("goods-import.json")
    alert = app.raise_alert("container", document["containers"][0], "seal tampered", "officer:customs")
    ident = str(app.submit(document).declaration.id)
    loop = Loop(hub)
    loop.settle()
    declaration = app.get(ident)
    assert declaration.status == "held" and not declaration.gate_out
    assert declaration.agencies["customs"]["status"] == declaration.agencies["inspection"]["status"] == "released"
    assert declaration.agencies["port"]["status"] != "released"  # the goods are still in the port
    assert "release-notice" not in types(hub, ident, "port")
    app.clear_alert(alert.id, "officer:customs")
    loop.settle()
    assert app.get(ident).status == "released"
    assert types(hub, ident, "port").count("release-notice") == 1


def test_a_hold_after_the_release_notice_revokes_it_and_the_port_stops_the_goods(hub: Hub):
    app = hub.declarations
    document = example("goods-import.json")
    ident = str(app.submit(document).declaration.id)
    loop = Loop(hub)
    loop.settle(agencies=("customs", "inspection"))  # released by both; the port has not answered yet
    assert app.get(ident).gate_out
    alert = app.raise_alert("container", document["containers"][-1], "tip-off", "officer:inspection")
    loop.settle(agencies=())
    loop.settle()
    declaration = app.get(ident)
    assert declaration.status == "held" and not declaration.gate_out
    assert declaration.agencies["port"]["status"] == "held"  # it answered the revocation RVR, then HLD
    port = types(hub, ident, "port")
    assert port.index("release-notice") < port.index("release-revocation")
    assert "reply RVR+HLD" in port
    hub.runner.catch_up()
    flows = [(flow["from"], flow["to"], flow["type"]) for flow in exchange_view(hub.views, ident)["flows"]]
    assert ("customs", "port", "release-revocation") in flows  # officers see the revocation as a flow too
    app.clear_alert(alert.id, "officer:inspection")
    loop.settle()
    assert app.get(ident).status == "released"
    assert types(hub, ident, "port").count("release-notice") == 2  # a fresh one, under a new id
    notices = [row["message_id"] for row in recorded_messages(hub.views, ident) if row["type"] == "release-notice"]
    assert len(set(notices)) == 2


# ---- 2. a rejection overturned (I2) ------------------------------------------------------------

def test_a_rejected_import_sent_to_inspection_stays_rejected(hub: Hub):
    document = example("goods-import.json")
    document["reference"] = f"XM-{REJECT_MARK}-0002"
    ident = str(hub.declarations.submit(document).declaration.id)
    loop = Loop(hub, strict=False)
    loop.settle()
    declaration = hub.declarations.get(ident)
    assert declaration.status == "rejected"
    # Inspection's answers to the rejected version come too late, whichever came first: refused, not applied.
    assert {verdict.code for verdict in loop.refused} <= {REJECTED_VERSION}
    assert declaration.agencies["customs"]["status"] == "rejected"
    assert "reply 08" not in types(hub, ident, "customs")
    assert "release-notice" not in types(hub, ident, "port")


def test_a_release_of_a_rejected_version_is_dead_lettered_and_changes_nothing(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)
    declaration = hub.declarations.get(ident)
    answered = message_id(ident, 1, "customs", "declaration")
    rejected = customs_response(answered, ident, "1", "03", NOW, error="HS code wrong").body
    assert Inbox(hub.declarations, hub.views).receive("customs", rejected).outcome == APPLIED
    released = customs_response(answered + "x", ident, "1", "08", NOW).body
    assert "only an amendment" in assert_dead(hub, "customs", released, REJECTED_VERSION)
    assert hub.declarations.get(ident).status == "rejected" and declaration.version == 1


def test_the_simulated_customs_never_releases_what_it_rejected():
    memory = Memory()
    ident = "6f1c3d0e-0000-4000-8000-000000000001"
    memory.reject(ident, 1)
    assert memory.rejects(ident)
    memory.assessed(ident, 1)  # the same version assessed again: still rejected
    assert memory.rejects(ident)
    memory.assessed(ident, 3)  # an amendment it accepted
    assert not memory.rejects(ident)


# ---- 4. answers to a replaced version (I4) -----------------------------------------------------

def test_a_fal_reply_to_a_replaced_version_is_stale_and_one_quoting_nothing_is_unknown(hub: Hub):
    app = hub.declarations
    document = example("vessel-arrival.json")
    ident = str(app.submit(document).declaration.id)
    first_form = message_id(ident, 1, "maritime", "fal1")
    amended = copy.deepcopy(document)
    amended["voyage"] = "027N"
    app.amend(ident, 1, amended)
    version = app.get(ident).version
    cleared = fal_reply(MARITIME_DECISION, "maritime", first_form, ident, NOW, "Cleared").body
    assert "replaced" in assert_dead(hub, "maritime", cleared, STALE)
    unknown = fal_reply(MARITIME_DECISION, "maritime", "f" * 32, ident, NOW, "Cleared").body
    assert assert_dead(hub, "maritime", unknown, UNKNOWN_VERSION)
    current = fal_reply(MARITIME_DECISION, "maritime", message_id(ident, version, "maritime", "fal1"), ident, NOW,
                         "Cleared").body
    assert Inbox(app, hub.views).receive("maritime", current).outcome == APPLIED
    assert app.get(ident).agencies["maritime"]["status"] == "released"


def test_a_customs_answer_without_a_version_is_applied_to_the_message_it_quotes_or_refused(hub: Hub):
    app = hub.declarations
    document = example("goods-export.json")
    ident = str(app.submit(document).declaration.id)
    amended = copy.deepcopy(document)
    amended["items"][0]["description"] = "Machine parts, boxed"
    app.amend(ident, 1, amended)
    old = without_version(customs_response(message_id(ident, 1, "customs", "declaration"), ident, "1", "03", NOW))
    assert assert_dead(hub, "customs", old, STALE)
    forged = without_version(customs_response("0" * 32, ident, "1", "03", NOW))
    assert assert_dead(hub, "customs", forged, UNKNOWN_VERSION)
    current = without_version(customs_response(message_id(ident, 2, "customs", "amendment"), ident, "1", "08", NOW))
    assert Inbox(app, hub.views).receive("customs", current).outcome == APPLIED
    assert app.get(ident).agencies["customs"]["status"] == "released"


def without_version(answer) -> bytes:
    """A customs response as a customs system that leaves out the optional VersionID sends it."""
    root = etree.fromstring(answer.body)
    for element in root.iter("{urn:wco:datamodel:WCO:RES-DMS:2}VersionID"):
        element.getparent().remove(element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# ---- 6 and 7. agencies' alerts (I6, I7) --------------------------------------------------------

def _alert_notice(ident: str, subject_kind: str, subject: str, message: str = MESSAGE) -> bytes:
    alert = {"alert_id": "CUS-1", "subject_kind": subject_kind, "subject": subject, "raised_by": "customs",
             "raised_at": NOW.isoformat(), "reason": "undervaluation suspected"}
    return agency_alert(alert, message, ident, 1, NOW)


def test_an_agency_alert_on_a_subject_foreign_to_the_declaration_is_dead_lettered(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)
    other_party = example("vessel-arrival.json")["declarant"]["id"]
    assert other_party not in str(example("goods-import.json"))
    assert assert_dead(hub, "customs", _alert_notice(ident, "party", other_party), FOREIGN_SUBJECT)
    assert assert_dead(hub, "maritime", _alert_notice(ident, "container", "CSQU3054383"), NOT_ROUTED)


def test_an_agency_alert_id_cannot_be_guessed_from_its_message_id_and_a_redelivery_raises_it_once(hub: Hub):
    app = hub.declarations
    document = example("goods-import.json")
    ident = str(app.submit(document).declaration.id)
    body = _alert_notice(ident, "container", document["containers"][0])
    inbox = Inbox(app, hub.views)
    assert inbox.receive("customs", body).outcome == APPLIED
    assert inbox.receive("customs", body).outcome != APPLIED
    hub.runner.catch_up()
    [(alert_id,)] = hub.views.query("SELECT id FROM alerts")
    assert alert_id != str(uuid5(ALERT_NAMESPACE, f"customs:{MESSAGE}"))  # the old, guessable derivation
    assert alert_id == str(agency_alert_id("customs", MESSAGE, "container", document["containers"][0],
                                         "undervaluation suspected", ident))


def test_an_agency_alert_about_a_released_declaration_holds_later_ones_but_does_not_reopen_it(hub: Hub):
    app = hub.declarations
    document = example("goods-export.json")
    ident = str(app.submit(document).declaration.id)
    loop = Loop(hub)
    loop.settle()
    assert app.get(ident).status == "released"
    body = _alert_notice(ident, "party", document["declarant"]["id"])
    assert Inbox(app, hub.views).receive("customs", body).outcome == APPLIED
    later = dict(copy.deepcopy(document), reference="XM-EXP-LATER")
    later_id = str(app.submit(later).declaration.id)
    loop.settle()
    assert app.get(ident).status == "released" and not app.get(ident).holds
    assert app.get(later_id).status == "held"


def test_every_message_the_hub_sends_is_found_again_by_its_id_at_its_version(hub: Hub):
    """I4's fallback, for every agency and kind of message: answered_version finds the version of whatever the
    hub sent, so no mapping can add a message name an answer to it could not be resolved from."""
    app = hub.declarations
    loop = Loop(hub, strict=False)  # answers to the messages the amendment replaced are stale: dead-lettered
    ids = [str(app.submit(example(name)).declaration.id)
           for name in ("goods-import.json", "goods-export.json", "vessel-arrival.json")]
    loop.settle(agencies=("inspection",))  # recognition notices to the others
    amended = example("vessel-arrival.json")
    amended["voyage"] = "027N"
    app.amend(ids[2], app.get(ids[2]).version, amended)
    app.raise_alert("container", example("goods-import.json")["containers"][0], "tip-off", "officer:customs")
    withdrawn = str(app.submit(dict(example("goods-export.json"), reference="XM-EXP-GONE")).declaration.id)
    loop.settle(agencies=())
    app.withdraw(withdrawn, "not shipped")
    loop.settle()
    outbound = [row for ident in [*ids, withdrawn] for row in recorded_messages(hub.views, ident)
                if row["direction"] == "outbound"]
    assert {row["agency"] for row in outbound} == set(MESSAGE_NAMES)
    assert {verdict.code for verdict in loop.refused} <= {STALE, CLOSED}  # and answers after the withdrawal
    for ident in [*ids, withdrawn]:
        declaration = app.get(ident)
        for row in recorded_messages(hub.views, ident):
            if row["direction"] == "outbound":
                assert answered_version(declaration, row["agency"], row["message_id"]) == row["version"], row["type"]


# ---- 3. an alert loses the race (I3), pinned down; tests/test_enforcement_race.py races it for real ------------

def test_an_alert_between_two_releases_holds_even_when_the_follower_reads_them_all_at_once(hub: Hub):
    """The follower, lagging, finds in one batch: inspection releases, an alert on the container, customs
    releases. Deciding on the declaration as it stands when reading the first release would let the goods out
    under an alert that came before the last release."""
    app = hub.declarations
    document = example("goods-import.json")
    ident = str(app.submit(document).declaration.id)
    samples.followed(hub)
    app.record_response(ident, "inspection", "i-rel", "released", "2026-12-02T09:00:00Z", answers_version=1)
    app.raise_alert("container", document["containers"][0], "tip-off", "officer:customs")
    app.record_response(ident, "customs", "c-rel", "released", "2026-12-02T09:01:00Z", answers_version=1)
    samples.followed(hub)
    declaration = app.get(ident)
    assert declaration.status == "held" and not declaration.gate_out
    assert "GateOutAllowed" not in [event["type"] for event in app.history(ident)]
