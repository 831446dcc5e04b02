"""The simulated agencies' rules and the hub's inbox, looped in process, on SQLite and PostgreSQL.

Dispatch builds each agency's messages, the agency's rules answer them, and
`Inbox.receive` applies the answers, exactly as over the broker (see
test_broker_flow.py for the same through nats-server) but with nothing in
between, so each rule and each refusal is checked on its own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from adapters.notices import agency_alert, recognition_notice
from adapters.xml import REFUSAL_CODES
from followers.dispatch import AgencyDispatch, dispatches
from followers.inbox import (
    CLOSED,
    MIXED_DECLARATIONS,
    NOT_ROUTED,
    REFUSED_BY_HUB,
    STALE,
    UNKNOWN_AGENCY,
    UNKNOWN_DECLARATION,
    Inbox,
)
from followers.runner import Followers
from messaging.broker import headers_of
from messaging.outcomes import APPLIED, DEAD, UNCHANGED
from projections.alerts import alerts_view
from projections.messages import recorded_messages
from projections.recognition import recognition_view
from simulators.agencies import AGENCIES, ALERT_MARK, REJECT_MARK, Memory, answer, reply_id
from tradehub.bootstrap import Hub

from .messaging import EXAMPLES, Outbox


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


class Loop:
    """Dispatch into an outbox, and the simulated agencies answering from it into the inbox."""

    def __init__(self, hub: Hub, *, strict: bool = True) -> None:
        self.hub = hub
        self.strict = strict  # every answer must apply; else the refused ones are kept in `refused`
        self.refused: list = []
        self.outbox = Outbox()
        self.runner = Followers(hub.declarations, hub.views,
                                       dispatches(hub.declarations, AGENCIES, self.outbox))
        self.inbox = Inbox(hub.declarations, hub.views)
        self.memory = Memory()  # what the simulated agencies remember of their decisions, as their process does
        self.answered: list[tuple[str, bytes]] = []

    def settle(self, agencies: Sequence[str] = AGENCIES) -> None:
        """Dispatch and let `agencies` answer until they have nothing more to say; every answer must apply.

        Messages to the other agencies wait in the outbox, unanswered.
        """
        while True:
            self.hub.runner.catch_up()  # the views, and the holds open alerts place
            self.runner.catch_up()
            due = [message for message in self.outbox.sent if message.agency in agencies]
            if not due:
                return
            self.outbox.sent = [message for message in self.outbox.sent if message.agency not in agencies]
            for message in due:
                for reply in answer(message.agency, message.body, headers_of(message), memory=self.memory):
                    verdict = self.inbox.receive(message.agency, reply.body)
                    if not self.strict and verdict.outcome == DEAD:
                        self.refused.append(verdict)
                        continue
                    assert verdict.outcome in (APPLIED, UNCHANGED), verdict  # a notice's acknowledgement sets nothing
                    self.answered.append((message.agency, reply.body))


def settle(hub: Hub, agencies: Sequence[str] = AGENCIES) -> list[tuple[str, bytes]]:
    loop = Loop(hub)
    loop.settle(agencies)
    return loop.answered


@pytest.mark.parametrize("name", ["goods-import.json", "goods-export.json", "vessel-arrival.json"])
def test_every_example_goes_from_submitted_to_released(hub: Hub, name: str):
    ident = hub.declarations.submit(example(name)).declaration.id
    settle(hub)
    declaration = hub.declarations.get(ident)
    assert declaration.status == "released"
    assert {agency: state["status"] for agency, state in declaration.routed_agencies.items()} == {
        agency: "released" for agency in declaration.routed_agencies}
    record = recorded_messages(hub.views, str(ident))
    inbound = {row["agency"] for row in record if row["direction"] == "inbound"}
    assert inbound == set(declaration.routed_agencies)


def test_the_record_lists_each_answer_after_the_message_it_answers(hub: Hub):
    # Agencies' clocks keep whole seconds; the hub's messages carry microseconds: order is the hub's.
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)
    settle(hub)
    record = recorded_messages(hub.views, ident)
    for agency in ("customs", "inspection", "port"):
        kinds = [row["direction"] for row in record if row["agency"] == agency]
        assert kinds[0] == "outbound", (agency, kinds)
    port = [row["type"] for row in record if row["agency"] == "port"]
    assert port.index("release-notice") < port.index("reply RNR") < port.index("reply REL")


def test_the_port_releases_goods_only_on_the_release_notice(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)
    loop = Loop(hub)
    loop.settle(agencies=("port",))  # customs and inspection silent: no gate-out yet
    assert hub.declarations.get(ident).agencies["port"]["status"] == "received"
    loop.settle()
    record = recorded_messages(hub.views, ident)
    port = [(row["direction"], row["type"]) for row in record if row["agency"] == "port"]
    assert ("outbound", "release-notice") in port and ("inbound", "reply RNR") in port
    assert hub.declarations.get(ident).agencies["port"]["status"] == "released"


def test_inspection_goods_are_inspected_before_release(hub: Hub):
    ident = hub.declarations.submit(example("goods-import.json")).declaration.id
    settle(hub)
    [inspection] = hub.declarations.get(ident).inspections
    assert (inspection["agency"], inspection["result"]) == ("inspection", "pass")


def test_a_reference_marked_reject_is_rejected_by_customs(hub: Hub):
    document = example("goods-export.json")
    document["reference"] = f"XM-{REJECT_MARK}-0001"
    ident = hub.declarations.submit(document).declaration.id
    loop = Loop(hub, strict=False)
    loop.settle()
    declaration = hub.declarations.get(ident)
    assert declaration.status == "rejected"
    assert declaration.agencies["customs"]["status"] == "rejected"
    assert REJECT_MARK in declaration.agencies["customs"]["text"]
    # Maritime cleared the dangerous goods of the version customs rejected: too late, dead-lettered (I2).
    assert {(verdict.code, verdict.reason.split(";")[0]) for verdict in loop.refused} <= {
        ("rejected-version", "version 1 was rejected")}


def test_a_withdrawal_is_acknowledged_by_every_agency_that_heard_of_it(hub: Hub):
    ident = hub.declarations.submit(example("vessel-arrival.json")).declaration.id
    loop = Loop(hub)
    loop.settle(agencies=())  # dispatched, nobody answered yet
    hub.declarations.withdraw(ident, "berth unavailable")
    loop.outbox.sent = [message for message in loop.outbox.sent if message.version > 1]  # lost in the post
    loop.settle()
    declaration = hub.declarations.get(ident)
    assert declaration.status == "withdrawn"
    assert {state["status"] for state in declaration.routed_agencies.values()} == {"cancelled"}


def test_an_amendment_is_answered_for_the_new_version(hub: Hub):
    document = example("goods-import.json")
    ident = hub.declarations.submit(document).declaration.id
    loop = Loop(hub)
    loop.settle(agencies=("customs",))
    amended = copy.deepcopy(document)
    amended["items"][0]["description"] = "Frozen shrimp, peeled"
    version = hub.declarations.amend(ident, hub.declarations.get(ident).version, amended).version
    loop.outbox.sent = [message for message in loop.outbox.sent if message.version > 1]
    loop.settle()
    declaration = hub.declarations.get(ident)
    assert declaration.status == "released"
    answered = {row["version"] for row in recorded_messages(hub.views, str(ident)) if row["direction"] == "inbound"}
    # customs' answers to the original, everyone's to the amendment, then the port's to the release notice
    assert min(answered) == 1 and min(answered - {1}) == version


def test_a_reply_delivered_twice_is_applied_once_and_recorded_once(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-export.json")).declaration.id)
    answers = settle(hub)
    version = hub.declarations.get(ident).version
    inbox = Inbox(hub.declarations, hub.views)
    for agency, body in answers:
        assert inbox.receive(agency, body).outcome == UNCHANGED
    assert hub.declarations.get(ident).version == version
    assert len([row for row in recorded_messages(hub.views, ident) if row["direction"] == "inbound"]) == len(answers)


def test_a_reply_id_depends_on_the_message_answered_and_the_kind():
    assert reply_id("a" * 32, "customs-02") == reply_id("a" * 32, "customs-02")
    assert len({reply_id("a" * 32, "customs-02"), reply_id("b" * 32, "customs-02"),
                reply_id("a" * 32, "customs-08")}) == 3


# ---- refusals: dead letters that change nothing -----------------------------------------------------

def first_answers(hub: Hub, name: str, agency: str) -> tuple[str, list[bytes]]:
    """A declaration dispatched, and `agency`'s answers to it, not yet applied."""
    ident = str(hub.declarations.submit(example(name)).declaration.id)
    outbox = Outbox()
    Followers(hub.declarations, hub.views, [AgencyDispatch(hub.declarations, agency, outbox)]).catch_up()
    bodies = [reply.body for message in outbox.sent for reply in answer(agency, message.body, headers_of(message))]
    return ident, bodies


