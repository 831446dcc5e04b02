"""The hub's streams on a 3-node JetStream cluster: a node lost and restarted under publishing loses nothing.

The hub's own publisher (messaging.broker.JetStreamPublisher, as dispatch uses it) is given the three
nodes' URLs; its `ensure_streams` must make the streams R3 by itself. While it publishes batches, retrying
a batch the broker did not acknowledge (as dispatch does, with the same message ids), the node leading the
outbound stream is SIGKILLed and started again on the same port and store. Then another node is killed: what
is read now comes from the restarted node and the one left, so it shows the restarted node caught up.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client

from adapters.messages import Message
from messaging.broker import (
    DEAD_STREAM,
    INBOUND_STREAM,
    OUTBOUND_STREAM,
    JetStreamPublisher,
    PublishFailed,
    agency_durable,
    broker_servers,
)
from messaging.embedded import EmbeddedNatsCluster

pytestmark = [pytest.mark.slow, pytest.mark.broker]

AGENCIES = ("customs", "port")
BATCH = 50
BATCHES = 40


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedNatsCluster]:
    nodes = EmbeddedNatsCluster(tmp_path / "nats")
    yield nodes
    nodes.stop()


def on_cluster(url: str, work):
    async def run():
        client = Client()
        await client.connect(servers=broker_servers(url), connect_timeout=5)
        try:
            return await work(client.jetstream())
        finally:
            await client.close()
    return asyncio.run(run())


def message(number: int) -> Message:
    agency = AGENCIES[number % len(AGENCIES)]
    return Message(agency=agency, name="declaration", message_id=f"msg-{number:05d}",
                   declaration_id=f"decl-{number // 3:05d}", version=1, function_code="9",
                   issued_at=datetime(2026, 1, 1, tzinfo=UTC), body=b"<declaration>%d</declaration>" % number)


def publish_until_stored(publisher: JetStreamPublisher, batch: list[Message], deadline: float) -> None:
    """Publish a batch until the broker has acknowledged every message, as dispatch would: the same ids each
    time, the whole batch again when the broker did not answer, the refused ones again later."""
    pending = batch
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} message(s) still not stored"
        try:
            refused = {refusal.message_id for refusal in publisher.publish(pending)}
        except PublishFailed:
            time.sleep(0.2)
            continue
        pending = [one for one in pending if one.message_id in refused]


async def stored_ids(jetstream) -> list[str]:
    info = await jetstream.stream_info(OUTBOUND_STREAM)
    ids = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        ids.append((await jetstream.get_msg(OUTBOUND_STREAM, sequence)).headers["Nats-Msg-Id"])
    return ids


def test_a_node_killed_and_restarted_under_publishing_loses_and_duplicates_nothing(
        cluster: EmbeddedNatsCluster) -> None:
    deadline = time.monotonic() + 45
    publisher = JetStreamPublisher(cluster.url, timeout=3, agencies=AGENCIES)
    try:
        replicas = on_cluster(cluster.url, lambda js: asyncio.gather(
            *(js.stream_info(name) for name in (OUTBOUND_STREAM, INBOUND_STREAM, DEAD_STREAM))))
        assert [info.config.num_replicas for info in replicas] == [3, 3, 3]
        consumer = on_cluster(cluster.url, lambda js: js.consumer_info(OUTBOUND_STREAM, agency_durable("customs")))
        assert len(consumer.cluster.replicas) == 2  # the stream's replicas: the leader and two more

        leader = cluster.index_of(replicas[0].cluster.leader)
        for number in range(BATCHES):
            if number == BATCHES // 4:
                cluster.kill(leader)
            if number == BATCHES // 2:
                cluster.restart(leader)
            batch = [message(n) for n in range(number * BATCH, (number + 1) * BATCH)]
            publish_until_stored(publisher, batch, deadline)
            if number % 10 == 9:  # a batch published again after its acknowledgement: stored once still
                publish_until_stored(publisher, batch, deadline)
    finally:
        publisher.close()

    another = (leader + 1) % len(cluster.nodes)
    cluster.kill(another)  # what is read now has come through the restarted node
    ids = None
    while ids is None:
        assert time.monotonic() < deadline + 15, "the stream did not answer with one node down"
        try:
            ids = on_cluster(cluster.url, stored_ids)
        except Exception:  # noqa: BLE001 - a new leader being elected
            time.sleep(0.5)
    counts = Counter(ids)
    assert set(counts) == {message(n).message_id for n in range(BATCHES * BATCH)}, "messages lost"
    assert max(counts.values()) == 1, "a message stored twice"
