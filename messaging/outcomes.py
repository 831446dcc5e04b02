"""What became of an inbound delivery, whatever the broker: applied, unchanged, dead-lettered, or retried.

The hub's inbox (followers.inbox) gives each message a `Verdict`; the
consumers (JetStream in messaging.consumers, RabbitMQ in messaging.rabbit)
settle the delivery by it. `decide` is where a failure of the hub's own (the
database is down) becomes a retry, and at the last allowed delivery a
dead letter coded `poison`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .contract import MAX_DELIVER

log = logging.getLogger("tradehub.inbound")

APPLIED, UNCHANGED, DEAD = "applied", "unchanged", "dead"
POISON = "poison"
RETRY_DELAY = 2.0  # seconds before a message that failed for reasons not its own is delivered again


@dataclass(frozen=True)
class Verdict:
    """What an inbound message did: applied, unchanged (applied before, or a notice that sets nothing), or dead."""

    outcome: str
    declaration_id: str = ""
    code: str = ""  # for a dead letter, why, as a stable code
    reason: str = ""  # and in words, on one line


def dead(code: str, reason: str, declaration_id: str = "") -> Verdict:
    return Verdict(DEAD, declaration_id, code, " ".join(reason.split())[:500])


class DeadLetter(NamedTuple):
    """A delivery about to be dead-lettered, with what the broker told of it."""

    body: bytes
    verdict: Verdict
    deliveries: int
    headers: Mapping[str, str]


class Receiver(Protocol):
    def receive_many(self, agency: str, bodies: Sequence[bytes]) -> list[Verdict]:
        """Each message's verdict, in the order of `bodies`; raises for the hub's own trouble."""

    def dead_lettered(self, agency: str, letters: Sequence[DeadLetter]) -> None:
        """Record dead letters durably, in one transaction, before they are settled; raises if it cannot."""

    def replay_requested(self, agencies: Sequence[str]) -> int:
        """Run the replays of dead letters an admin asked for; the number run."""


async def decide(receiver: Receiver, agency: str, bodies: Sequence[bytes], deliveries: Sequence[int],
                 headers: Sequence[Mapping[str, str]] = ()) -> list[Verdict | None]:
    """What to do with a batch of deliveries: each one's verdict, or None to deliver it again later.

    A dead letter is recorded (docs/dead-letters.md) before its verdict is given; one that cannot be recorded
    is delivered again, unless it had its last delivery: then the broker's dead-letter stream is its only copy.
    """
    try:
        verdicts: list[Verdict | None] = list(await asyncio.to_thread(receiver.receive_many, agency, bodies))
    except Exception as error:  # noqa: BLE001 - the hub's trouble, not the messages': retry them
        log.warning("%s: %s message(s) failed, retrying: %r", agency, len(bodies), error)
        verdicts = [None if delivery < MAX_DELIVER else
                    dead(POISON, f"failed {delivery} deliveries; last: {type(error).__name__}: {error}")
                    for delivery in deliveries]
    letters = [DeadLetter(body, verdict, delivery, headers[index] if index < len(headers) else {})
               for index, (body, verdict, delivery) in enumerate(zip(bodies, verdicts, deliveries, strict=True))
               if verdict is not None and verdict.outcome == DEAD]
    if letters:
        try:
            await asyncio.to_thread(receiver.dead_lettered, agency, letters)
        except Exception as error:  # noqa: BLE001 - settled later, once it can be recorded
            log.error("%s: %s dead letter(s) could not be recorded: %r", agency, len(letters), error)
            return [None if verdict is not None and verdict.outcome == DEAD and delivery < MAX_DELIVER else verdict
                    for verdict, delivery in zip(verdicts, deliveries, strict=True)]
    return verdicts


async def replay_requested(receiver: Receiver, agencies: Sequence[str], stop, interval: float = 1.0) -> None:
    """Run requested replays of these agencies' dead letters until `stop` is set, looking every `interval` s."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(receiver.replay_requested, agencies)
        except Exception as error:  # noqa: BLE001 - the store is away: tried again at the next look
            log.warning("replaying dead letters failed, trying again: %r", error)
        await asyncio.sleep(interval)


def dead_letter_headers(verdict: Verdict, agency: str, deliveries: int) -> dict[str, str]:
    log.warning("%s message dead-lettered: %s %s", agency, verdict.code, verdict.reason)
    return {"Tradehub-Dead-Code": verdict.code, "Tradehub-Dead-Reason": verdict.reason, "Tradehub-Agency": agency,
            "Tradehub-Deliveries": str(deliveries)}