def assert_dead(hub: Hub, agency: str, body: bytes, code: str) -> str:
    inbound = hub.views.query("SELECT count(*) FROM agency_messages WHERE direction = 'inbound'")
    position = hub.declarations.recorder.max_notification_id()
    verdict = Inbox(hub.declarations, hub.views).receive(agency, body)
    assert (verdict.outcome, verdict.code) == (DEAD, code), verdict
    assert verdict.reason and "\n" not in verdict.reason
    assert hub.declarations.recorder.max_notification_id() == position  # no event
    assert hub.views.query("SELECT count(*) FROM agency_messages WHERE direction = 'inbound'") == inbound
    return verdict.reason


@pytest.mark.parametrize(("body", "code"), [
    (b"", "empty"),
    (b"<Decisions xmlns='urn:tradehub:inspection:1'>", "not-well-formed"),
    (b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x 'y'>]><d>&x;</d>", "doctype"),
    (b"<Replies xmlns='urn:tradehub:port:1'/>", "unexpected-root"),
    (b"<Decisions xmlns='urn:tradehub:inspection:1'><Decision/></Decisions>", "schema-invalid"),
    (b"x" * (2 * 1024 * 1024), "too-large"),
])
def test_hostile_and_invalid_messages_are_refused_with_the_gates_code(hub: Hub, body: bytes, code: str):
    assert code in REFUSAL_CODES
    assert_dead(hub, "inspection", body, code)


