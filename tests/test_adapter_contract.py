"""One scenario over every agency adapter: what SPEC §4 says every message carries."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.messages import AMENDMENT, CANCELLATION, ORIGINAL, message_id
from adapters.outbound import MAPPINGS
from hub.declarations import RoutingRules

from . import samples
from .messaging import EVENT_TIME, amended, submitted, withdrawn

RULES = RoutingRules.load()

# Declarations that concern every agency the hub builds messages for, before and after a change.
GOODS = samples.goods(items=[samples.goods()["items"][0] | {"hs_code": "0306170000", "un_number": "1263"}],
                      documents=[{"type": "health_certificate", "number": "HC-1"}])
CALL = samples.vessel_call()


def changes(document: dict):
    changed = document | ({"customs_office": "3701"} if document["kind"] == "goods" else {"next_port": "JPTYO"})
    return {
        ORIGINAL: submitted(document),
        AMENDMENT: amended(document, changed),
        CANCELLATION: withdrawn(document, "sent by mistake"),
    }


@pytest.mark.parametrize("document", [GOODS, CALL], ids=["goods", "vessel_call"])
@pytest.mark.parametrize("agency", sorted(MAPPINGS))
@pytest.mark.parametrize("action", [ORIGINAL, AMENDMENT, CANCELLATION])
def test_every_message_carries_its_id_declaration_version_function_and_event_time(agency, action, document):
    change = changes(document)[action]
    if agency not in change.routes and agency not in change.previous_routes:
        pytest.skip(f"{document['kind']} is not routed to {agency}")
    assert change.action_for(agency) == action
    messages = MAPPINGS[agency](change, action, RULES)
    assert messages, f"{agency} sends nothing for a {action}"
    for message in messages:
        assert message.agency == agency and message.filename == f"{agency}-{message.name}.xml"
        assert message.message_id == message_id(change.declaration_id, change.version, agency, message.name)
        assert (message.declaration_id, message.version, message.issued_at) == (
            change.declaration_id, change.version, EVENT_TIME)
        texts = {element.text for element in etree.fromstring(message.body).iter() if element.text}
        assert {message.message_id, change.declaration_id, message.function_code} <= texts
        assert str(change.version) in texts
        assert EVENT_TIME.strftime("%Y%m%d%H%M%SZ") in texts  # the event's time, not the clock's
        assert MAPPINGS[agency](change, action, RULES) == messages  # pure: the same change, the same bytes


def test_every_message_of_one_change_has_its_own_id():
    ids = [message.message_id for action, change in changes(GOODS).items()
           for agency in MAPPINGS if change.action_for(agency) == action
           for message in MAPPINGS[agency](change, action, RULES)]
    assert len(ids) == len(set(ids)) > 3
