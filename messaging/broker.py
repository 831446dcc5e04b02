"""The broker contract and a publisher for synchronous callers.

NATS JetStream through faststream, one subject per agency and direction:

- `tradehub.out.<agency>` (stream TRADEHUB_OUTBOUND): the hub's messages to
  the agency. Each carries its deterministic message id as `Nats-Msg-Id`, so
  a resend inside the stream's duplicate window is stored once, and the
  hub's ids in headers so an agency can route it without parsing the XML.
- `tradehub.in.<agency>` (TRADEHUB_INBOUND): the agency's answers.
- `tradehub.dead.<agency>` (TRADEHUB_DEAD): answers the hub refused, each
  with its reason in headers (followers.inbox).

The hub's consumers and the simulated agencies take messages in batches from
their own pull loop (`consume_batches`): whatever is ready when the first
message comes. faststream's batch pull subscriber was measured against it and
kept out: slower, holding a trickle for its whole timeout, and dropping a
gathered batch on one kind of fetch timeout (docs/broker.md has the figures).

Dispatch runs in the projection runner's thread, which is synchronous, so the
publisher keeps one connected broker on its own event-loop thread and hands it
coroutines. Every message of a batch is published with
its acknowledgement in flight at once, and `publish` returns only when the
server has acknowledged them all: the caller records its position after that.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, ConnectionReconnectingError, NoRespondersError, StaleConnectionError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError, ServiceUnavailableError

from adapters.messages import Message

from .publishing import Refusal, oversized

log = logging.getLogger("tradehub.broker")
T = TypeVar("T")

OUTBOUND_STREAM = "TRADEHUB_OUTBOUND"
INBOUND_STREAM = "TRADEHUB_INBOUND"
DEAD_STREAM = "TRADEHUB_DEAD"
# The largest message the hub publishes: the embedded nats-server is configured with it, and the hub's
# document limits keep every agency's message of the largest legal declaration under it.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
# Stream -> the subjects it stores.
STREAMS = {OUTBOUND_STREAM: "tradehub.out.*", INBOUND_STREAM: "tradehub.in.*", DEAD_STREAM: "tradehub.dead.*"}


def outbound_subject(agency: str) -> str:
    return f"tradehub.out.{agency}"


def inbound_subject(agency: str) -> str:
    return f"tradehub.in.{agency}"


def dead_subject(agency: str) -> str:
    return f"tradehub.dead.{agency}"


CLOSE_WAIT = 3.0  # seconds a closing publisher gives the broker its goodbye, and its own tasks to stop
AGENCY_ACK_WAIT = 10.0  # seconds an agency has to acknowledge a hub message before it is delivered again


def agency_durable(agency: str) -> str:
    """The agency's durable pull consumer of its messages on TRADEHUB_OUTBOUND."""
    return f"tradehub-out-{agency}"


def outbound_consumer(agency: str) -> PullConsumer:
    """The agency's consumer of its messages: the hub makes it (`ensure_streams`), the agency only pulls."""
    return PullConsumer(OUTBOUND_STREAM, outbound_subject(agency), agency_durable(agency),
                        ConsumerConfig(name=agency_durable(agency), durable_name=agency_durable(agency),
                                       filter_subject=outbound_subject(agency), ack_policy=AckPolicy.EXPLICIT,
                                       ack_wait=AGENCY_ACK_WAIT))


CLUSTER_REPLICAS = 3  # copies of each stream on a cluster: one node may be lost (a quorum of 2 remains), or restarted
STREAMS_WAIT = 30.0  # seconds `ensure_streams` waits for a JetStream that does not answer yet


