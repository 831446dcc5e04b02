"""The inspection adapter: SPS and health quarantine declarations out, decisions in (xsd/inspection/)."""

from .decisions import DECISION_SCHEMA, DECISIONS, parse_decisions
from .declaration import DECLARATION_SCHEMA, inspection_messages, items_under_inspection

__all__ = ["DECISIONS", "DECISION_SCHEMA", "DECLARATION_SCHEMA", "inspection_messages", "items_under_inspection",
           "parse_decisions"]
