"""Messages are listed in the order they happened on the declaration's log, never by a clock.

Neither clock a record holds gives that order: an inbound message's `time` is
the agency's, and `recorded_at` is when the hub wrote the record: dispatch
writes it once the broker has acknowledged, the inbox once it has applied its
whole batch, so what an answer caused can be recorded before the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from followers.dispatch import dispatches
from followers.inbox import Inbox
from followers.runner import Followers
from messaging.broker import headers_of
from simulators.agencies import AGENCIES, answer
from tradehub.bootstrap import Hub

from . import samples
from .conftest import Api
from .messaging import Outbox
from .test_web import Browser

FOOD = samples.goods()["items"][0] | {"hs_code": "0306170000", "description": "Frozen shrimps"}


class Exchange:
    """Dispatch and the simulated agencies, by hand: each agency answers with its own clock."""

    def __init__(self, hub: Hub, clocks: dict[str, Callable[[], datetime]] | None = None) -> None:
        self.hub = hub
        self.outbox = Outbox()
        self.dispatch = Followers(hub.declarations, hub.views, dispatches(hub.declarations, AGENCIES,
                                                                                 self.outbox))
        self.inbox = Inbox(hub.declarations, hub.views)
        self.clocks = clocks or {}

    def answer(self, agency: str) -> None:
        """`agency` answers every message it has been sent so far."""
        self.dispatch.catch_up()
        due = [message for message in self.outbox.sent if message.agency == agency]
        self.outbox.sent = [message for message in self.outbox.sent if message.agency != agency]
        for message in due:
            clock = self.clocks.get(agency, lambda: datetime.now(UTC))
            for reply in answer(agency, message.body, headers_of(message), clock):
                self.inbox.receive(agency, reply.body)
        self.hub.runner.catch_up()
        self.dispatch.catch_up()


def test_an_answer_comes_before_the_message_it_caused_however_late_it_was_recorded(api: Api):
    ident = str(api.hub.declarations.submit(samples.goods("ORDER-1", items=[FOOD])).declaration.id)
    api.sync()
    exchange = Exchange(api.hub)
    exchange.answer("inspection")  # its result: a recognition notice for customs, recorded at once
    # The inbox recorded the result after dispatch recorded the notice it caused (its batch was slow).
    late = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    with api.hub.views.transaction() as cursor:
        cursor.execute("UPDATE agency_messages SET recorded_at = ? WHERE direction = 'inbound'", (late,))
    rows = api.client.get(f"/v1/declarations/{ident}/messages", headers=api.as_("admin")).json()["messages"]
    listed = [(row["direction"], row["agency"], row["type"]) for row in rows]
    [result] = [index for index, (_, agency, kind) in enumerate(listed) if agency == "inspection" and "IRP" in kind]
    notice = listed.index(("outbound", "customs", "recognition-notice"))
    assert listed.index(("outbound", "inspection", "declaration")) < result < notice, listed


def test_the_customs_timeline_follows_the_log_whatever_the_clocks_say(hub: Hub):
    [ident] = [str(hub.declarations.submit(samples.goods("ORDER-2", items=[FOOD])).declaration.id)]
    hub.runner.catch_up()
    exchange = Exchange(hub, {"customs": lambda: datetime.now(UTC) + timedelta(hours=1)})
    exchange.answer("customs")  # 02 and 05 (physical control, awaiting the inspection result), an hour "ahead"
    # The customs consumer's batch recorded its answers late: after the notice that inspection's result caused.
    late = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    with hub.views.transaction() as cursor:
        cursor.execute("UPDATE agency_messages SET recorded_at = ? WHERE direction = 'inbound'", (late,))
    exchange.answer("inspection")  # the result: a recognition notice to customs
    exchange.answer("customs")  # 08 on the recognised result
    html = Browser(hub).sign_in("admin").get(f"/declarations/{ident}").text
    start = html.index('id="agency-customs"')
    customs = html[start:html.index("</article>", start)]
    steps = ["→ Sent declaration", "← Received reply 02", "← Received reply 05", "→ Sent recognition-notice",
             "← Received reply 08"]
    assert all(step in customs for step in steps), customs
    assert sorted(steps, key=customs.index) == steps


def test_without_the_history_an_answer_still_comes_after_what_it_answers(hub: Hub):
    from projections.messages import recorded_messages

    ident = str(hub.declarations.submit(samples.goods("ORDER-3", items=[FOOD])).declaration.id)
    hub.runner.catch_up()
    Exchange(hub).answer("inspection")
    with hub.views.transaction() as cursor:  # as if the inbox had recorded its answers first
        cursor.execute("UPDATE agency_messages SET recorded_at = '2000-01-01T00:00:00+00:00'"
                       " WHERE direction = 'inbound'")
    listed = [(row["direction"], row["agency"]) for row in recorded_messages(hub.views, ident)]
    assert listed.index(("outbound", "inspection")) < listed.index(("inbound", "inspection"))


def test_an_answer_without_a_message_of_its_own_joins_the_timeline_at_its_place_in_the_log():
    from tradehub.web.present import timelines

    start = datetime(2026, 12, 1, 8, tzinfo=UTC)

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat()

    messages = [  # in the order they happened; the agency's clock runs an hour ahead of the hub's
        {"direction": "outbound", "agency": "inspection", "message_id": "d-1", "type": "declaration", "version": 1,
         "time": at(0)},
        {"direction": "inbound", "agency": "inspection", "message_id": "m-1", "type": "reply HPC+REL", "version": 1,
         "time": at(3600)},
        {"direction": "outbound", "agency": "inspection", "message_id": "n-1", "type": "amendment", "version": 4,
         "time": at(3)}]
    events = [{"type": "Submitted", "version": 1, "time": at(0)},
              {"type": "AgencyResponded", "version": 2, "time": at(1), "agency": "inspection", "message_id": "m-1",
               "status": "inspection_required", "code": "HPC", "text": ""},
              {"type": "AgencyResponded", "version": 3, "time": at(2), "agency": "inspection", "message_id": "m-2",
               "status": "released", "code": "REL", "text": ""},  # the second reply in m-1: no record of its own
              {"type": "Amended", "version": 4, "time": at(3)}]
    [line] = timelines({"inspection": {"routed": True, "status": "pending"}}, messages, events)
    assert [entry.title for entry in line.entries] == [
        "Sent declaration", "Received reply HPC+REL", "Answer: released", "Sent amendment"]


def test_answers_recorded_in_one_batch_keep_their_order_even_when_one_changed_nothing(api: Api):
    """The port acknowledges a release notice (RNR, which changes nothing) and then releases (REL); the inbox
    records a batch of answers at once, so only the log can tell that the acknowledgement came first."""
    hub = api.hub
    ident = str(hub.declarations.submit(samples.goods()).declaration.id)
    exchange = Exchange(hub)
    exchange.answer("port")  # the cargo notice's receipt
    exchange.answer("customs")
    samples.followed(hub)  # the enforcement process allows gate-out: the release notice
    exchange.dispatch.catch_up()
    [notice] = [message for message in exchange.outbox.sent if message.name == "release-notice"]
    replies = [reply.body for reply in answer("port", notice.body, headers_of(notice))]
    assert len(replies) == 2  # RNR, then REL
    exchange.inbox.receive_many("port", replies)
    port = [row["type"] for row in api.client.get(f"/v1/declarations/{ident}/messages",
                                                  headers=api.as_("admin")).json()["messages"]
            if row["agency"] == "port"]
    assert port[-3:] == ["release-notice", "reply RNR", "reply REL"], port
