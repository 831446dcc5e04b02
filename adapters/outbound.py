"""Which messages a declaration change sends, to which agency: the one path render and dispatch share."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.declarations import AGENCIES, RoutingRules

from .border import border_messages
from .customs import customs_messages
from .inspection import inspection_messages
from .maritime import maritime_messages
from .messages import ALERT, ALERT_CLEARED, RECOGNITION, Change, Message
from .notices import alert_cleared_notice, alert_notice, recognition_notice
from .port import port_messages

# (change, action, routing rules) -> messages. The rules are the ones the hub routes with, for
# mappings that must know why an agency is involved (which goods items it inspects, say).
Mapping = Callable[[Change, str, RoutingRules], list[Message]]

# Every agency's messages, by agency.
MAPPINGS: dict[str, Mapping] = {
    "customs": lambda change, action, _rules: customs_messages(change, action),
    "inspection": inspection_messages,
    "maritime": maritime_messages,
    "border": border_messages,
    "port": port_messages,
}


def messages_for(change: Change, rules: RoutingRules, agencies: Iterable[str] = AGENCIES) -> list[Message]:
    """Every message `change` sends to the given agencies, each validated against the hub's schema."""
    messages: list[Message] = []
    for agency in agencies:
        action = change.action_for(agency)
        if action in NOTICES:
            messages.extend(NOTICES[action](change, agency, rules))
        elif action is not None and agency in MAPPINGS:
            messages.extend(MAPPINGS[agency](change, action, rules))
    return messages


def _recognition(change: Change, agency: str, rules: RoutingRules) -> list[Message]:
    """A recognition notice, if `agency`'s rules recognise the agency that inspected."""
    if not rules.recognises(agency, change.inspection["agency"]):
        return []
    return [recognition_notice(change.declaration_id, change.version, agency, change.inspection, change.time)]


# The hub's own notices (adapters.notices), the same whatever the agency: (change, agency, rules) -> messages.
NOTICES: dict[str, Callable[[Change, str, RoutingRules], list[Message]]] = {
    RECOGNITION: _recognition,
    ALERT: lambda change, agency, _rules: [
        alert_notice(change.alert, change.declaration_id, change.version, agency, change.time)],
    ALERT_CLEARED: lambda change, agency, _rules: [
        alert_cleared_notice(change.alert, change.declaration_id, change.version, agency, change.time)],
}

