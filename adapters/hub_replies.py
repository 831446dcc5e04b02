"""Reading the replies of the agencies whose reply schemas are the hub's own (inspection, port).

Both schemas write what every reply carries the same way, in their own
namespace: the reply's `FunctionCode`, its own `FunctionalReferenceID` and
`IssueDateTime`, the `Declaration` it answers (`ID`, `VersionID`, and the
hub message's `FunctionalReferenceID`), statements, and remarks on the n-th
entry of one of the declaration's lists.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from adapters.messages import ReplyError
from adapters.xml import iso_time, text_at


class ReplyReader:
    """The common parts of a reply element in `namespace`."""

    def __init__(self, namespace: str) -> None:
        def tag(*names: str) -> str:
            return "/".join(f"{{{namespace}}}{name}" for name in names)

        self.tag = tag
        self._code = tag("FunctionCode")
        self._reference = tag("FunctionalReferenceID")
        self._issued = tag("IssueDateTime", "DateTimeString")
        self._answers = tag("Declaration", "FunctionalReferenceID")
        self._declaration_id = tag("Declaration", "ID")
        self._version = tag("Declaration", "VersionID")
        self._statement = tag("AdditionalInformation")
        self._description = tag("StatementDescription")
        self._statement_code = tag("StatementCode")
        self._sequence = tag("SequenceNumeric")

    def code(self, reply: etree._Element) -> str:
        return text_at(reply, self._code)

    def common(self, reply: etree._Element) -> dict[str, Any]:
        """Reply fields every such reply carries, as `Reply` names them."""
        return {
            "message_id": text_at(reply, self._reference),
            "declaration_id": text_at(reply, self._declaration_id),
            "version": int(text_at(reply, self._version)),
            "answers": text_at(reply, self._answers),
            "issued_at": iso_time(text_at(reply, self._issued), "IssueDateTime"),
        }

    def statements(self, reply: etree._Element) -> list[str]:
        return [text_at(statement, self._description) for statement in reply.iterchildren(self._statement)]

    def remarks(self, reply: etree._Element, entry: str, list_path: str) -> tuple[ReplyError, ...]:
        """Remarks on entries `entry` (by SequenceNumeric) as errors at `list_path[n-1]`."""
        remarks = []
        for element in reply.iterchildren(self.tag(entry)):
            field = f"{list_path}[{int(text_at(element, self._sequence)) - 1}]"
            for remark in element.iterchildren(self._statement):
                remarks.append(ReplyError(code=text_at(remark, self._statement_code) or "remark",
                                          text=text_at(remark, self._description), field=field))
        return tuple(remarks)
