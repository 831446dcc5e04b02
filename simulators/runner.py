"""`tradehub agencies simulate`: the simulated agencies, on the broker.

Each agency has a durable consumer on its outbound subject, so a restarted
simulator carries on where it stopped. For each hub message it publishes its
replies (simulators.agencies) to its inbound subject, each with its reply id
as `Nats-Msg-Id`, waits until the broker has stored them, and only then
acknowledges the hub's message. A message that fails the agency's schema is
refused, as a real agency would, and terminated: the hub's messages are
validated before they leave, so that is a bug to see in the log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from faststream import AckPolicy
from faststream.nats import ConsumerConfig
from faststream.rabbit import RabbitBroker, RabbitMessage
from nats.aio.msg import Msg

from adapters.xml import Refused
from messaging.broker import (
    INBOUND_STREAM,
    OUTBOUND_STREAM,
    PullConsumer,
    connect,
    consume_batches,
    ensure_streams,
    inbound_subject,
    nats_broker,
    outbound_subject,
    run_until,
    uses_rabbitmq,
)
from messaging.rabbit import EXCHANGE, declare, queue

from .agencies import Answer, Memory, answer

log = logging.getLogger("tradehub.simulators")


BATCH = 32  # hub messages taken at once, answered concurrently


def durable_name(agency: str) -> str:
    return f"simulator-{agency}"


def consumer(agency: str) -> PullConsumer:
    return PullConsumer(OUTBOUND_STREAM, outbound_subject(agency), durable_name(agency), ConsumerConfig(ack_wait=10))


def _answers(agency: str, body: bytes, headers: Mapping[str, object], memory: Memory) -> list[Answer] | None:
    """The agency's replies to a hub message, or None if it refuses the message (logged)."""
    text = {key: value.decode() if isinstance(value, bytes) else str(value) for key, value in headers.items()}
    try:
        return answer(agency, body, text, memory=memory)
    except Refused as refused:
        log.error("%s refuses hub message %s: %s", agency, text.get("Nats-Msg-Id", ""), refused)
        return None


async def simulate(broker_url: str, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                   *, ready: Callable[[], None] | None = None) -> None:
    """Answer the hub as `agencies` until `stop` is set (NATS JetStream, or RabbitMQ for amqp://)."""
    if uses_rabbitmq(broker_url):
        return await _simulate_rabbit(broker_url, agencies, stop, ready)
    broker = nats_broker(broker_url, connect_timeout=10, log_level=logging.DEBUG)  # not a line per message
    memory = Memory()  # what these agencies remember of their decisions while they run

    def handler(agency: str):
        async def answer_one(raw: Msg) -> None:
            answers = _answers(agency, raw.data, raw.headers or {}, memory)
            if answers is None:
                await raw.term()
                return
            for reply in answers:  # in order: a receipt is stored before the decision
                await broker.publish(reply.body, inbound_subject(agency), stream=INBOUND_STREAM, timeout=10,
                                     headers={"Nats-Msg-Id": reply.message_id})
            await raw.ack()  # a lost ack means a redelivery, answered with the same reply ids

        async def answer_in_order(raws: list[Msg]) -> None:
            for raw in raws:
                await answer_one(raw)

        async def handle(raws: list[Msg]) -> None:
            # Declarations are answered concurrently; one declaration's messages in the order they came (a
            # declaration's 05 before the 08 its recognition notice brings, say).
            by_declaration: dict[str, list[Msg]] = {}
            for raw in raws:
                key = (raw.headers or {}).get("Tradehub-Declaration-Id") or raw.reply
                by_declaration.setdefault(key, []).append(raw)
            await asyncio.gather(*(answer_in_order(group) for group in by_declaration.values()))

        return handle

    await connect(broker, broker_url)
    await ensure_streams(broker.connection.jetstream())
    await consume_batches(broker, [(consumer(agency), handler(agency)) for agency in agencies], stop,
                          batch=BATCH, ready=ready)


async def _simulate_rabbit(url: str, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                           ready: Callable[[], None] | None) -> None:
    broker = RabbitBroker(url, log_level=logging.DEBUG)
    memory = Memory()

    def handler(agency: str):
        async def handle(message: RabbitMessage) -> None:
            raw = message.raw_message
            answers = _answers(agency, raw.body, raw.headers or {}, memory)
            if answers is None:
                await message.reject()
                return
            for reply in answers:
                await broker.publish(reply.body, exchange=EXCHANGE, routing_key=inbound_subject(agency),
                                     persist=True, message_id=reply.message_id, content_type="application/xml")
            await message.ack()

        return handle

    for agency in agencies:
        broker.subscriber(queue(outbound_subject(agency)), exchange=EXCHANGE,
                          ack_policy=AckPolicy.MANUAL)(handler(agency))
    await connect(broker, url)
    await declare(broker)
    await run_until(broker, stop, ready)
