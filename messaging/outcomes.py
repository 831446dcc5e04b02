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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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


class Receiver(Protocol):
    def receive_many(self, agency: str, bodies: Sequence[bytes]) -> list[Verdict]:
        """Each message's verdict, in the order of `bodies`; raises for the hub's own trouble."""


async def decide(receiver: Receiver, agency: str, bodies: Sequence[bytes], deliveries: Sequence[int]
                 ) -> list[Verdict | None]:
    """What to do with a batch of deliveries: each one's verdict, or None to deliver it again later."""
    try:
        return await asyncio.to_thread(receiver.receive_many, agency, bodies)
    except Exception as error:  # noqa: BLE001 - the hub's trouble, not the messages': retry them
        log.warning("%s: %s message(s) failed, retrying: %r", agency, len(bodies), error)
        return [None if delivery < MAX_DELIVER else
                dead(POISON, f"failed {delivery} deliveries; last: {type(error).__name__}: {error}")
                for delivery in deliveries]


def dead_letter_headers(verdict: Verdict, agency: str, deliveries: int) -> dict[str, str]:
    log.warning("%s message dead-lettered: %s %s", agency, verdict.code, verdict.reason)
    return {"Tradehub-Dead-Code": verdict.code, "Tradehub-Dead-Reason": verdict.reason, "Tradehub-Agency": agency,
            "Tradehub-Deliveries": str(deliveries)}
