"""`tradehub agencies simulate`: the simulated agencies, on the broker.

Each agency has a durable consumer on its outbound subject, so a restarted
simulator carries on where it stopped. Given credentials (a seed or creds file
per agency on NATS, a password per agency on RabbitMQ), each agency connects
on its own, as itself: it may then only pull its own consumer, which the hub
made, and answer on its own subject (docs/broker.md). Without, one connection
serves them all, on an open NATS or as the RabbitMQ URL's user.

For each hub message an agency publishes its replies (simulators.agencies)
to its inbound subject, each with its reply id as `Nats-Msg-Id`, waits until
the broker has stored them, and only then acknowledges the hub's message. A message that fails the agency's schema is
refused, as a real agency would, and terminated: the hub's messages are
validated before they leave, so that is a bug to see in the log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from faststream import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitMessage
from nats.aio.msg import Msg

from adapters.xml import Refused
from messaging.broker import (
    INBOUND_STREAM,
    PullConsumer,
    agency_durable,
    connect,
    consume_batches,
    ensure_streams,
    inbound_subject,
    nats_broker,
    outbound_consumer,
    outbound_subject,
    run_until,
    uses_rabbitmq,
)
from messaging.rabbit import agency_exchange, agency_user, declare, queue

from .agencies import Answer, Keys, Memory, answer

log = logging.getLogger("tradehub.simulators")


BATCH = 32  # hub messages taken at once, answered concurrently


def durable_name(agency: str) -> str:
    return agency_durable(agency)


def consumer(agency: str) -> PullConsumer:
    return outbound_consumer(agency)


def _answers(agency: str, body: bytes, headers: Mapping[str, object], memory: Memory,
             keys: Keys | None) -> list[Answer] | None:
    """The agency's replies to a hub message, or None if it refuses the message (logged)."""
    text = {key: value.decode() if isinstance(value, bytes) else str(value) for key, value in headers.items()}
    try:
        return answer(agency, body, text, memory=memory, keys=keys)
    except Refused as refused:
        log.error("%s refuses hub message %s: %s", agency, text.get("Nats-Msg-Id", ""), refused)
        return None


async def simulate(broker_url: str, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                   *, ready: Callable[[], None] | None = None, credentials: Mapping[str, Path] | None = None,
                   keys: Keys | None = None) -> None:
    """Answer the hub as `agencies` until `stop` is set (NATS JetStream, or RabbitMQ for amqp://); with
    `credentials`, each agency on a connection of its own, as itself; with `keys`, checking the hub's
    signatures and signing the answers (simulators.agencies)."""
    memory = Memory()  # what these agencies remember of their decisions while they run
    if uses_rabbitmq(broker_url):
        if credentials is None:
            return await _simulate_rabbit(broker_url, agencies, stop, ready, memory, keys)
        return await _all_ready([
            lambda started, agency=agency: _simulate_rabbit(as_agency(broker_url, agency, credentials[agency]),
                                                            [agency], stop, started, memory, keys, declared=False)
            for agency in agencies], ready)
    if credentials is None:
        broker = nats_broker(broker_url, identity="simulators", connect_timeout=10, log_level=logging.DEBUG)
        await connect(broker, broker_url)
        await ensure_streams(broker.connection.jetstream(), agencies)  # an open server: they make their own
        return await _simulate_nats(broker, agencies, stop, ready, memory, keys, create=True)

    async def one(agency: str, started: Callable[[], None]) -> None:
        broker = nats_broker(broker_url, identity=agency, credentials=credentials[agency], connect_timeout=10,
                             log_level=logging.DEBUG)  # not a line per message
        await connect(broker, broker_url)
        await _simulate_nats(broker, [agency], stop, started, memory, keys, create=False)

    return await _all_ready([lambda started, agency=agency: one(agency, started) for agency in agencies], ready)


