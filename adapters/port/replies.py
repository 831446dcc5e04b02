"""Inbound port replies, through the gate, into `Reply`s (xsd/port/replies.xsd).

What each reply becomes at the hub (the `status` recorded for the port; a
notice records nothing but the message itself):

| reply | code | meaning | hub status |
|---|---|---|---|
| `Acknowledgement` | RCV | cargo notice or visit request received | received |
| `Acknowledgement` | RNR | release notice received | none: a notice |
| `Acknowledgement` | RVR | release revocation received | none: a notice (its HLD decision follows) |
| `Acknowledgement` | CAN | cancellation acknowledged | cancelled |
| `Visit` | VID | visit id allocated to the call | accepted, text "visit id <id>" |
| `Decision` | ACC | accepted | accepted |
| `Decision` | REJ | rejected | rejected |
| `Decision` | HLD | held by the port (dues, terminal hold) | held |
| `Decision` | CHK | held for a check at the terminal (scanning, seals) | inspection_required |
| `Decision` | REL | released: through the gate, or the ship cleared to sail | released |

A release notice's acknowledgement is a notice, not `received`, because it
arrives after the port has long received the cargo notice and may have
accepted it: `received` would set the port back. Each reply element admits
only its own codes, so the schema, not the parser, insists that a visit id
comes with a Visit and that an acknowledgement decides nothing; an unknown
code is refused at the gate rather than recorded as nothing. Statements
become the reply's text; remarks on a container become errors at
`$.containers[n-1]`, as its SequenceNumeric is its position in the cargo
notice and the declaration.
"""

from __future__ import annotations

from lxml import etree

from adapters.hub_replies import ReplyReader
from adapters.messages import Reply
from adapters.xml import Schema, admit, text_at
from hub.declarations.domainmodel import (
    ACCEPTED,
    CANCELLED,
    HELD,
    INSPECTION_REQUIRED,
    RECEIVED,
    REJECTED,
    RELEASED,
)

from .mapping import AGENCY, NS

REPLIES_SCHEMA = Schema("port/replies.xsd", f"{{{NS}}}Replies")

# code -> (hub status or None, what it means)
OUTCOMES: dict[str, tuple[str | None, str]] = {
    "RCV": (RECEIVED, "received"),
    "RNR": (None, "release notice received"),
    "RVR": (None, "release revocation received"),
    "CAN": (CANCELLED, "cancellation acknowledged"),
    "VID": (ACCEPTED, "visit id"),
    "ACC": (ACCEPTED, "accepted"),
    "REJ": (REJECTED, "rejected"),
    "HLD": (HELD, "held by the port"),
    "CHK": (INSPECTION_REQUIRED, "held for a check at the terminal"),
    "REL": (RELEASED, "released"),
}


_READ = ReplyReader(NS)
_KINDS = (_READ.tag("Acknowledgement"), _READ.tag("Visit"), _READ.tag("Decision"))
_VISIT_ID = _READ.tag("CallTransportEvent", "ID")


def parse_port_replies(data: bytes | etree._Element) -> list[Reply]:
    """Every reply in one inbound port message, in order, or `Refused` from the gate."""
    root = admit(data, REPLIES_SCHEMA)
    return [_reply(reply) for reply in root.iterchildren(*_KINDS)]


def _reply(reply: etree._Element) -> Reply:
    code = _READ.code(reply)
    status, meaning = OUTCOMES[code]
    if code == "VID":
        meaning = f"{meaning} {text_at(reply, _VISIT_ID)}"
    return Reply(
        agency=AGENCY,
        **_READ.common(reply),
        code=code,
        status=status,
        text="; ".join([meaning, *_READ.statements(reply)]),
        errors=_READ.remarks(reply, "TransportEquipment", "$.containers"),
    )
