"""RabbitMQ, for TRADEHUB_BROKER_URL=amqp://…: the JetStream contract on quorum queues.

- One durable direct exchange, `tradehub`, and one durable quorum queue per
  agency and direction, bound by its own name: `tradehub.out.<agency>`,
  `tradehub.in.<agency>` and `tradehub.dead.<agency>`.
- One durable fanout exchange per agency for its answers, named like its
  inbound queue (`tradehub.in.<agency>`) and bound to that queue alone. An
  agency's own user (`tradehub agencies provision`, messaging.provision) may
  write to that exchange and read its outbound queue, nothing else: RabbitMQ
  enforces topic permissions on topic exchanges only, so a routing-key rule on
  the shared direct exchange would not stop customs routing to border's queue.
- Every publish is persistent, mandatory and confirmed; dispatch records its
  position only after every confirmation of a batch (as on JetStream).
- Inbound queues have a delivery limit and dead-letter to the agency's dead
  queue, a safety net for a message that kills its consumer every time. The
  consumer itself dead-letters what it refuses, with the reason in headers,
  and acknowledges only after the effect is committed.

RabbitMQ has no publish de-duplication: a batch published again after a crash
is queued twice. The message id (AMQP `message_id`) is the same, and agencies
de-duplicate by it, as the hub does by the reply ids of their answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from faststream import AckPolicy
from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitMessage, RabbitQueue

from adapters.messages import Message
from hub.declarations import AGENCIES

from .broker import SyncPublisher, connect, dead_subject, headers_of, inbound_subject, outbound_subject, run_until
from .contract import MAX_DELIVER
from .outcomes import DEAD, Receiver, dead_letter_headers, decide

EXCHANGE = RabbitExchange("tradehub", durable=True)


def queue(name: str, *, declare: bool = True, **arguments: object) -> RabbitQueue:
    """A durable quorum queue; without `declare`, only looked up (passive), as a user that may not make it."""
    return RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True, routing_key=name, declare=declare,
                       arguments={"x-queue-type": "quorum", **arguments})


def agency_exchange(agency: str, *, declare: bool = True) -> RabbitExchange:
    """Where the agency publishes its answers: it routes to the agency's inbound queue only."""
    return RabbitExchange(inbound_subject(agency), type=ExchangeType.FANOUT, durable=True, declare=declare)


def agency_user(agency: str) -> str:
    """The agency's own RabbitMQ user, as `tradehub agencies provision` makes it."""
    return f"tradehub-{agency}"


def inbound_queue(agency: str) -> RabbitQueue:
    return queue(inbound_subject(agency), **{
        "x-delivery-limit": MAX_DELIVER, "x-dead-letter-exchange": EXCHANGE.name,
        "x-dead-letter-routing-key": dead_subject(agency)})


async def declare(broker: RabbitBroker) -> None:
    """The exchange and every agency's queues, bound; idempotent."""
    exchange = await broker.declare_exchange(EXCHANGE)
    for agency in AGENCIES:
        robust = {}
        for declared in (queue(outbound_subject(agency)), inbound_queue(agency), queue(dead_subject(agency))):
            robust[declared.name] = await broker.declare_queue(declared)
            await robust[declared.name].bind(exchange, routing_key=declared.routing_key)
        answers = await broker.declare_exchange(agency_exchange(agency))
        await robust[inbound_subject(agency)].bind(answers)


class RabbitPublisher(SyncPublisher):
    def _make_broker(self) -> RabbitBroker:
        return RabbitBroker(self.url, log_level=logging.DEBUG)

    async def _connect(self) -> None:
        await connect(self._broker, self.url)
        await declare(self._broker)

    async def _publish(self, messages: Sequence[Message]) -> list[bool | BaseException]:
        outcomes = await asyncio.gather(*(
            self._broker.publish(message.body, exchange=EXCHANGE, routing_key=outbound_subject(message.agency),
                                 persist=True, mandatory=True, message_id=message.message_id,
                                 headers=headers_of(message), content_type="application/xml",
                                 timeout=self.timeout)
            for message in messages), return_exceptions=True)
        # RabbitMQ cannot tell a repeat: every message it took counts as new.
        return [outcome if isinstance(outcome, BaseException) else True for outcome in outcomes]


CONCURRENCY = 32  # answers applied at once


def deliveries_of(message: RabbitMessage) -> int:
    """This delivery's number: quorum queues count earlier deliveries in x-delivery-count."""
    return int(message.raw_message.headers.get("x-delivery-count", 0) or 0) + 1


async def consume_rabbit(url: str, inbox: Receiver, agencies: Sequence[str], stop: threading.Event | asyncio.Event, *,
                         ready: Callable[[], None] | None, retry_delay: float) -> None:
    broker = RabbitBroker(url, log_level=logging.DEBUG)
    # Each message is handled on its own, on a thread: many in flight let group commit put many answers in
    # one transaction (JetStream's consumer hands over batches instead).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="inbox"))

    def handler(agency: str):
        async def handle(message: RabbitMessage) -> None:
            body, deliveries = message.raw_message.body, deliveries_of(message)
            kept = {"Amqp-Routing-Key": message.raw_message.routing_key or ""}
            if message.raw_message.message_id:
                kept["Amqp-Message-Id"] = message.raw_message.message_id
            [verdict] = await decide(inbox, agency, [body], [deliveries], [kept])
            if verdict is None:
                await asyncio.sleep(retry_delay)
                await message.nack(requeue=True)
            elif verdict.outcome == DEAD:
                await broker.publish(body, exchange=EXCHANGE, routing_key=dead_subject(agency), persist=True,
                                     message_id=message.raw_message.message_id,
                                     headers=dead_letter_headers(verdict, agency, deliveries))
                await message.ack()
            else:
                await message.ack()

        return handle

    for agency in agencies:
        broker.subscriber(inbound_queue(agency), exchange=EXCHANGE, ack_policy=AckPolicy.MANUAL)(handler(agency))
    await connect(broker, url)
    await declare(broker)
    await run_until(broker, stop, ready)
