"""Inbound inspection decisions, through the gate, into `Reply`s.

What each decision code becomes at the hub (the `status` recorded for
inspection; a result records the inspection instead, and no status):

| code | decision | hub |
|---|---|---|
| RCV | received | received |
| REL | release | released |
| HDC | hold for documentary check | inspection_required |
| HPC | hold for physical check | inspection_required |
| NAC | not acceptable | rejected |
| IRP | inspection result: pass | inspection "pass", no status |
| IRF | inspection result: fail | inspection "fail", no status |
| CAN | cancellation acknowledged | cancelled |

The schema admits no other code, so an unknown one is refused at the gate
rather than recorded as nothing. Statements become the reply's text (the
findings, for a result); remarks on a goods item become errors at
`$.items[n-1]`, as the item's SequenceNumeric is its position in the
declaration.
"""

from __future__ import annotations

from lxml import etree

from adapters.hub_replies import ReplyReader
from adapters.messages import Reply
from adapters.xml import Schema, admit
from hub.declarations.domainmodel import CANCELLED, INSPECTION_REQUIRED, RECEIVED, REJECTED, RELEASED

from .declaration import AGENCY, NS

DECISION_SCHEMA = Schema("inspection/decision.xsd", f"{{{NS}}}Decisions")

# decision code -> (hub status or None, inspection result or None, what it means)
DECISIONS: dict[str, tuple[str | None, str | None, str]] = {
    "RCV": (RECEIVED, None, "received"),
    "REL": (RELEASED, None, "released"),
    "HDC": (INSPECTION_REQUIRED, None, "held for documentary check"),
    "HPC": (INSPECTION_REQUIRED, None, "held for physical check"),
    "NAC": (REJECTED, None, "not acceptable"),
    "IRP": (None, "pass", "inspection passed"),
    "IRF": (None, "fail", "inspection failed"),
    "CAN": (CANCELLED, None, "cancellation acknowledged"),
}


_READ = ReplyReader(NS)
_DECISION = _READ.tag("Decision")


def parse_decisions(data: bytes | etree._Element) -> list[Reply]:
    """Every decision in one inbound inspection message, or `Refused` from the gate."""
    root = admit(data, DECISION_SCHEMA)
    return [_reply(decision) for decision in root.iterchildren(_DECISION)]


def _reply(decision: etree._Element) -> Reply:
    code = _READ.code(decision)
    status, result, meaning = DECISIONS[code]
    return Reply(
        agency=AGENCY,
        **_READ.common(decision),
        code=code,
        status=status,
        text="; ".join([meaning, *_READ.statements(decision)]),
        errors=_READ.remarks(decision, "GovernmentAgencyGoodsItem", "$.items"),
        inspection=result,
    )
