"""One scenario over every agency adapter: what docs/messages.md says every message carries."""

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
# Trafic2000 FAL forms have no element for a message function or a declaration version: the LARefId, the
# message id, stands for both (xsd/maritime/README.md).
WITHOUT_FUNCTION_OR_VERSION = {"maritime", "border"}


def changes(document: dict):
    changed = document | ({"customs_office": "3701"} if document["kind"] == "goods" else {"next_port": "JPTYO"})
    return {
        ORIGINAL: submitted(document),
        AMENDMENT: amended(document, changed),
        CANCELLATION: withdrawn(document, "sent by mistake"),
    }


# Every agency each document is routed to (goods never go to the border), with every action.
CASES = [pytest.param(agency, action, document, id=f"{agency}-{action}-{document['kind']}")
         for document in (GOODS, CALL) for agency in sorted(MAPPINGS)
         if agency in RULES.route(document) for action in (ORIGINAL, AMENDMENT, CANCELLATION)]


def test_the_scenario_reaches_every_agency():
    assert {case.values[0] for case in CASES} == set(MAPPINGS)


@pytest.mark.parametrize("agency, action, document", CASES)
def test_every_message_carries_its_id_declaration_version_function_and_event_time(agency, action, document):
    change = changes(document)[action]
    assert change.action_for(agency) == action
    messages = MAPPINGS[agency](change, action, RULES)
    assert messages, f"{agency} sends nothing for a {action}"
    for message in messages:
        assert message.agency == agency and message.filename == f"{agency}-{message.name}.xml"
        assert message.message_id == message_id(change.declaration_id, change.version, agency, message.name)
        assert (message.declaration_id, message.version, message.issued_at) == (
            change.declaration_id, change.version, EVENT_TIME)
        root = etree.fromstring(message.body)
        carried = {element.text for element in root.iter() if element.text} | {
            value for element in root.iter() for value in element.attrib.values()}
        assert message.message_id in carried
        assert any(change.declaration_id in value for value in carried)  # Trafic2000 deletions say it in a reason
        # The event's time, not the clock's: WCO format 304, or ISO 8601 where the standard writes that.
        assert {EVENT_TIME.strftime("%Y%m%d%H%M%SZ"), EVENT_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")} & carried
        if agency not in WITHOUT_FUNCTION_OR_VERSION:
            assert {message.function_code, str(change.version)} <= carried
        assert MAPPINGS[agency](change, action, RULES) == messages  # pure: the same change, the same bytes


def test_every_message_of_one_change_has_its_own_id():
    ids = [message.message_id for action, change in changes(GOODS).items()
           for agency in MAPPINGS if change.action_for(agency) == action
           for message in MAPPINGS[agency](change, action, RULES)]
    assert len(ids) == len(set(ids)) > 3
