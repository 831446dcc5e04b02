"""The port adapter: cargo notices, visit requests and release notices out, replies in (xsd/port/)."""

from .mapping import (
    CARGO_NOTICE_SCHEMA,
    RELEASE_NOTICE_SCHEMA,
    RELEASE_REVOCATION_SCHEMA,
    VISIT_REQUEST_SCHEMA,
    port_messages,
)
from .replies import OUTCOMES, REPLIES_SCHEMA, parse_port_replies

__all__ = ["CARGO_NOTICE_SCHEMA", "OUTCOMES", "RELEASE_NOTICE_SCHEMA", "RELEASE_REVOCATION_SCHEMA", "REPLIES_SCHEMA",
           "VISIT_REQUEST_SCHEMA",
           "parse_port_replies", "port_messages"]
