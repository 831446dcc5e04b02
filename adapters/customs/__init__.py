"""The customs adapter: WCO Data Model 3.6 declarations out (DEC-DMS:2), responses in (RES-DMS:2)."""

from .declaration import DECLARATION_SCHEMA, customs_messages
from .responses import OUTCOMES, RESPONSE_SCHEMA, parse_responses

__all__ = ["DECLARATION_SCHEMA", "OUTCOMES", "RESPONSE_SCHEMA", "customs_messages", "parse_responses"]
