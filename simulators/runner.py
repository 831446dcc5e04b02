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
from collections.abc import Callable, Sequence

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage, PullSub

from adapters.xml import Refused
from messaging.broker import INBOUND_STREAM, OUTBOUND_STREAM, ensure_streams, inbound_subject, outbound_subject

from .agencies import answer

log = logging.getLogger("tradehub.simulators")


def durable_name(agency: str) -> str:
    return f"simulator-{agency}"


async def simulate(broker_url: str, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                   *, ready: Callable[[], None] | None = None) -> None:
    """Answer the hub as `agencies` until `stop` is set."""
    broker = NatsBroker(broker_url, connect_timeout=10, log_level=logging.DEBUG)  # not a line per message

    def handler(agency: str):
        async def handle(message: NatsMessage) -> None:
            raw = message.raw_message
            try:
                answers = answer(agency, raw.data, raw.headers or {})
            except Refused as refused:
                log.error("%s refuses hub message %s: %s", agency, (raw.headers or {}).get("Nats-Msg-Id"), refused)
                await message.reject()
                return
            for reply in answers:  # in order: a receipt is stored before the decision
                await broker.publish(reply.body, inbound_subject(agency), stream=INBOUND_STREAM, timeout=10,
                                     headers={"Nats-Msg-Id": reply.message_id})
            await message.ack_sync()

        return handle

    stream = JStream(OUTBOUND_STREAM, declare=False)
    for agency in agencies:
        broker.subscriber(outbound_subject(agency), stream=stream, durable=durable_name(agency),
                          pull_sub=PullSub(batch_size=32, timeout=5.0), config=ConsumerConfig(ack_wait=10),
                          ack_policy=AckPolicy.NACK_ON_ERROR)(handler(agency))
    await broker.connect()
    await ensure_streams(broker.connection.jetstream())
    await broker.start()
    if ready is not None:
        ready()
    try:
        while not stop.is_set():
            await asyncio.sleep(0.2)
    finally:
        await broker.stop()