async def ensure_streams(jetstream: JetStreamContext, agencies: Sequence[str] = (), *,
                         replicas: int | None = None) -> None:
    """Create the hub's streams, or bring an existing one's subjects up to date, and each of `agencies`'
    consumer of its messages if it has none (one an operator has tuned is left as it is); idempotent.

    Each stream is kept on `replicas` servers: by default CLUSTER_REPLICAS when the server is one of a
    cluster, and 1 on a server of its own. (Not the nodes up at the moment: a worker that starts while a node
    is down must not shrink the streams.) The consumers follow their stream's replicas: they set none.

    A JetStream that does not answer (a cluster electing its leader, after a node was lost or while all start
    together) is asked again for up to STREAMS_WAIT seconds.
    """
    deadline = asyncio.get_running_loop().time() + STREAMS_WAIT
    while True:
        try:
            return await _ensure_streams(jetstream, agencies, replicas or default_replicas(jetstream))
        except TRANSIENT as error:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("JetStream did not answer (%s: %s); asking again", type(error).__name__, error)
            await asyncio.sleep(1)


async def _ensure_streams(jetstream: JetStreamContext, agencies: Sequence[str], replicas: int) -> None:
    for name, subjects in STREAMS.items():
        stream = StreamConfig(name=name, subjects=[subjects], num_replicas=replicas)
        try:
            await jetstream.update_stream(stream)
        except NotFoundError:
            await jetstream.add_stream(stream)
    for agency in agencies:
        consumer = outbound_consumer(agency)
        try:
            await jetstream.consumer_info(consumer.stream, consumer.durable)
        except NotFoundError:
            await jetstream.add_consumer(consumer.stream, config=consumer.config)


def default_replicas(jetstream: JetStreamContext) -> int:
    """CLUSTER_REPLICAS if the connected server says (in its INFO, which nats-py keeps unexposed) that it is one
    of a cluster, else 1. A JetStream cluster has three nodes or more: fewer cannot lose one."""
    info = jetstream._nc._server_info  # noqa: SLF001 - the only place nats-py keeps the server's INFO
    return CLUSTER_REPLICAS if info.get("cluster") else 1


def headers_of(message: Message) -> dict[str, str]:
    return {
        "Nats-Msg-Id": message.message_id,
        "Tradehub-Declaration-Id": message.declaration_id,
        "Tradehub-Version": str(message.version),
        "Tradehub-Message": message.name,
        "Tradehub-Function-Code": message.function_code,
    }


HUB = "hub"  # the hub's broker identity; every other one is an agency's
SEED_SUFFIX = ".nk"  # a file holding a user nkey seed
CREDS_SUFFIX = ".creds"  # a NATS creds file: a user JWT and its nkey seed


def inbox_prefix(identity: str) -> str:
    """Where `identity`'s replies and pulled messages are delivered: its own, and only its own (a shared
    `_INBOX` would let whoever may subscribe to it read what another identity pulls)."""
    return f"_INBOX_{identity}"


def connect_options(identity: str, credentials: Path | None) -> dict[str, str]:
    """nats-py's connect options for `identity`: its inbox prefix, and its seed or creds file if it has one."""
    options = {"inbox_prefix": inbox_prefix(identity)}
    if credentials is not None:
        key = "user_credentials" if credentials.suffix == CREDS_SUFFIX else "nkeys_seed"
        options[key] = str(credentials)
    return options


class BrokerUnavailable(RuntimeError):
    """No broker to talk to: none answers at the URL, or the embedded one would not start."""


def redacted(url: str) -> str:
    """A broker URL fit for a message: without its password."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}" if at else url


def uses_rabbitmq(url: str) -> bool:
    """amqp:// and amqps:// name RabbitMQ; every other broker URL the hub accepts is NATS."""
    return url.startswith(("amqp://", "amqps://"))


DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "amqp": 5672, "amqps": 5671}


def broker_servers(url: str) -> list[str]:
    """The servers a broker URL names: one, or a cluster's as a comma-separated list (`nats://a:4222,nats://b:4222`)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(broker, url: str) -> None:
    """Connect a faststream broker to `url`, or BrokerUnavailable naming where it was looked for.

    A broker that refuses connections is reported at once; the client libraries would otherwise retry
    for a minute. Once connected, they reconnect on their own for as long as it takes (to any server of
    a cluster's list, or one the cluster announces).
    """
    try:
        await _any_answers(broker_servers(url))
        await broker.connect()
    except Exception as error:  # noqa: BLE001 - refused, unreachable, bad credentials, no servers...
        raise BrokerUnavailable(f"no broker answers at {redacted(url)}: {type(error).__name__}: {error}") from None


async def _any_answers(servers: Sequence[str]) -> None:
    """Return once one of `servers` takes a connection; the last one's error if none does."""
    for number, server in enumerate(servers, start=1):
        parts = urlsplit(server)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname or "127.0.0.1",
                                        parts.port or DEFAULT_PORTS.get(parts.scheme)), timeout=10)
        except (OSError, TimeoutError):
            if number == len(servers):
                raise
            continue
        writer.close()
        return


