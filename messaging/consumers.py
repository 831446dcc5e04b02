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
from pathlib import Path

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
from .outcomes import DEAD, RETRY_DELAY, Receiver, Verdict, dead_letter_headers, decide, replay_requested

_REPLAYS: set[asyncio.Task] = set()


def publisher_for(url: str, *, credentials: Path | None = None, agencies: Sequence[str] = ()) -> SyncPublisher:
    """The publisher for a broker URL: nats:// or tls:// for JetStream, amqp:// or amqps:// for RabbitMQ.

    On NATS it connects as the hub with `credentials` (a seed or creds file), and makes each of `agencies`'
    consumer of its messages; on RabbitMQ the URL carries the user.
    """
    if uses_rabbitmq(url):
        from .rabbit import RabbitPublisher  # the RabbitMQ client stack loads only where a RabbitMQ is used

        return RabbitPublisher(url)
    return JetStreamPublisher(url, credentials=credentials, agencies=agencies)


async def consume(broker_url: str, inbox: Receiver, agencies: Sequence[str], stop: threading.Event | asyncio.Event,
                  *, ready: Callable[[], None] | None = None, retry_delay: float = RETRY_DELAY,
                  credentials: Path | None = None) -> None:
    """Run one durable consumer per agency until `stop` is set (NATS JetStream as the hub with `credentials`,
    or RabbitMQ for amqp://, whose URL carries the user).

    Beside them, the replays of these agencies' dead letters that an admin asked for are run, whichever broker.
    """
    replays = asyncio.create_task(replay_requested(inbox, agencies, stop))  # ends with `stop`
    _REPLAYS.add(replays)  # the loop keeps only a weak reference to a task
    replays.add_done_callback(_REPLAYS.discard)
    if uses_rabbitmq(broker_url):
        from .rabbit import consume_rabbit

        return await consume_rabbit(broker_url, inbox, agencies, stop, ready=ready, retry_delay=retry_delay)
    # DEBUG: not a line per message
    broker = nats_broker(broker_url, credentials=credentials, connect_timeout=10, log_level=logging.DEBUG)

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
                                    [raw.metadata.num_delivered for raw in raws],
                                    [delivery_headers(raw) for raw in raws])
            await asyncio.gather(*(settle(raw, verdict) for raw, verdict in zip(raws, verdicts, strict=True)))

        return handle

    await connect(broker, broker_url)
    await ensure_streams(broker.connection.jetstream(), agencies)
    await consume_batches(broker, [(inbound_consumer(agency), handler(agency)) for agency in agencies], stop,
                          batch=BATCH, ready=ready)


def delivery_headers(raw: Msg) -> dict[str, str]:
    """What a dead letter keeps of its delivery: where it was in the stream, and the agency's message id."""
    kept = {"Nats-Subject": raw.subject, "Nats-Stream-Sequence": str(raw.metadata.sequence.stream)}
    if raw.headers and raw.headers.get("Nats-Msg-Id"):
        kept["Nats-Msg-Id"] = raw.headers["Nats-Msg-Id"]
    return kept
