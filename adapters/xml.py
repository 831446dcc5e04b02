"""XML in and out of the hub: the hub's own schemas, checked outbound, and the inbound gate.

Outbound, every message is validated with lxml against `xsd/` before it may
leave; an invalid one is a bug in a mapping and raises `InvalidMessage`.

Inbound, `admit` is the one gate every agency message passes, whatever the
agency (RELIABILITY.md, XML):

1. the size is capped before any parsing;
2. the parser resolves no entity, loads no DTD, touches no network and keeps
   libxml2's depth and size limits (no `huge_tree`);
3. a document with a DOCTYPE (internal or external), an unexpanded entity or
   an XInclude element is refused after parsing, and nothing ever calls
   `xinclude()`;
4. the document is validated against the hub's own schema for that message,
   loaded from local files: `xsi:schemaLocation` is never followed.

Every refusal is a `Refused` with a stable `code` (for dead letters, metrics
and tests) and a reason a person can act on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from lxml import etree

SCHEMA_ROOT = Path(str(files("xsd")))
MAX_MESSAGE_BYTES = 1024 * 1024
XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")

# Stable refusal codes: they are part of the dead-letter contract.
TOO_LARGE = "too-large"
EMPTY = "empty"
BAD_ENCODING = "bad-encoding"
NOT_WELL_FORMED = "not-well-formed"
TOO_DEEP = "too-deep"
DOCTYPE = "doctype"
ENTITY = "entity"
XINCLUDE = "xinclude"
UNEXPECTED_ROOT = "unexpected-root"
SCHEMA_INVALID = "schema-invalid"
REFUSAL_CODES = (TOO_LARGE, EMPTY, BAD_ENCODING, NOT_WELL_FORMED, TOO_DEEP, DOCTYPE, ENTITY, XINCLUDE,
                 UNEXPECTED_ROOT, SCHEMA_INVALID)


class Refused(ValueError):
    """An inbound message the gate turned away; nothing downstream ever sees it."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class InvalidMessage(RuntimeError):
    """An outbound message failed the hub's own schema: a mapping bug, never sent."""


@dataclass(frozen=True)
class Schema:
    """One of the hub's schemas: `name` is its path under `xsd/`, e.g. "customs/declaration.xsd"."""

    name: str
    root: str  # Clark notation of the one root element the schema admits, e.g. "{ns}MetaData"

    @property
    def path(self) -> Path:
        return SCHEMA_ROOT / self.name


# lxml parsers and schema validators are not safe to share between threads.
_local = threading.local()


def _hardened_parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, collect_ids=False, remove_comments=True, remove_pis=True,
        )
    return parser


def _validator(schema: Schema) -> etree.XMLSchema:
    cache = getattr(_local, "schemas", None)
    if cache is None:
        cache = _local.schemas = {}
    validator = cache.get(schema.name)
    if validator is None:
        # The schema files are ours, but they are parsed as carefully as any input.
        document = etree.parse(str(schema.path), _hardened_parser())
        validator = cache[schema.name] = etree.XMLSchema(document)
    return validator


def check_outbound(root: etree._Element, schema: Schema) -> bytes:
    """Validate a built message and serialise it; an invalid message is a bug and goes nowhere."""
    validator = _validator(schema)
    if root.tag != schema.root or not validator.validate(root):
        error = validator.error_log.last_error if root.tag == schema.root else None
        where = f"line {error.line}: {error.message}" if error else f"root {root.tag}, expected {schema.root}"
        raise InvalidMessage(f"outbound message fails {schema.name}: {where}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def admit(data: bytes, schema: Schema, *, limit: int = MAX_MESSAGE_BYTES) -> etree._Element:
    """The root element of an inbound message that passed every check, or `Refused`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Refused(BAD_ENCODING, "a message is bytes on the wire, not already-decoded text")
    if len(data) > limit:
        raise Refused(TOO_LARGE, f"{len(data)} bytes; the limit is {limit}")
    if not bytes(data).strip():
        raise Refused(EMPTY, "the message has no content")
    try:
        root = etree.fromstring(bytes(data), _hardened_parser())
    except LookupError as error:  # an encoding declaration libxml2 does not know
        raise Refused(BAD_ENCODING, f"unknown encoding: {error}") from None
    except etree.XMLSyntaxError as error:
        raise _syntax_refusal(error) from None
    except ValueError as error:
        raise Refused(NOT_WELL_FORMED, str(error)) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None or tree.docinfo.externalDTD is not None:
        raise Refused(DOCTYPE, "a document type declaration is not allowed (no DTDs, no entities)")
    for element in root.iter(etree.Entity, "{*}include"):
        if isinstance(element, etree._Entity):
            raise Refused(ENTITY, f"entity reference {element.text} is not allowed")
        if etree.QName(element).namespace in XINCLUDE_NAMESPACES:
            raise Refused(XINCLUDE, f"XInclude at line {element.sourceline} is not allowed")
    if root.tag != schema.root:
        raise Refused(UNEXPECTED_ROOT, f"root element is {root.tag}, expected {schema.root}")
    validator = _validator(schema)
    if not validator.validate(root):
        error = validator.error_log.last_error
        raise Refused(SCHEMA_INVALID, f"line {error.line}: {error.message}")
    return root


def _syntax_refusal(error: etree.XMLSyntaxError) -> Refused:
    message = str(error.msg or error)
    lowered = message.lower()
    if "excessive depth" in lowered or "depth" in lowered and "huge" in lowered:
        return Refused(TOO_DEEP, f"elements are nested too deeply ({message})")
    if "encoding" in lowered or "unsupported" in lowered and "char" in lowered:
        return Refused(BAD_ENCODING, message)
    return Refused(NOT_WELL_FORMED, f"line {error.lineno}, column {error.offset}: {message}")