# What a broker going away, or not yet back, looks like to the client libraries: worth trying again.
# (OSError covers timeouts, refused connections and AMQP connection errors.)
TRANSIENT = (OSError, ConnectionClosedError, ConnectionReconnectingError, NoRespondersError, StaleConnectionError,
             ServiceUnavailableError)
START_RETRY_LIMIT = 10.0  # seconds between attempts, at most


async def run_until(broker, stop: threading.Event | asyncio.Event, ready: Callable[[], None] | None = None) -> None:
    """Start a connected broker's subscribers, say so, and stop them once `stop` is set.

    A broker that goes away while the subscriptions are being made (each is a request to it) does not
    end the process: what was started is stopped, and it is tried again, with back-off, until it works.
    """
    try:
        if not await _start(broker, stop):
            return
        if ready is not None:
            ready()
        while not stop.is_set():
            await asyncio.sleep(0.2)
    finally:
        await _close(broker)


async def _start(broker, stop: threading.Event | asyncio.Event) -> bool:
    """Start every subscriber, retrying on transient broker errors; False if stopped first."""
    async def start() -> bool:
        try:
            await broker.start()
        except TRANSIENT:
            for subscriber in broker.subscribers:  # half made, on a broker that is gone
                try:
                    await subscriber.stop()
                except Exception:  # noqa: BLE001 - nothing more to undo
                    pass
            raise
        return True

    return bool(await _until_it_works(start, stop, "subscribe"))


async def _until_it_works(attempt: Callable[[], Awaitable[T]], stop: threading.Event | asyncio.Event,
                          what: str) -> T | None:
    """`attempt()`'s result, tried again with back-off while the broker is away; None if stopped first."""
    delay = 0.5
    while not stop.is_set():
        try:
            return await attempt()
        except TRANSIENT as error:
            log.warning("could not %s (%s: %s); trying again in %.1f s", what, type(error).__name__, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, START_RETRY_LIMIT)
    return None


@dataclass(frozen=True)
class PullConsumer:
    """A durable JetStream pull consumer: the stream, the subject it takes, its name and its settings."""

    stream: str
    subject: str
    durable: str
    config: ConsumerConfig


BatchHandler = Callable[[list[Msg]], Awaitable[None]]
IDLE_WAIT = 1.0  # seconds a fetch waits for a first message (also how soon a stop is noticed)
GATHER_WAIT = 0.005  # seconds to wait for more once one has come, if none is ready at once
CONSUMER_POLL = 0.25  # seconds between looks for a consumer someone else makes


async def consume_batches(broker: NatsBroker, consumers: Sequence[tuple[PullConsumer, BatchHandler]],
                          stop: threading.Event | asyncio.Event, *, batch: int,
                          ready: Callable[[], None] | None = None, create: bool = True) -> None:
    """Feed each consumer's messages to its handler in batches of up to `batch`, until `stop` is set.

    A batch is whatever is ready the moment the first message comes: one message when traffic
    trickles, `batch` under load. (faststream's batch subscriber waits until a batch is full or its
    timeout passes, which holds a trickle of answers for the whole timeout, and it loses the batch
    it was gathering when nats-py's fetch runs out of time with a plain asyncio.TimeoutError: see
    docs/broker.md.) The handler settles each message itself; one it leaves unsettled is delivered
    again after the consumer's ack wait. Without `create`, each consumer is waited for until someone
    else (the hub, for an agency) has made it: an agency may not make consumers.
    """
    jetstream = broker.connection.jetstream()
    subscriptions: list[JetStreamContext.PullSubscription] = []
    try:
        for consumer, _ in consumers:
            subscription = await _pull_subscription(jetstream, consumer, stop, create=create)
            if subscription is None:  # stopped first
                return
            subscriptions.append(subscription)
        if ready is not None:
            ready()
        await asyncio.gather(*(_pull_loop(subscription, consumer, handle, stop, batch)
                               for subscription, (consumer, handle) in zip(subscriptions, consumers, strict=True)))
    finally:
        for subscription in subscriptions:  # first: draining the connection would wait on their fetch queues
            try:
                await subscription.unsubscribe()
            except Exception:  # noqa: BLE001 - a broker that is gone
                pass
        await _close(broker)