def test_a_reply_about_an_unknown_declaration_is_refused(hub: Hub):
    ident, [receipt, _] = first_answers(hub, "goods-import.json", "inspection")
    forged = receipt.replace(ident.encode(), b"00000000-0000-5000-8000-000000000000")
    assert_dead(hub, "inspection", forged, UNKNOWN_DECLARATION)


def test_a_reply_about_a_declaration_not_routed_to_the_agency_is_refused(hub: Hub):
    # goods-export goes to customs and port, not inspection: inspection's word on it must not count.
    export = str(hub.declarations.submit(example("goods-export.json")).declaration.id)
    ident, [receipt, _] = first_answers(hub, "goods-import.json", "inspection")
    reason = assert_dead(hub, "inspection", receipt.replace(ident.encode(), export.encode()), NOT_ROUTED)
    assert "inspection" in reason


def test_a_reply_from_another_agencys_subject_is_refused(hub: Hub):
    _, [receipt, _] = first_answers(hub, "goods-import.json", "inspection")
    assert_dead(hub, "port", receipt, "unexpected-root")  # the port reads only port replies
    assert_dead(hub, "nobody", receipt, UNKNOWN_AGENCY)


def test_an_answer_to_a_replaced_version_is_refused(hub: Hub):
    document = example("goods-import.json")
    ident, [receipt, _] = first_answers(hub, "goods-import.json", "inspection")
    amended = copy.deepcopy(document)
    amended["items"][0]["description"] = "Frozen shrimp, peeled"
    hub.declarations.amend(ident, 1, amended)
    assert_dead(hub, "inspection", receipt, STALE)


def test_an_answer_after_withdrawal_is_refused(hub: Hub):
    ident, [_, decision] = first_answers(hub, "goods-import.json", "inspection")
    hub.declarations.withdraw(ident, "sent twice")
    assert_dead(hub, "inspection", decision, CLOSED)


