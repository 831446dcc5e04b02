"""Inbound customs responses: WCO RES-DMS:2 notifications, through the gate, into `Reply`s.

What each response function code becomes at the hub (the `status` recorded
for customs; None records nothing but the message itself):

| code | WCO meaning | hub status |
|---|---|---|
| 01 | accepted | accepted |
| 02 | received | received |
| 03 | rejected (errors point at fields) | rejected |
| 05 | physical control | inspection_required |
| 06 | documents required | inspection_required |
| 07 | corrections after control | inspected |
| 08 | release of goods | released |
| 09 | cleared | released |
| 10 | invalidated | cancelled |
| 11 | amendment accepted | accepted |
| 13 | duty calculated | none: a notice, with the amounts |
| 14, 15 | payment required, reminder | held |
| 16 | exit of goods | released |
| other | a notice | none |

On a vessel call (a conveyance report) 05, 08 and 16 concern the ship, not
goods: `meaning_for` gives the words for each kind, which the pages show.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lxml import etree

from adapters.messages import Reply, ReplyError
from adapters.xml import SCHEMA_INVALID, Refused, Schema, admit
from hub.declarations.domainmodel import (
    ACCEPTED,
    CANCELLED,
    HELD,
    INSPECTED,
    INSPECTION_REQUIRED,
    RECEIVED,
    REJECTED,
    RELEASED,
)

from .declaration import AGENCY, MD
from .pointers import Pointer, describe, field_at

RES = "urn:wco:datamodel:WCO:RES-DMS:2"
RDS = "urn:wco:datamodel:WCO:Response_DS:DMS:2"
RESPONSE_SCHEMA = Schema("customs/response.xsd", f"{{{MD}}}MetaData")

# function code -> (hub status or None, what it means)
OUTCOMES: dict[str, tuple[str | None, str]] = {
    "01": (ACCEPTED, "accepted"),
    "02": (RECEIVED, "received"),
    "03": (REJECTED, "rejected"),
    "05": (INSPECTION_REQUIRED, "physical control of the goods"),
    "06": (INSPECTION_REQUIRED, "documents required"),
    "07": (INSPECTED, "corrected after control"),
    "08": (RELEASED, "goods released"),
    "09": (RELEASED, "cleared"),
    "10": (CANCELLED, "invalidated"),
    "11": (ACCEPTED, "amendment accepted"),
    "13": (None, "duty calculated"),
    "14": (HELD, "payment required before release"),
    "15": (HELD, "payment reminder"),
    "16": (RELEASED, "goods exited"),
}
# On a vessel call customs answers a conveyance report: the ship is controlled and cleared, not goods.
CONVEYANCE_MEANINGS: dict[str, str] = {
    "05": "physical control of the vessel",
    "08": "vessel call cleared",
    "16": "vessel departed",
}


def meaning_for(code: str, kind: str) -> str:
    """What function code `code` means on a declaration of `kind` (goods or vessel_call), as people say it."""
    if kind == "vessel_call" and code in CONVEYANCE_MEANINGS:
        return CONVEYANCE_MEANINGS[code]
    return OUTCOMES.get(code, (None, f"notice {code}"))[1]

Lookup = Callable[[str], dict[str, Any] | None]


def parse_responses(data: bytes | etree._Element, lookup: Lookup | None = None) -> list[Reply]:
    """Every response in one inbound customs message, or `Refused` from the gate.

    `lookup(declaration_id)` may return the declaration's document, so error
    pointers are named as the document's fields; without it they stay pointers.
    """
    root = admit(data, RESPONSE_SCHEMA)
    return [_reply(response, lookup) for response in root.iterchildren(f"{{{RES}}}Response")]


def _text(parent: etree._Element, path: str) -> str:
    element = parent.find(path)
    return (element.text or "").strip() if element is not None else ""


@functools.cache  # a handful of paths, built once rather than per reply
def _r(*names: str) -> str:
    return "/".join(f"{{{RES}}}{name}" for name in names)


def _reply(response: etree._Element, lookup: Lookup | None) -> Reply:
    code = _text(response, _r("FunctionCode"))
    status, meaning = OUTCOMES.get(code, (None, f"notice {code}"))
    declaration = response.find(_r("Declaration"))
    declaration_id = _text(declaration, _r("ID"))
    version = _text(declaration, _r("VersionID"))
    pointed = response.find(_r("Error")) is not None or response.find(_r("Amendment")) is not None
    document = lookup(declaration_id) if lookup is not None and pointed else None  # only pointers need it
    errors = tuple(_error(error, document) for error in response.iterchildren(_r("Error")))
    details = [meaning]
    details += [_statement(statement) for statement in response.iterchildren(_r("AdditionalInformation"))]
    details += [f"corrected {_where(_pointers(amendment), document)}"
                for amendment in response.iterchildren(_r("Amendment"))]
    if code == "13":
        details += _duties(response)
    return Reply(
        agency=AGENCY,
        message_id=_text(response, _r("FunctionalReferenceID")),
        declaration_id=declaration_id,
        version=int(version) if version else None,
        answers=_text(declaration, _r("FunctionalReferenceID")),
        issued_at=_timestamp(response.find(_r("IssueDateTime")).find(f"{{{RDS}}}DateTimeString")),
        code=code,
        status=status,
        text="; ".join(detail for detail in details if detail),
        errors=errors,
    )


def _pointers(parent: etree._Element) -> list[Pointer]:
    steps = []
    for pointer in parent.iterchildren(_r("Pointer")):
        sequence = _text(pointer, _r("SequenceNumeric"))
        steps.append(Pointer(_text(pointer, _r("DocumentSectionCode")),
                             int(sequence) if sequence else None, _text(pointer, _r("TagID"))))
    return steps


def _where(steps: list[Pointer], document: dict[str, Any] | None) -> str:
    field = field_at(steps, document) if document is not None and steps else ""
    return field or describe(steps) or "the declaration"


def _error(error: etree._Element, document: dict[str, Any] | None) -> ReplyError:
    steps = _pointers(error)
    field = field_at(steps, document) if document is not None and steps else ""
    text = _text(error, _r("Description"))
    if steps and not field:
        text = f"{text} (at {describe(steps)})".strip()
    return ReplyError(code=_text(error, _r("ValidationCode")) or "error", text=text, field=field)


def _statement(statement: etree._Element) -> str:
    text = _text(statement, _r("StatementDescription"))
    limit = statement.find(_r("LimitDateTime"))
    if limit is not None:
        text = f"{text} by {_timestamp(limit.find(f'{{{RDS}}}DateTimeString'))}".strip()
    return text


def _duties(response: etree._Element) -> list[str]:
    amounts = []
    for duty in response.iter(_r("DutyTaxFee")):
        assessed = duty.find(_r("Payment", "TaxAssessedAmount"))
        if assessed is not None:
            kind = _text(duty, _r("TypeCode"))
            amounts.append(f"{kind or 'duty'} {assessed.text} {assessed.get('currencyID', '')}".strip())
    return amounts


def _timestamp(element: etree._Element) -> str:
    """WCO format 102 (CCYYMMDD) or 304 (CCYYMMDDHHMMSS and a zone) as ISO 8601.

    The schema checks the shape; only here is 20260230 found not to exist.
    """
    text = element.text.strip()
    try:
        if len(text) == 8:
            return datetime.strptime(text, "%Y%m%d").date().isoformat()
        digits = text[:14]
        if len(digits) == 14 and digits.isascii() and digits.isdigit():  # read by hand: strptime costs 20 µs
            moment = datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                              int(digits[10:12]), int(digits[12:]))
        else:
            moment = datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        raise Refused(SCHEMA_INVALID, f"line {element.sourceline}: {text} is not a date and time that exists") \
            from None
    zone = text[14:]
    return moment.isoformat() + ("Z" if zone in ("", "Z") else f"{zone}:00")

