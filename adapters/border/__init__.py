"""The border adapter: IMO FAL 5 and FAL 6 out as Trafic2000 messages, receipts and decisions in (xsd/border/)."""

from .forms import CREW_LIST_SCHEMA, PASSENGER_LIST_SCHEMA, SUPPRESSION_SCHEMA, border_messages
from .replies import DECISION_SCHEMA, RECEIPT_SCHEMA, parse_border_replies

__all__ = ["CREW_LIST_SCHEMA", "DECISION_SCHEMA", "PASSENGER_LIST_SCHEMA", "RECEIPT_SCHEMA", "SUPPRESSION_SCHEMA",
           "border_messages", "parse_border_replies"]
