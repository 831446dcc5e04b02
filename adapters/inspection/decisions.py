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

from adapters.messages import Reply, ReplyError
from adapters.xml import Schema, admit, iso_time, text_at
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


def _tag(*names: str) -> str:
    return "/".join(f"{{{NS}}}{name}" for name in names)


_DECISION = _tag("Decision")
_CODE = _tag("FunctionCode")
_REFERENCE = _tag("FunctionalReferenceID")
_ISSUED = _tag("IssueDateTime", "DateTimeString")
_ANSWERS = _tag("Declaration", "FunctionalReferenceID")
_DECLARATION_ID = _tag("Declaration", "ID")
_VERSION = _tag("Declaration", "VersionID")
_STATEMENT = _tag("AdditionalInformation")
_DESCRIPTION = _tag("StatementDescription")
_STATEMENT_CODE = _tag("StatementCode")
_ITEM = _tag("GovernmentAgencyGoodsItem")
_SEQUENCE = _tag("SequenceNumeric")


def parse_decisions(data: bytes) -> list[Reply]:
    """Every decision in one inbound inspection message, or `Refused` from the gate."""
    root = admit(data, DECISION_SCHEMA)
    return [_reply(decision) for decision in root.iterchildren(_DECISION)]


def _reply(decision: etree._Element) -> Reply:
    code = text_at(decision, _CODE)
    status, result, meaning = DECISIONS[code]
    statements = [text_at(statement, _DESCRIPTION) for statement in decision.iterchildren(_STATEMENT)]
    return Reply(
        agency=AGENCY,
        message_id=text_at(decision, _REFERENCE),
        declaration_id=text_at(decision, _DECLARATION_ID),
        version=int(text_at(decision, _VERSION)),
        answers=text_at(decision, _ANSWERS),
        issued_at=iso_time(text_at(decision, _ISSUED), "IssueDateTime"),
        code=code,
        status=status,
        text="; ".join([meaning, *statements]),
        errors=tuple(_remarks(decision)),
        inspection=result,
    )


def _remarks(decision: etree._Element) -> list[ReplyError]:
    remarks = []
    for item in decision.iterchildren(_ITEM):
        field = f"$.items[{int(text_at(item, _SEQUENCE)) - 1}]"
        for remark in item.iterchildren(_STATEMENT):
            remarks.append(ReplyError(code=text_at(remark, _STATEMENT_CODE) or "remark",
                                      text=text_at(remark, _DESCRIPTION), field=field))
    return remarks
