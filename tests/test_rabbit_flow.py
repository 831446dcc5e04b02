"""The flow over RabbitMQ (TRADEHUB_BROKER_URL=amqp://…): quorum queues, persistent confirmed publishes.

A RabbitMQ at TRADEHUB_TEST_RABBIT_URL (default guest on localhost) is
required under CI=true; elsewhere these tests skip, with the reason, when none
answers. Each test starts from an empty topology: the hub's queues and
exchange are deleted first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from hub.declarations import AGENCIES
from messaging.broker import dead_subject, inbound_subject, outbound_subject
from messaging.rabbit import EXCHANGE
from projections.dead_letters import DeadLetters
from projections.messages import recorded_messages
from simulators.agencies import Keys
from tradehub.bootstrap import Settings

from .conftest import IN_CI, SECRET
from .test_broker_flow import GATE_REFUSALS, HOSTILE, Flow, assert_each_answer_applied_once, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

RABBIT_URL = os.environ.get("TRADEHUB_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUES = [name for agency in AGENCIES
          for name in (outbound_subject(agency), inbound_subject(agency), dead_subject(agency))]


async def _reset() -> None:
    connection = await aio_pika.connect(RABBIT_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        for name in QUEUES:
            await channel.queue_delete(name)
        await channel.exchange_delete(EXCHANGE.name)


@pytest.fixture
def rabbit() -> str:
    try:
        asyncio.run(_reset())
    except Exception as error:  # noqa: BLE001 - any failure to reach the broker
        if IN_CI:
            pytest.fail(f"no RabbitMQ at {RABBIT_URL}: {error!r} (CI=true: RabbitMQ tests must run)", pytrace=False)
        pytest.skip(f"no RabbitMQ answers at {RABBIT_URL}: {error!r}")
    return RABBIT_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def flow(request: pytest.FixtureRequest, tmp_path: Path, rabbit: str) -> Iterator[Flow]:
    database_url = request.getfixturevalue("postgres_database") if request.param == "postgres" else ""
    running = Flow(Settings(data_dir=tmp_path, database_url=database_url, secret=SECRET, broker_url=rabbit))
    yield running
    running.close()


def dead_letters(agency: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    async def read():
        connection = await aio_pika.connect(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(dead_subject(agency))
            found = []
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                found.append(message)
            return found
    return asyncio.run(read())


def publish(agency: str, body: bytes, message_id: str) -> None:
    async def send():
        connection = await aio_pika.connect(RABBIT_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE.name)
            await exchange.publish(aio_pika.Message(body, message_id=message_id,
                                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                   routing_key=inbound_subject(agency))
    asyncio.run(send())


def test_the_examples_go_from_submitted_to_released_over_rabbitmq(flow: Flow):
    ids = flow.submit()
    flow.start_all()
    flow.wait_released(ids)
    for ident in ids:
        assert_each_answer_applied_once(flow, ident)
    port = [(row["direction"], row["type"]) for row in recorded_messages(flow.hub.views, ids[0])
            if row["agency"] == "port"]
    assert ("outbound", "release-notice") in port and ("inbound", "reply REL") in port


def test_r3_killed_processes_on_rabbitmq_lose_nothing_and_apply_nothing_twice(flow: Flow):
    ids = flow.submit(count=4)
    flow.start("simulate", "agencies", "simulate")
    for pause in (1.0, 2.0):
        flow.start("dispatch", "worker", "dispatch")
        flow.start("consume", "worker", "consume")
        flow.start("project", "worker", "project")
        time.sleep(pause)
        flow.kill("dispatch")
        flow.kill("consume")
        flow.kill("project")
    flow.start("dispatch", "worker", "dispatch")
    flow.start("consume", "worker", "consume")
    flow.start("project", "worker", "project")
    flow.wait_released(ids)
    for ident in ids:
        assert_each_answer_applied_once(flow, ident)


def test_r5_r6_repeats_apply_once_and_refusals_are_dead_lettered_with_their_reason(flow: Flow):
    ids = flow.submit()
    flow.start_all()
    flow.wait_released(ids)
    flow.kill("consume")
    before = {ident: flow.hub.declarations.get(ident).version for ident in ids}
    [receipt] = [row for row in recorded_messages(flow.hub.views, ids[1])
                 if row["direction"] == "inbound" and row["agency"] == "customs" and row["type"] == "reply 02"]
    publish("customs", receipt["body"].encode(), receipt["message_id"])  # RabbitMQ keeps repeats: the hub must not
    signer = Keys.load(flow.settings.keys_dir, ["customs"]).signers["customs"]
    hostile = {code: body if code in GATE_REFUSALS else signer.sign(body) for code, body in HOSTILE.items()}
    hostile["unsigned"] = HOSTILE["schema-invalid"]
    for code, body in hostile.items():
        publish("customs", body, f"hostile-{code}")
    flow.start("consume", "worker", "consume")
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < len(hostile) and time.monotonic() < deadline:
        seen += dead_letters("customs")
        time.sleep(0.3)
    assert {message.headers["Tradehub-Dead-Code"] for message in seen} == set(hostile)
    assert all(message.headers["Tradehub-Dead-Reason"] for message in seen)
    recorded = {row["code"]: row for row in DeadLetters(flow.hub.views).listed(agency="customs")[0]}
    assert set(recorded) == set(hostile)
    assert {row["headers"].get("Amqp-Message-Id") for row in recorded.values()} == {f"hostile-{code}" for code in hostile}
    wait_for(lambda: queue_depth(inbound_subject("customs")) == 0)  # the repeat was consumed too
    assert {ident: flow.hub.declarations.get(ident).version for ident in ids} == before


def queue_depth(name: str) -> int:
    async def count():
        connection = await aio_pika.connect(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(name, passive=True)
            return declared.declaration_result.message_count
    return asyncio.run(count())