async def _close(broker) -> None:
    """Stop the subscribers and the connection, draining it if it is up; a connection that is down or
    reconnecting is closed as it is (what was not acknowledged is delivered again)."""
    try:
        await broker.stop()
    except TRANSIENT as error:
        log.info("closing the broker connection without draining it: %s", type(error).__name__)
        try:
            await broker.connection.close()
        except Exception:  # noqa: BLE001 - nothing more to close
            pass


async def _pull_subscription(jetstream: JetStreamContext, consumer: PullConsumer,
                             stop: threading.Event | asyncio.Event,
                             *, create: bool = True) -> JetStreamContext.PullSubscription | None:
    """Create (or bind to) the durable consumer, or without `create` bind to it once it exists; a broker
    that is away is waited for."""
    if create:
        return await _until_it_works(
            lambda: jetstream.pull_subscribe(consumer.subject, durable=consumer.durable, stream=consumer.stream,
                                             config=consumer.config),
            stop, f"subscribe {consumer.durable}")

    async def bind() -> JetStreamContext.PullSubscription | None:
        waited = False
        while not stop.is_set():
            try:
                await jetstream.consumer_info(consumer.stream, consumer.durable)
            except NotFoundError:
                if not waited:
                    log.info("%s: waiting for the hub to make this consumer", consumer.durable)
                    waited = True
                await asyncio.sleep(CONSUMER_POLL)
                continue
            return await jetstream.pull_subscribe_bind(durable=consumer.durable, stream=consumer.stream)
        return None

    return await _until_it_works(bind, stop, f"bind to {consumer.durable}")


