"""Which broker, by URL: the consumers of agencies' answers and the publisher of the hub's messages.

`nats://` or `tls://` is NATS JetStream (messaging.broker), `amqp://` or
`amqps://` RabbitMQ (messaging.rabbit). Both settle each delivery by the
verdict the receiver gives it (messaging.outcomes): acknowledged once
applied, dead-lettered with its reason, or delivered again after a delay.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from nats.aio.msg import Msg

from .broker import (
    DEAD_STREAM,
    JetStreamPublisher,
    SyncPublisher,
    connect,
    consume_batches,
    dead_subject,
    ensure_streams,
    nats_broker,
    uses_rabbitmq,
)
from .contract import BATCH, inbound_consumer
from .outcomes import DEAD, RETRY_DELAY, Receiver, Verdict, dead_letter_headers, decide


def publisher_for(url: str) -> SyncPublisher:
    """The publisher for a broker URL: nats:// or tls:// for JetStream, amqp:// or amqps:// for RabbitMQ."""
    if uses_rabbitmq(url):
        from .rabbit import RabbitPublisher  # the RabbitMQ client stack loads only where a RabbitMQ is used

        return RabbitPublisher(url)
    return JetStreamPublisher(url)


async def consume(broker_url: str, inbox: Receiver, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                  *, ready: Callable[[], None] | None = None, retry_delay: float = RETRY_DELAY) -> None:
    """Run one durable consumer per agency until `stop` is set (NATS JetStream, or RabbitMQ for amqp://)."""
    if uses_rabbitmq(broker_url):
        from .rabbit import consume_rabbit

        return await consume_rabbit(broker_url, inbox, agencies, stop, ready=ready, retry_delay=retry_delay)
    broker = nats_broker(broker_url, connect_timeout=10, log_level=logging.DEBUG)  # not a line per message

    def handler(agency: str):
        async def settle(raw: Msg, verdict: Verdict | None) -> None:
            deliveries = raw.metadata.num_delivered
            if verdict is None:
                await raw.nak(delay=retry_delay)
            elif verdict.outcome == DEAD:
                sequence = str(raw.metadata.sequence.stream)
                await broker.publish(raw.data, dead_subject(agency), stream=DEAD_STREAM, timeout=10, headers={
                    "Nats-Msg-Id": f"dead:{agency}:{sequence}", "Tradehub-Stream-Sequence": sequence,
                    **dead_letter_headers(verdict, agency, deliveries)})
                await raw.term()
            else:
                await raw.ack()  # a lost ack means a redelivery, which changes nothing

        async def handle(raws: list[Msg]) -> None:
            verdicts = await decide(inbox, agency, [raw.data for raw in raws],
                                    [raw.metadata.num_delivered for raw in raws])
            await asyncio.gather(*(settle(raw, verdict) for raw, verdict in zip(raws, verdicts, strict=True)))

        return handle

    await connect(broker, broker_url)
    await ensure_streams(broker.connection.jetstream())
    await consume_batches(broker, [(inbound_consumer(agency), handler(agency)) for agency in agencies], stop,
                          batch=BATCH, ready=ready)
