"""Which messages a declaration change sends, to which agency: the one path render and dispatch share."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.declarations import AGENCIES, RoutingRules

from .customs import customs_messages
from .inspection import inspection_messages
from .messages import Change, Message
from .port import port_messages

# (change, action, routing rules) -> messages. The rules are the ones the hub routes with, for
# mappings that must know why an agency is involved (which goods items it inspects, say).
Mapping = Callable[[Change, str, RoutingRules], list[Message]]

# Agencies whose messages the hub builds; the others arrive with their adapters.
MAPPINGS: dict[str, Mapping] = {
    "customs": lambda change, action, _rules: customs_messages(change, action),
    "inspection": inspection_messages,
    "port": port_messages,
}


def messages_for(change: Change, rules: RoutingRules, agencies: Iterable[str] = AGENCIES) -> list[Message]:
    """Every message `change` sends to the given agencies, each validated against the hub's schema."""
    messages: list[Message] = []
    for agency in agencies:
        action = change.action_for(agency)
        if action is not None and agency in MAPPINGS:
            messages.extend(MAPPINGS[agency](change, action, rules))
    return messages


def unmapped(change: Change, agencies: Iterable[str] = AGENCIES) -> list[str]:
    """Agencies `change` concerns whose messages the hub cannot build yet."""
    return [agency for agency in agencies if change.action_for(agency) is not None and agency not in MAPPINGS]