def test_one_message_answering_two_declarations_is_refused_whole(hub: Hub):
    ident, [receipt, _] = first_answers(hub, "goods-import.json", "inspection")
    other = str(hub.declarations.submit(example("vessel-arrival.json")).declaration.id)
    start = receipt.index(b"<Decision>")
    end = receipt.index(b"</Decision>") + len(b"</Decision>")
    second = receipt[start:end].replace(ident.encode(), other.encode()).replace(b"<FunctionalReferenceID>",
                                                                                  b"<FunctionalReferenceID>x", 1)
    mixed = receipt[:end] + second + receipt[end:]
    assert_dead(hub, "inspection", mixed, MIXED_DECLARATIONS)
    assert hub.declarations.get(ident).agencies["inspection"]["status"] == "pending"


def test_an_answer_naming_no_declaration_id_is_refused(hub: Hub):
    # Customs' schema lets a response name any identifier; only the hub's own ids are declarations.
    ident, [receipt, _] = first_answers(hub, "goods-import.json", "customs")
    reason = assert_dead(hub, "customs", receipt.replace(ident.encode(), b"XM-IMP-2026-000123"), UNKNOWN_DECLARATION)
    assert "XM-IMP-2026-000123" in reason


def test_an_answer_in_another_encoding_is_recorded_as_the_text_it_is(hub: Hub):
    from .test_inspection import decision, message

    ident, _ = first_answers(hub, "goods-import.json", "inspection")
    body = message(decision("RCV", "I-LATIN-1", declaration_id=ident, statements=("Contrôle à quai",)))
    latin = body.decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    verdict = Inbox(hub.declarations, hub.views).receive("inspection", latin)
    assert verdict.outcome == APPLIED, verdict
    [row] = [row for row in recorded_messages(hub.views, ident) if row["direction"] == "inbound"]
    assert "Contrôle à quai" in row["body"]


def test_a_batch_applies_what_it_can_and_refuses_only_the_refused(hub: Hub):
    from .test_inspection import decision, message

    ident, [receipt, _] = first_answers(hub, "goods-import.json", "inspection")
    # A cancellation acknowledgement the hub never asked for: refused, beside a good receipt for the same declaration.
    unasked = message(decision("CAN", "I-CAN-1", declaration_id=ident))
    hostile = b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x 'y'>]><d>&x;</d>"
    verdicts = Inbox(hub.declarations, hub.views).receive_many("inspection", [receipt, unasked, hostile])
    assert [(verdict.outcome, verdict.code) for verdict in verdicts] == [
        (APPLIED, ""), (DEAD, "refused-by-hub"), (DEAD, "doctype")]
    assert hub.declarations.get(ident).agencies["inspection"]["status"] == "received"
    assert [row["type"] for row in recorded_messages(hub.views, ident) if row["direction"] == "inbound"] == [
        "reply RCV"]


# ---- mutual recognition and enforcement assistance -------------------------------------------------

def test_customs_releases_on_the_recognised_inspection_without_inspecting_again(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)  # shrimps: controlled
    settle(hub)
    declaration = hub.declarations.get(ident)
    assert declaration.status == "released"
    assert [(i["agency"], i["result"]) for i in declaration.inspections] == [("inspection", "pass")]
    customs = [(row["direction"], row["type"]) for row in recorded_messages(hub.views, ident)
               if row["agency"] == "customs"]
    assert customs == [("outbound", "declaration"), ("inbound", "reply 02"), ("inbound", "reply 05"),
                       ("outbound", "recognition-notice"), ("inbound", "reply 08")]
    hub.runner.catch_up()
    assert recognition_view(hub.views)["totals"] == {"inspections": 1, "recognitions": 1, "inspections_saved": 1,
                                                     "documents_recognised": 0}


