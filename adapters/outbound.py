"""Which messages a declaration change sends, to which agency: the one path render and dispatch share."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.declarations import AGENCIES, Declaration, RoutingRules

from .border import border_messages
from .border.forms import FORMS as BORDER_FORMS
from .customs import customs_messages
from .customs.declaration import NAMES as CUSTOMS_NAMES
from .customs.declaration import ORIGINAL_NAMES as CUSTOMS_ORIGINAL_NAMES
from .inspection import inspection_messages
from .inspection.declaration import NAMES as INSPECTION_NAMES
from .maritime import maritime_messages
from .maritime.forms import FORMS as MARITIME_FORMS
from .messages import ALERT, ALERT_CLEARED, RECOGNITION, Change, Message, message_id
from .notices import (
    ALERT_CLEARED_NOTICE,
    ALERT_NOTICE,
    RECOGNITION_NOTICE,
    alert_cleared_notice,
    alert_notice,
    recognition_notice,
)
from .port import port_messages
from .port.mapping import MESSAGES as PORT_MESSAGES
from .port.mapping import RELEASES as PORT_RELEASES
from .port.mapping import SUFFIXES as PORT_SUFFIXES

# (change, action, routing rules) -> messages. The rules are the ones the hub routes with, for
# mappings that must know why an agency is involved (which goods items it inspects, say).
Mapping = Callable[[Change, str, RoutingRules], list[Message]]

# Every agency's messages, by agency.
MAPPINGS: dict[str, Mapping] = {
    "customs": customs_messages,
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



# ---- which version a reply answers -----------------------------------------------------------

_FAL_SUPPRESSIONS = ("cancellation", "deletion")
# The names of every declaration message each agency may be sent; with a declaration id and version they
# make its id (`message_id`).
MESSAGE_NAMES: dict[str, frozenset[str]] = {
    "customs": frozenset([*CUSTOMS_NAMES.values(), *CUSTOMS_ORIGINAL_NAMES.values()]),
    "inspection": frozenset(INSPECTION_NAMES.values()),
    "port": frozenset([base + suffix for base, _ in PORT_MESSAGES.values() for suffix in PORT_SUFFIXES.values()]
                      + [name for name, _ in PORT_RELEASES.values()]),
    "maritime": frozenset([form.name for forms in MARITIME_FORMS.values() for form in forms] + list(_FAL_SUPPRESSIONS)),
    "border": frozenset([form.name for form in BORDER_FORMS] + list(_FAL_SUPPRESSIONS)),
}


def answered_version(declaration: Declaration, agency: str, answers: str) -> int | None:
    """The version of `declaration` whose message to `agency` has the id `answers`, or None if it sent none.

    The hub's message ids derive from the declaration id, the version, the agency and what the message is
    (`message_id`), so the version of the message a reply answers can be found again from its id alone: the
    agency's declaration messages, and the hub's notices about the inspections and holds the declaration has.
    """
    keys = set(MESSAGE_NAMES.get(agency, ()))
    keys.update(f"{RECOGNITION_NOTICE}:{inspection['agency']}:{inspection['message_id']}"
                for inspection in declaration.inspections)
    keys.update(f"{name}:{alert_id}" for alert_id in declaration.holds for name in (ALERT_NOTICE, ALERT_CLEARED_NOTICE))
    ident = str(declaration.id)
    for version in range(declaration.version, 0, -1):
        for key in keys:
            if message_id(ident, version, agency, key) == answers:
                return version
    return None
