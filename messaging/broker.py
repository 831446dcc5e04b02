"""The broker contract and a publisher for synchronous callers.

NATS JetStream through faststream, one subject per agency and direction:

- `tradehub.out.<agency>` (stream TRADEHUB_OUTBOUND): the hub's messages to
  the agency. Each carries its deterministic message id as `Nats-Msg-Id`, so
  a resend inside the stream's duplicate window is stored once, and the
  hub's ids in headers so an agency can route it without parsing the XML.
- `tradehub.in.<agency>` (TRADEHUB_INBOUND): the agency's answers.
- `tradehub.dead.<agency>` (TRADEHUB_DEAD): answers the hub refused, each
  with its reason in headers (messaging.inbound).

Dispatch runs in the projection runner's thread, which is synchronous, so the
publisher keeps one connected broker on its own event-loop thread and hands it
coroutines (STACK.md, faststream). Every message of a batch is published with
its acknowledgement in flight at once, and `publish` returns only when the
server has acknowledged them all: the caller records its position after that.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from adapters.messages import Message

OUTBOUND_STREAM = "TRADEHUB_OUTBOUND"
INBOUND_STREAM = "TRADEHUB_INBOUND"
DEAD_STREAM = "TRADEHUB_DEAD"
# Stream -> the subjects it stores.
STREAMS = {OUTBOUND_STREAM: "tradehub.out.*", INBOUND_STREAM: "tradehub.in.*", DEAD_STREAM: "tradehub.dead.*"}


def outbound_subject(agency: str) -> str:
    return f"tradehub.out.{agency}"


def inbound_subject(agency: str) -> str:
    return f"tradehub.in.{agency}"


def dead_subject(agency: str) -> str:
    return f"tradehub.dead.{agency}"


async def ensure_streams(jetstream: JetStreamContext) -> None:
    """Create the hub's streams, or bring an existing one's subjects up to date; idempotent."""
    for name, subjects in STREAMS.items():
        stream = StreamConfig(name=name, subjects=[subjects])
        try:
            await jetstream.update_stream(stream)
        except NotFoundError:
            await jetstream.add_stream(stream)


def headers_of(message: Message) -> dict[str, str]:
    return {
        "Nats-Msg-Id": message.message_id,
        "Tradehub-Declaration-Id": message.declaration_id,
        "Tradehub-Version": str(message.version),
        "Tradehub-Message": message.name,
        "Tradehub-Function-Code": message.function_code,
    }


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every message of a batch; the caller must not move on."""


class JetStreamPublisher:
    """A connected broker on its own loop thread: `publish` blocks until every message is acknowledged."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="broker", daemon=True)
        self._thread.start()
        self._broker = NatsBroker(url, connect_timeout=timeout)
        self._run(self._connect())

    async def _connect(self) -> None:
        await self._broker.connect()
        await ensure_streams(self._broker.connection.jetstream())

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self.timeout * 2)

    def publish(self, messages: Sequence[Message]) -> int:
        """Publish every message, all acknowledgements in flight at once; the number the stream stored anew."""
        try:
            acks = self._run(self._publish(messages))
        except Exception as error:  # noqa: BLE001 - timeouts, a broken connection, a missing stream
            raise PublishFailed(f"{len(messages)} message(s) not all acknowledged: {error!r}") from error
        return sum(1 for ack in acks if not ack.duplicate)

    async def _publish(self, messages: Sequence[Message]):
        return await asyncio.gather(*(
            self._broker.publish(message.body, outbound_subject(message.agency), headers=headers_of(message),
                                 stream=OUTBOUND_STREAM, timeout=self.timeout)
            for message in messages))

    def close(self) -> None:
        """Disconnect, even from a broker that is gone (then only the local side is cleaned up)."""
        try:
            self._run(self._broker.stop())
        except Exception:  # noqa: BLE001 - a broker that is down cannot be told goodbye
            pass
        self._run(self._cancel_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _cancel_tasks(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
