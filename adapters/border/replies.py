"""Inbound border replies: receipts and formality decisions on FAL 5 and FAL 6, into `Reply`s.

Shapes and codes are those maritime uses too (`adapters.fal`,
xsd/border/README.md): a receipt (`NCA_Receipt`, StatusCode OK or Error)
or a formality decision (`NCA_Form_Res`, StatusCode Accepted, Rejected with
its reasons, Cleared or Cancelled), through the gate and
xsd/border/replies.xsd. A reason may point at one crew member or passenger,
by position in the list the hub sent.
"""

from __future__ import annotations

from lxml import etree

from adapters.fal import parse_replies
from adapters.messages import Reply
from adapters.xml import Schema

from .forms import AGENCY

RECEIPT_SCHEMA = Schema("border/replies.xsd", "NCA_Receipt")
DECISION_SCHEMA = Schema("border/replies.xsd", "NCA_Form_Res")


def parse_border_replies(data: bytes | etree._Element) -> list[Reply]:
    """The reply in one inbound border message, or `Refused` from the gate."""
    return parse_replies(data, AGENCY, RECEIPT_SCHEMA, DECISION_SCHEMA)