async def _all_ready(runs: Sequence[Callable[[Callable[[], None]], object]],
                     ready: Callable[[], None] | None) -> None:
    """Run each of `runs`, given what it calls once it is ready; `ready` once all of them are."""
    waiting = len(runs)

    def started() -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0 and ready is not None:
            ready()

    await asyncio.gather(*(run(started) for run in runs))


def publish_answers(broker_url: str, agency: str, answers: Sequence[Answer], *,
                    credentials: Path | None = None) -> None:
    """Send `answers` to the hub on `agency`'s inbound subject, as the agency, outside `simulate`: what an
    agency publishes on its own initiative, such as a certificate the inspection agency issues
    (simulators.agencies.issue_certificate). Each is stored by the broker, under its id, before this returns.
    With `credentials` (the agency's seed or creds file on NATS, its password file on RabbitMQ), as itself."""
    asyncio.run(_publish_answers(broker_url, agency, answers, credentials))


async def _publish_answers(broker_url: str, agency: str, answers: Sequence[Answer], credentials: Path | None) -> None:
    if uses_rabbitmq(broker_url):
        url = as_agency(broker_url, agency, credentials) if credentials else broker_url
        broker = RabbitBroker(url, log_level=logging.DEBUG)
        await connect(broker, url)
        try:
            for reply in answers:
                await broker.publish(reply.body, exchange=agency_exchange(agency, declare=credentials is None),
                                     routing_key=inbound_subject(agency), persist=True, message_id=reply.message_id,
                                     content_type="application/xml")
        finally:
            await broker.stop()
        return
    broker = nats_broker(broker_url, identity=agency if credentials else "simulators", credentials=credentials,
                         connect_timeout=10, log_level=logging.DEBUG)
    await connect(broker, broker_url)
    try:
        for reply in answers:
            await broker.publish(reply.body, inbound_subject(agency), stream=INBOUND_STREAM, timeout=10,
                                 headers={"Nats-Msg-Id": reply.message_id})
    finally:
        await broker.stop()


def as_agency(url: str, agency: str, password_file: Path) -> str:
    """The RabbitMQ URL with the agency's own user and password in place of the hub's."""
    parts = urlsplit(url)
    password = password_file.read_text().strip()
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(agency_user(agency), safe='')}:{quote(password, safe='')}@{host}"))


async def _simulate_nats(broker, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                         ready: Callable[[], None] | None, memory: Memory, keys: Keys | None, *,
                         create: bool) -> None:
    def handler(agency: str):
        async def answer_one(raw: Msg) -> None:
            answers = _answers(agency, raw.data, raw.headers or {}, memory, keys)
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

    await consume_batches(broker, [(consumer(agency), handler(agency)) for agency in agencies], stop,
                          batch=BATCH, ready=ready, create=create)


async def _simulate_rabbit(url: str, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                           ready: Callable[[], None] | None, memory: Memory, keys: Keys | None, *,
                           declared: bool = True) -> None:
    """`declared`: this user may declare the topology (the hub's); an agency's own user only uses it."""
    broker = RabbitBroker(url, log_level=logging.DEBUG)

    def handler(agency: str):
        async def handle(message: RabbitMessage) -> None:
            raw = message.raw_message
            answers = _answers(agency, raw.body, raw.headers or {}, memory, keys)
            if answers is None:
                await message.reject()
                return
            for reply in answers:  # to the agency's own exchange: the one its user may write to
                await broker.publish(reply.body, exchange=agency_exchange(agency, declare=declared),
                                     routing_key=inbound_subject(agency), persist=True, message_id=reply.message_id,
                                     content_type="application/xml")
            await message.ack()

        return handle

    for agency in agencies:
        broker.subscriber(queue(outbound_subject(agency), declare=declared),
                          ack_policy=AckPolicy.MANUAL)(handler(agency))
    await connect(broker, url)
    if declared:
        await declare(broker)
    await run_until(broker, stop, ready)
