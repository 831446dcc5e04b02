"""Dispatch on a real nats-server with JetStream, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from adapters.xml import InvalidMessage
from followers.dispatch import dispatches, view_name
from followers.runner import Followers
from messaging.broker import CLOSE_WAIT, OUTBOUND_STREAM, JetStreamPublisher, PublishFailed, outbound_subject
from messaging.embedded import BrokerUnavailable, EmbeddedNats
from projections.messages import recorded_messages
from tradehub.bootstrap import Hub

from .conftest import IN_CI
from .messaging import EXAMPLES


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    try:
        server = EmbeddedNats(tmp_path / "jetstream")
    except BrokerUnavailable as error:
        if IN_CI:
            pytest.fail(f"{error} (CI=true: broker tests must run)", pytrace=False)
        pytest.skip(str(error))
    yield server
    server.stop()


def stored(url: str, agency: str) -> list[tuple[str, dict[str, str]]]:
    """Every message the outbound stream holds for one agency: (message id, headers)."""
    async def read() -> list[tuple[str, dict[str, str]]]:
        client = Client()
        await client.connect(url)
        try:
            jetstream = client.jetstream()
            info = await jetstream.stream_info(OUTBOUND_STREAM)
            found = []
            for sequence in range(1, info.state.last_seq + 1):
                message = await jetstream.get_msg(OUTBOUND_STREAM, sequence)
                if message.subject == outbound_subject(agency):
                    found.append((message.headers["Nats-Msg-Id"], dict(message.headers)))
            return found
        finally:
            await client.close()
    return asyncio.run(read())


def submit_examples(hub: Hub) -> dict[str, str]:
    ids = {}
    for name in ("goods-import.json", "goods-export.json", "vessel-arrival.json"):
        submission = hub.declarations.submit(json.loads((EXAMPLES / name).read_text()))
        ids[name] = str(submission.declaration.id)
    return ids


def dispatcher(hub: Hub, publisher, agencies=("customs", "inspection", "port", "maritime", "border")):
    return Followers(hub.declarations, hub.views,
                            dispatches(hub.declarations, agencies, publisher))


@pytest.mark.broker
def test_every_routed_agency_gets_every_message_once_with_its_id(hub: Hub, nats: EmbeddedNats):
    ids = submit_examples(hub)
    publisher = JetStreamPublisher(nats.url)
    try:
        runner = dispatcher(hub, publisher)
        runner.catch_up()
    finally:
        publisher.close()
    for agency, expected in {"customs": 3, "inspection": 2, "port": 3, "maritime": 3, "border": 1}.items():
        messages = stored(nats.url, agency)
        assert len(messages) == expected, agency
        assert all(headers["Tradehub-Declaration-Id"] in ids.values() for _, headers in messages)
    record = recorded_messages(hub.views, ids["vessel-arrival.json"])
    assert sorted((row["agency"], row["type"]) for row in record) == [
        ("border", "fal5"), ("customs", "conveyance-report"), ("inspection", "declaration"),
        ("maritime", "fal1"), ("maritime", "fal7"), ("port", "visit-request")]
    assert all(row["direction"] == "outbound" and row["body"].startswith("<?xml") for row in record)
    assert runner.lag() == {view_name(agency): 0 for agency in ("customs", "inspection", "port", "maritime",
                                                                "border")}


@pytest.mark.broker
def test_a_batch_published_again_after_a_crash_is_stored_once(hub: Hub, nats: EmbeddedNats):
    submit_examples(hub)
    publisher = JetStreamPublisher(nats.url)
    try:
        dispatcher(hub, publisher, ["customs"]).catch_up()
        # As if the process died after publishing and before committing its position: publish again.
        with hub.views.transaction() as cursor:
            cursor.execute("UPDATE projection_tracking SET position = 0 WHERE name = ?", (view_name("customs"),))
        dispatcher(hub, publisher, ["customs"]).catch_up()
    finally:
        publisher.close()
    assert len(stored(nats.url, "customs")) == 3  # the broker dropped the repeats by Nats-Msg-Id


@pytest.mark.broker
def test_without_the_brokers_acknowledgement_the_position_does_not_move(hub: Hub, nats: EmbeddedNats):
    submit_examples(hub)
    publisher = JetStreamPublisher(nats.url, timeout=1)
    try:
        runner = dispatcher(hub, publisher, ["customs"])
        nats.stop()
        with pytest.raises(PublishFailed):
            runner.step(runner.followers[0])
        assert hub.views.position(view_name("customs")) == 0
        assert hub.views.query("SELECT count(*) FROM agency_messages") == [(0,)]
    finally:
        publisher.close()


@pytest.mark.broker
def test_a_publisher_closes_within_its_bound_though_the_broker_never_answers_its_goodbye(
        nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch):
    """A stopping dispatch worker must exit inside its grace period (15 s), whatever the broker does."""
    publisher = JetStreamPublisher(nats.url)

    async def never_answers() -> None:
        await asyncio.Event().wait()

    async def ignores_cancellation() -> None:
        while True:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue

    monkeypatch.setattr(publisher._broker, "stop", never_answers)
    asyncio.run_coroutine_threadsafe(_spawn(ignores_cancellation), publisher._loop).result(5)
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 4 * CLOSE_WAIT


async def _spawn(work: Any) -> None:
    asyncio.get_running_loop().create_task(work())


@pytest.mark.broker
def test_a_message_that_cannot_be_built_parks_its_declaration_for_that_agency_only(hub: Hub, nats: EmbeddedNats,
                                                                                   monkeypatch):
    ids = submit_examples(hub)
    import adapters.outbound as outbound

    def broken(change, action, rules):
        raise InvalidMessage("outbound message fails port/messages.xsd: a bug")

    monkeypatch.setitem(outbound.MAPPINGS, "port", broken)
    publisher = JetStreamPublisher(nats.url)
    try:
        runner = dispatcher(hub, publisher, ["customs", "port"])
        runner.catch_up()
    finally:
        publisher.close()
    assert hub.views.position(view_name("customs")) > 0 and hub.views.position(view_name("port")) > 0
    assert stored(nats.url, "port") == [] and len(stored(nats.url, "customs")) == 3
    parked = hub.views.query("SELECT declaration_id FROM dispatch_parked WHERE agency = 'port'")
    assert sorted(row[0] for row in parked) == sorted(ids.values())
    for ident in ids.values():  # recorded on each declaration, with why
        failure = hub.declarations.get(ident).dispatch_failures["port"]
        assert failure["version"] == 1 and "a bug" in failure["reason"]


def test_changes_read_back_a_declaration_they_no_longer_remember_and_work_out_the_same(hub: Hub):
    from followers.dispatch import Changes

    ids = list(submit_examples(hub).values())
    for ident in ids:  # interleaved streams: a one-declaration memory forgets each before its next event
        hub.declarations.record_response(ident, "customs", f"c-{ident}", "accepted", "2026-12-01T09:00:00Z")
    hub.declarations.amend(ids[0], 2, json.loads((EXAMPLES / "goods-import.json").read_text()) | {
        "customs_office": "3701"})
    hub.declarations.withdraw(ids[1], "duplicate shipment")
    events = [hub.declarations.mapper.to_domain_event(notification)
              for notification in hub.declarations.recorder.select_notifications(start=0, limit=100)]
    remembering, forgetful = Changes(hub.declarations), Changes(hub.declarations, size=1)
    expected = [remembering.of(event) for event in events]
    assert [forgetful.of(event) for event in events] == expected
    assert {change.event for change in expected if change} >= {"submitted", "amended", "withdrawn"}
