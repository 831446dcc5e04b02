"""What a publisher says about each message of a batch: published, or refused and why.

A broker that cannot be reached says nothing about any one message: the publishers raise `PublishFailed`
(messaging.broker) for the whole batch, and dispatch tries the batch again later. A message the broker (or the
client, before sending) will not take, whatever happens to the others, is a `Refusal`: dispatch parks that
declaration's messages to that agency and goes on with every other (docs/dispatch.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from adapters.messages import Message


class Refusal(NamedTuple):
    """One message of a batch that was not published, with a reason for people."""

    message_id: str
    reason: str


def wire_size(message: Message, headers: Mapping[str, str]) -> int:
    """Bytes the message takes against a broker's payload limit: its body and its headers (NATS counts both)."""
    return len(message.body) + sum(len(key) + len(value) + 4 for key, value in headers.items())


def oversized(messages: Sequence[Message], headers: Sequence[Mapping[str, str]], limit: int,
              where: str) -> dict[str, Refusal]:
    """The messages over `limit` bytes (the payload limit of the broker at `where`), by message id."""
    refused = {}
    for message, sent_with in zip(messages, headers, strict=True):
        size = wire_size(message, sent_with)
        if size > limit:
            refused[message.message_id] = Refusal(
                message.message_id,
                f"{message.agency} {message.name} message of {size:,} bytes exceeds the broker's max_payload of "
                f"{limit:,} bytes ({where})")
    return refused
