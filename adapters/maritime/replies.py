"""Inbound maritime replies: receipts and formality decisions on FAL 1 and FAL 7, into `Reply`s.

Shapes and codes are those the border uses too (`adapters.fal`,
xsd/maritime/README.md): a receipt (`NCA_Receipt`, StatusCode OK or Error)
or a formality decision (`NCA_Form_Res`, StatusCode Accepted, Rejected with
its reasons, Cleared or Cancelled), through the gate and
xsd/maritime/replies.xsd.
"""

from __future__ import annotations

from lxml import etree

from adapters.fal import parse_replies
from adapters.messages import Reply
from adapters.xml import Schema

from .forms import AGENCY

RECEIPT_SCHEMA = Schema("maritime/replies.xsd", "NCA_Receipt")
DECISION_SCHEMA = Schema("maritime/replies.xsd", "NCA_Form_Res")


def parse_maritime_replies(data: bytes | etree._Element) -> list[Reply]:
    """The reply in one inbound maritime message, or `Refused` from the gate."""
    return parse_replies(data, AGENCY, RECEIPT_SCHEMA, DECISION_SCHEMA)