def test_goods_customs_does_not_control_are_released_at_once_and_a_restated_release_changes_nothing(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-export.json")).declaration.id)
    settle(hub)
    customs = [row["type"] for row in recorded_messages(hub.views, ident) if row["agency"] == "customs"]
    assert customs == ["declaration", "reply 02", "reply 08"]
    call = str(hub.declarations.submit(example("vessel-arrival.json")).declaration.id)
    settle(hub)  # the health inspection of the ship is recognised by customs, already released
    versions = hub.declarations.get(call).version
    customs = [row["type"] for row in recorded_messages(hub.views, call) if row["agency"] == "customs"]
    assert customs[-2:] == ["recognition-notice", "reply 08"]
    assert hub.declarations.get(call).status == "released" and hub.declarations.get(call).version == versions


@pytest.mark.parametrize("result, code", [("pass", "08"), ("fail", "03")])
def test_customs_answers_a_recognition_notice_by_its_result(result: str, code: str):
    inspection = {"agency": "inspection", "message_id": "i-1", "result": result, "findings": "",
                  "inspected_at": "2026-12-01T09:30:00Z"}
    notice = recognition_notice("6f1c3d0e-0000-4000-8000-000000000001", 3, "customs", inspection,
                                datetime(2026, 12, 1, 9, 31, tzinfo=UTC))
    [reply] = answer("customs", notice.body, {})
    assert f"<FunctionCode>{code}</FunctionCode>".encode() in reply.body
    assert answer("port", recognition_notice("6f1c3d0e-0000-4000-8000-000000000001", 3, "port", inspection,
                                             datetime(2026, 12, 1, 9, 31, tzinfo=UTC)).body, {}) == []


def test_customs_raises_an_alert_that_holds_the_declaration_and_tells_its_agencies(hub: Hub):
    document = example("goods-import.json")
    document["reference"] = f"XM-{ALERT_MARK}-0001"
    ident = str(hub.declarations.submit(document).declaration.id)
    loop = Loop(hub)
    loop.settle()
    loop.settle()
    declaration = hub.declarations.get(ident)
    assert declaration.status == "held"
    assert {agency: state["status"] for agency, state in declaration.routed_agencies.items()} == {
        "customs": "released", "inspection": "released", "port": "received"}  # no release notice: held (I1)
    [alert] = alerts_view(hub.views)["alerts"]
    assert (alert["subject_kind"], alert["subject"], alert["raised_by"]) == (
        "container", document["containers"][0], "agency:customs")
    assert [row["declaration_id"] for row in alert["declarations"]] == [ident]
    told = {row["agency"] for row in recorded_messages(hub.views, ident) if row["type"] == "alert-notice"}
    assert told == set(declaration.routed_agencies)
    # The same alert message again raises nothing new.
    [body] = [reply for agency, reply in loop.answered if agency == "customs" and b"AlertNotice" in reply]
    assert Inbox(hub.declarations, hub.views).receive("customs", body).outcome == UNCHANGED
    hub.runner.catch_up()
    assert len(alerts_view(hub.views)["alerts"]) == 1


def agency_alert_body(declaration_id: str, function: str = "9", subject: tuple[str, str] = ("vessel", "9074729"),
                      message_id: str = "a" * 32) -> bytes:
    alert = {"alert_id": "X-1", "subject_kind": subject[0], "subject": subject[1], "raised_by": "border",
             "raised_at": "2026-12-01T08:00:00+00:00", "reason": "watch list"}
    body = agency_alert(alert, message_id, declaration_id, 1, datetime(2026, 12, 1, 8, tzinfo=UTC))
    return body.replace(b"<FunctionCode>9</FunctionCode>", f"<FunctionCode>{function}</FunctionCode>".encode())


def test_an_agency_alert_is_refused_when_it_clears_is_not_routed_or_names_no_declaration(hub: Hub):
    ident = str(hub.declarations.submit(example("goods-import.json")).declaration.id)
    assert_dead(hub, "customs", agency_alert_body(ident, function="1"), REFUSED_BY_HUB)
    assert_dead(hub, "border", agency_alert_body(ident), NOT_ROUTED)
    assert_dead(hub, "customs", agency_alert_body("6f1c3d0e-0000-4000-8000-000000000001"), UNKNOWN_DECLARATION)
    broken = agency_alert_body(ident).replace(b"9074729", b"9074728")  # a wrong IMO check digit
    assert_dead(hub, "customs", broken, REFUSED_BY_HUB)
    unnamed = agency_alert_body(ident).replace(b"<RaisedBy>border</RaisedBy>", b"")
    assert_dead(hub, "customs", unnamed, "schema-invalid")
