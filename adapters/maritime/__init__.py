"""The maritime adapter: IMO FAL 1 and FAL 7 out as Trafic2000 messages, receipts and decisions in (xsd/maritime/)."""

from .forms import DANGEROUS_GOODS_SCHEMA, GENERAL_DECLARATION_SCHEMA, SUPPRESSION_SCHEMA, maritime_messages
from .replies import DECISION_SCHEMA, RECEIPT_SCHEMA, parse_maritime_replies

__all__ = ["DANGEROUS_GOODS_SCHEMA", "DECISION_SCHEMA", "GENERAL_DECLARATION_SCHEMA", "RECEIPT_SCHEMA",
           "SUPPRESSION_SCHEMA", "maritime_messages", "parse_maritime_replies"]