async def _pull_loop(subscription: JetStreamContext.PullSubscription, consumer: PullConsumer, handle: BatchHandler,
                     stop: threading.Event | asyncio.Event, batch: int) -> None:
    while not stop.is_set():
        try:
            messages = await subscription.fetch(1, timeout=IDLE_WAIT)
        except TimeoutError:
            continue  # nothing came; ask again
        except TRANSIENT as error:  # the broker is away: nats-py reconnects, the durable consumer stays
            log.debug("%s: fetch failed (%r); trying again", consumer.durable, error)
            await asyncio.sleep(0.5)
            continue
        if batch > 1:
            try:
                messages += await subscription.fetch(batch - 1, timeout=GATHER_WAIT)
            except TRANSIENT:
                pass  # none ready: handle the one
        try:
            await handle(messages)
        except Exception:  # noqa: BLE001 - e.g. the broker gone mid-settle: what was not settled is redelivered
            log.exception("%s: a batch of %s was not settled; the broker delivers it again", consumer.durable,
                          len(messages))


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every message of a batch; the caller must not move on."""


class SyncPublisher:
    """A connected faststream broker on its own loop thread: `publish` blocks until every message is confirmed.

    Subclasses say how to connect and how to publish a batch with all confirmations in flight at once.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="broker", daemon=True)
        self._thread.start()
        self._broker = self._make_broker()
        try:
            self._run(self._connect())
        except BaseException:
            self._stop_loop()
            raise

    def _make_broker(self):
        raise NotImplementedError

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _publish(self, messages: Sequence[Message]) -> list[bool | BaseException]:
        """Publish all, confirmations in flight at once; for each, whether the broker stored it anew, or the error
        publishing it raised."""
        raise NotImplementedError

    def _run(self, coroutine, wait: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(wait or self.timeout * 2)

    def max_payload(self) -> int:
        """The largest message (body and headers) the broker takes, in bytes."""
        return MAX_PAYLOAD_BYTES

    def publish(self, messages: Sequence[Message]) -> list[Refusal]:
        """Publish every message the broker will take, all confirmations in flight at once; the ones it refused.

        A message over the broker's payload limit is refused without being sent, and one the broker refuses
        (an error about that message) is refused with the broker's reason; the others are published. A
        broker that cannot be reached or times out says nothing about any one message: PublishFailed, for
        the whole batch, which the caller tries again (published ones carry the same ids).
        """
        refused = oversized(messages, [headers_of(message) for message in messages], self.max_payload(),
                            redacted(self.url))
        sendable = [message for message in messages if message.message_id not in refused]
        try:
            outcomes = self._run(self._publish(sendable)) if sendable else []
        except Exception as error:  # noqa: BLE001 - timeouts, a broken connection, a missing stream
            raise PublishFailed(f"{len(messages)} message(s) not all acknowledged: {error!r}") from error
        for message, outcome in zip(sendable, outcomes, strict=True):
            if isinstance(outcome, TRANSIENT):
                raise PublishFailed(f"{len(messages)} message(s) not all acknowledged: {outcome!r}") from outcome
            if isinstance(outcome, BaseException):
                refused[message.message_id] = Refusal(message.message_id, f"the broker refused the {message.agency} "
                                                      f"{message.name} message: {type(outcome).__name__}: {outcome}")
        return [refused[message.message_id] for message in messages if message.message_id in refused]

    def close(self) -> None:
        """Disconnect, even from a broker that is gone (then only the local side is cleaned up)."""
        try:
            self._run(self._broker.stop(), CLOSE_WAIT)
        except Exception:  # noqa: BLE001 - a broker that is down (or slow to answer) cannot be told goodbye
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        try:
            self._run(self._cancel_tasks(), CLOSE_WAIT)
        except Exception:  # noqa: BLE001 - a task that ignores cancellation goes with the loop's thread
            log.warning("the broker client's tasks did not stop within %s s", CLOSE_WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CLOSE_WAIT)
        if not self._thread.is_alive():  # else it is still running (a daemon thread, gone with the process)
            self._loop.close()

    async def _cancel_tasks(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class JetStreamPublisher(SyncPublisher):
    """Publishes to JetStream; a message id the stream saw inside its duplicate window is not stored again."""

    def __init__(self, url: str, *, timeout: float = 10.0, credentials: Path | None = None,
                 agencies: Sequence[str] = ()) -> None:
        self.credentials = credentials
        self.agencies = agencies
        super().__init__(url, timeout=timeout)

    def _make_broker(self) -> NatsBroker:
        return nats_broker(self.url, credentials=self.credentials, connect_timeout=self.timeout)

    async def _connect(self) -> None:
        await connect(self._broker, self.url)
        await ensure_streams(self._broker.connection.jetstream(), self.agencies)

    def max_payload(self) -> int:
        """What the server announced on connecting (a stock nats-server takes 1 MiB), not what the hub asks for."""
        return self._broker.connection.max_payload

    async def _publish(self, messages: Sequence[Message]) -> list[bool | BaseException]:
        acks = await asyncio.gather(*(
            self._broker.publish(message.body, outbound_subject(message.agency), headers=headers_of(message),
                                 stream=OUTBOUND_STREAM, timeout=self.timeout)
            for message in messages), return_exceptions=True)
        return [ack if isinstance(ack, BaseException) else not ack.duplicate for ack in acks]


def nats_broker(url: str, identity: str = HUB, credentials: Path | None = None, **options) -> NatsBroker:
    """A NATS broker that reconnects without end (a broker restart must never stop a worker), to any server
    `url` lists, connected as `identity`: with its inbox prefix always, with its seed or creds file when it has
    one."""
    return NatsBroker(broker_servers(url), max_reconnect_attempts=-1, reconnect_time_wait=1,
                      **connect_options(identity, credentials), **options)
