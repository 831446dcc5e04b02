"""Inbound port replies, through the gate, into `Reply`s (xsd/port/replies.xsd).

What each reply becomes at the hub (the `status` recorded for the port; a
notice records nothing but the message itself):

| reply | code | meaning | hub status |
|---|---|---|---|
| `Acknowledgement` | RCV | cargo notice or visit request received | received |
| `Acknowledgement` | RNR | release notice received | none: a notice |
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

from adapters.messages import Reply, ReplyError
from adapters.xml import Schema, admit, iso_time, text_at
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
    "CAN": (CANCELLED, "cancellation acknowledged"),
    "VID": (ACCEPTED, "visit id"),
    "ACC": (ACCEPTED, "accepted"),
    "REJ": (REJECTED, "rejected"),
    "HLD": (HELD, "held by the port"),
    "CHK": (INSPECTION_REQUIRED, "held for a check at the terminal"),
    "REL": (RELEASED, "released"),
}


def _tag(*names: str) -> str:
    return "/".join(f"{{{NS}}}{name}" for name in names)


_KINDS = (_tag("Acknowledgement"), _tag("Visit"), _tag("Decision"))
_CODE = _tag("FunctionCode")
_REFERENCE = _tag("FunctionalReferenceID")
_ISSUED = _tag("IssueDateTime", "DateTimeString")
_ANSWERS = _tag("Declaration", "FunctionalReferenceID")
_DECLARATION_ID = _tag("Declaration", "ID")
_VERSION = _tag("Declaration", "VersionID")
_VISIT_ID = _tag("CallTransportEvent", "ID")
_STATEMENT = _tag("AdditionalInformation")
_DESCRIPTION = _tag("StatementDescription")
_STATEMENT_CODE = _tag("StatementCode")
_EQUIPMENT = _tag("TransportEquipment")
_SEQUENCE = _tag("SequenceNumeric")


def parse_port_replies(data: bytes) -> list[Reply]:
    """Every reply in one inbound port message, in order, or `Refused` from the gate."""
    root = admit(data, REPLIES_SCHEMA)
    return [_reply(reply) for reply in root.iterchildren(*_KINDS)]


def _reply(reply: etree._Element) -> Reply:
    code = text_at(reply, _CODE)
    status, meaning = OUTCOMES[code]
    if code == "VID":
        meaning = f"{meaning} {text_at(reply, _VISIT_ID)}"
    statements = [text_at(statement, _DESCRIPTION) for statement in reply.iterchildren(_STATEMENT)]
    return Reply(
        agency=AGENCY,
        message_id=text_at(reply, _REFERENCE),
        declaration_id=text_at(reply, _DECLARATION_ID),
        version=int(text_at(reply, _VERSION)),
        answers=text_at(reply, _ANSWERS),
        issued_at=iso_time(text_at(reply, _ISSUED), "IssueDateTime"),
        code=code,
        status=status,
        text="; ".join([meaning, *statements]),
        errors=tuple(_remarks(reply)),
    )


def _remarks(reply: etree._Element) -> list[ReplyError]:
    remarks = []
    for equipment in reply.iterchildren(_EQUIPMENT):
        field = f"$.containers[{int(text_at(equipment, _SEQUENCE)) - 1}]"
        for remark in equipment.iterchildren(_STATEMENT):
            remarks.append(ReplyError(code=text_at(remark, _STATEMENT_CODE) or "remark",
                                      text=text_at(remark, _DESCRIPTION), field=field))
    return remarks
