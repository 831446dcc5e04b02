"""The largest legal declaration fits the broker: every agency's message of it, signed, under MAX_PAYLOAD_BYTES.

Every list at its cap and every string at its longest, in each of the costliest characters (tests/largest.py),
for the submission, an amendment that changes every field, and the withdrawal. One past a cap is refused at
submit with the field and the limit.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.messages import advance
from adapters.outbound import messages_for
from hub.declarations import AGENCIES, Declarations, InvalidDeclaration, content_hash, validate_document
from hub.declarations.documents import LIMITS
from messaging.broker import MAX_PAYLOAD_BYTES, headers_of
from messaging.publishing import wire_size

from . import largest

# Room kept for what is added after the mapping: the hub's enveloped XML signature (1-2 KB) and anything a
# later mapping adds; the largest message must leave at least this much of the limit free.
MARGIN = 256 * 1024


def largest_messages(maker, fill: str, other: str) -> dict[str, int]:
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    first, second = maker(fill), maker(other)
    second["reference"] = first["reference"]
    declaration = app.prepare_submission(first)
    amended = validate_document(second)
    declaration.amend(amended, content_hash(amended), app.routing.route(amended))
    declaration.withdraw("x" * 512)
    events = declaration.collect_events()
    sizes: dict[str, int] = {}
    after = None
    for event in events:
        change, after = advance(event, after)
        for agency in AGENCIES:
            # Dispatch tells each agency what the registry says of the licences cited (followers/dispatch.py).
            told = replace(change, licences=largest.costliest_licences(change.document, agency)) if change else None
            for message in messages_for(told, app.routing, [agency]) if told else ():
                key = f"{message.agency} {message.name}"
                sizes[key] = max(sizes.get(key, 0), wire_size(message, headers_of(message)))
    return sizes


@pytest.mark.slow
@pytest.mark.parametrize("maker", [largest.largest_goods, largest.largest_vessel_call])
@pytest.mark.parametrize("fill, other", [("&", '"'), ('"', "&"), ("\U00020000", "<")])
def test_every_message_of_the_largest_legal_declaration_fits_the_broker(maker, fill, other):
    sizes = largest_messages(maker, fill, other)
    assert {key.split()[0] for key in sizes} >= {"customs", "port", "maritime"}
    assert max(sizes.values()) <= MAX_PAYLOAD_BYTES - MARGIN, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


@pytest.mark.parametrize("field", ["containers", "documents", "crew", "passengers", "dangerous_goods"])
def test_one_past_a_cap_is_refused_naming_the_field_and_the_limit(field):
    maker = largest.largest_vessel_call if field in ("crew", "passengers", "dangerous_goods") else largest.largest_goods
    original = dict(LIMITS)
    try:
        LIMITS.update({name: 1 for name in LIMITS if name != "description"} | {field: original[field] + 1})
        document = maker("a")
    finally:
        LIMITS.update(original)
    with pytest.raises(InvalidDeclaration) as refused:
        validate_document(document)
    [error] = refused.value.errors
    assert error.path == f"$.{field}" and f"at most {original[field]} entries" in error.message
