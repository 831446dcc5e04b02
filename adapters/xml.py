"""XML in and out of the hub: the hub's own schemas, checked outbound, and the inbound gate.

Outbound, every message is validated with lxml against `xsd/` before it may
leave; an invalid one is a bug in a mapping and raises `InvalidMessage`.

Inbound, `admit` is the one gate every agency message passes, whatever the
agency (docs/guarantees.md, XML):

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

import copy
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
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
# The signature check that follows the gate (adapters.signing): no enveloped signature, or one that fails.
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad-signature"
REFUSAL_CODES = (TOO_LARGE, EMPTY, BAD_ENCODING, NOT_WELL_FORMED, TOO_DEEP, DOCTYPE, ENTITY, XINCLUDE,
                 UNEXPECTED_ROOT, SCHEMA_INVALID, UNSIGNED, BAD_SIGNATURE)


class Refused(ValueError):
    """An inbound message the gate turned away; nothing downstream ever sees it."""

    def __init__(self, code: str, reason: str) -> None:
        reason = " ".join(reason.split())  # one line: it goes into logs and dead-letter headers
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

# libxml2 errors that mean the bytes are not in the encoding they claim, or in none libxml2 knows.
_ENCODING_ERRORS = frozenset({
    etree.ErrorTypes.ERR_UNKNOWN_ENCODING, etree.ErrorTypes.ERR_UNSUPPORTED_ENCODING,
    etree.ErrorTypes.ERR_ENCODING_NAME, etree.ErrorTypes.ERR_INVALID_ENCODING, etree.ErrorTypes.WAR_ENCODING_MISMATCH,
})
# A declaration readable as ASCII cannot truthfully name a 16- or 32-bit encoding; libxml2 then decodes the
# rest as that encoding and reports only the garbage that results ("Blank needed here").
_ASCII_DECLARES_WIDE = re.compile(
    rb"(?:\xef\xbb\xbf)?<\?xml\s[^>]{0,200}?encoding\s*=\s*[\"'](?:utf-?16|utf-?32|ucs-?2|ucs-?4|iso-10646-ucs-[24])",
    re.IGNORECASE,
)


def _hardened_parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        # Never collect_ids=False: lxml sets libxml2's XML_SKIP_IDS bit for it, and libxml2 (2.14 at least)
        # then loads the external DTD subset and external parameter entities, load_dtd=False notwithstanding.
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_comments=True, remove_pis=True,
        )
    return parser


def compiled_schema(schema: Schema) -> etree.XMLSchema:
    """The schema compiled by lxml: once per thread, and kept for that thread."""
    cache = getattr(_local, "schemas", None)
    if cache is None:
        cache = _local.schemas = {}
    validator = cache.get(schema.name)
    if validator is None:
        # libxml2 fails at random ("internal error", unresolved QNames) when threads compile schemas at
        # the same time: one at a time. Validation with a thread's own compiled schema is safe.
        with _COMPILING:
            # The schema files are ours, but they are parsed as carefully as any input.
            document = etree.parse(str(schema.path), _hardened_parser())
            validator = cache[schema.name] = etree.XMLSchema(document)
    return validator


_COMPILING = threading.Lock()


def check_outbound(root: etree._Element, schema: Schema) -> bytes:
    """Validate a built message and serialise it; an invalid message is a bug and goes nowhere.

    The tree is kept a moment (`built_tree`): the signer canonicalises it rather than parse the bytes again.
    """
    validator = compiled_schema(schema)
    if root.tag != schema.root or not validator.validate(root):
        error = validator.error_log.last_error if root.tag == schema.root else None
        where = f"line {error.line}: {error.message}" if error else f"root {root.tag}, expected {schema.root}"
        raise InvalidMessage(f"outbound message fails {schema.name}: {where}")
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    _remember_built(data, root)
    return data


# The trees check_outbound serialised last on each thread, by the identity of their bytes, until the signer
# takes them (adapters.signing): a few, and a few MiB of messages at most, for bytes that are never signed.
# Only on threads that sign (`keep_built_trees`): elsewhere (rendering) a tree is let go at once, as before.
_BUILT_KEPT = 8  # messages: a change's messages to every agency, signed as soon as they are built
_BUILT_BYTES = 4 * 1024 * 1024


def keep_built_trees() -> None:
    """From now on, keep the trees check_outbound builds on this thread for `built_tree` (the signer's thread)."""
    if getattr(_local, "built", None) is None:
        _local.built = {}
        _local.built_bytes = 0


def _remember_built(data: bytes, root: etree._Element) -> None:
    built = getattr(_local, "built", None)
    if built is None or len(data) > _BUILT_BYTES:
        return
    while built and (len(built) >= _BUILT_KEPT or _local.built_bytes + len(data) > _BUILT_BYTES):
        _local.built_bytes -= len(built.pop(next(iter(built)))[0])
    # Keyed by id(): the entry holds `data` itself, so no other object can take that id while it is there.
    built[id(data)] = (data, root)
    _local.built_bytes += len(data)


def built_tree(data: bytes) -> etree._Element | None:
    """The tree check_outbound serialised as exactly this bytes object, on this thread, or None; handed out once.

    It is the document `data` holds but for the indentation pretty_print wrote, which `etree.indent` puts into
    the tree: the schemas have no mixed content, so both indent exactly the elements that have children, and
    exclusive canonicalisation of the indented tree and of `data` parsed give the same bytes. Nothing changes a
    tree after check_outbound (tests/test_signing.py signs every agency's messages from their trees and checks
    them against signatures made from the bytes).
    """
    built = getattr(_local, "built", None)
    entry = built.get(id(data)) if built else None
    if entry is None or entry[0] is not data:
        return None
    del built[id(data)]
    _local.built_bytes -= len(data)
    return entry[1]


# Characters XML 1.0 cannot carry at all; whitespace is collapsed separately.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def one_line(text: str, limit: int) -> str:
    """Free text as one line of at most `limit` characters that XML can carry: what the Text types admit."""
    if len(text) <= limit and text.isprintable() and "  " not in text and text.strip(" ") == text:
        return text  # the common case, checked in C: lists of people call this for every name
    return " ".join(_NOT_XML.sub("", text).split())[:limit].rstrip()


def wco_time(moment: datetime) -> str:
    """A moment as WCO date-time format 304 in UTC: CCYYMMDDHHMMSSZ."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def wco_recorded_time(text: str, what: str) -> tuple[str, str]:
    """A time the hub recorded (ISO 8601) as (value, WCO format code): 304 in UTC, or 102 for a date alone.

    A time without a zone is UTC, as the hub writes them; anything that is not
    ISO 8601 is a bug upstream, and fails loudly rather than reach an agency.
    """
    try:
        return date.fromisoformat(text).strftime("%Y%m%d"), "102"
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidMessage(f"{what} has time {text!r}, which is not an ISO 8601 date or time") from None
    return wco_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC)), "304"


def iso_time(text: str, where: str) -> str:
    """An inbound WCO format 304 time (CCYYMMDDHHMMSS, then Z or +hhmm) as ISO 8601 in UTC.

    The schema checks the shape; only here is 30 February found not to exist.
    """
    shaped = _WCO_304.fullmatch(text)
    try:
        if shaped is None:  # not the shape the schemas admit: the general parser reads or refuses it
            moment = datetime.strptime(text.replace("Z", "+0000"), "%Y%m%d%H%M%S%z")
        else:  # what every agency sends: read by hand, a third of strptime's cost, the same days refused
            year, month, day, hour, minute, second, sign, zone_hours, zone_minutes = shaped.groups()
            zone = UTC if sign is None else timezone(
                (-1 if sign == "-" else 1) * timedelta(hours=int(zone_hours), minutes=int(zone_minutes)))
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=zone)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: in UTC, before year 1 or after 9999
        raise Refused(SCHEMA_INVALID, f"{where} {text} is not a date and time that exists") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_WCO_304 = re.compile(r"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:Z|([+-])(\d\d)([0-5]\d))", re.ASCII)


def builders(tags: Mapping[str, str]) -> tuple[Callable[..., etree._Element], Callable[..., etree._Element]]:
    """`add(parent, name, text=None)` and `add_with(parent, name, text, attributes)` for a schema's `tags`
    (local name -> Clark notation): the small helpers every mapping builds its elements with."""
    sub_element = etree.SubElement

    def add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = sub_element(parent, tags[name])
        if text is not None:
            element.text = text
        return element

    def add_with(parent: etree._Element, name: str, text: str, attributes: dict[str, str]) -> etree._Element:
        element = sub_element(parent, tags[name], attributes)
        element.text = text
        return element

    return add, add_with


def text_at(parent: etree._Element, path: str) -> str:
    """The text at `path` under `parent` as one line (whitespace collapsed), or "" when there is none."""
    element = parent.find(path)
    return " ".join((element.text or "").split()) if element is not None else ""


class Stencil:
    """A subtree built once with blanks, then copied (in C) and filled for each use.

    `build(parent, values)` is an ordinary builder that writes each value as
    given; it is run once with values that are blanks ("{key}") to make the
    stencil. Filling copies the subtree
    and writes each blank's value into its text or attribute, several times
    faster than building the same elements one `SubElement` at a time. The
    `context` element gives the stencil the namespaces of the documents it is
    stamped into, so the copies need no declarations of their own.
    """

    def __init__(self, context: etree._Element, build: Callable[[etree._Element, Mapping[str, str]], None],
                 keys: tuple[str, ...]) -> None:
        holder = copy.deepcopy(context)
        build(holder, {key: "{" + key + "}" for key in keys})
        (self.tree,) = holder
        self.slots: list[tuple[int, str | None, str]] = []
        for index, element in enumerate(self.tree.iter()):
            written = [(None, element.text or "")] + list(element.attrib.items())
            for attribute, value in written:
                if value.startswith("{"):
                    if not value.endswith("}") or value[1:-1] not in keys:
                        raise ValueError(f"the builder must write each value as given, not {value!r}")
                    self.slots.append((index, attribute, value[1:-1]))
        missing = set(keys) - {key for _, _, key in self.slots}
        if missing:
            raise ValueError(f"the builder never wrote {sorted(missing)}")

    def stamp(self, values: Mapping[str, str], parent: etree._Element | None = None) -> etree._Element:
        """A filled copy, appended to `parent` when given (else the root of a document of its own)."""
        element = copy.deepcopy(self.tree)
        if parent is not None:
            parent.append(element)
        elements = list(element.iter())
        for index, attribute, key in self.slots:
            if attribute is None:
                elements[index].text = values[key]
            else:
                elements[index].set(attribute, values[key])
        return element


def admit(data: bytes | etree._Element, schema: Schema, *, limit: int = MAX_MESSAGE_BYTES) -> etree._Element:
    """The root element of an inbound message that passed every check, or `Refused` (a parsed root: `admit_any`)."""
    return admit_any(data, (schema,), limit=limit)


def admit_any(data: bytes | etree._Element, schemas: Sequence[Schema], *, limit: int = MAX_MESSAGE_BYTES
              ) -> etree._Element:
    """`admit`, for a message that may be any of several schemas' roots: the one its root names applies.

    `data` may be the root of a message the gate already parsed (`parse_safely`, or adapters.signing.verify,
    which returns it without its signature): then steps 1-3 are done and only the root and schema are checked,
    which spares the inbox a second parse of every signed message. Never pass a tree from anywhere else.
    """
    root = data if isinstance(data, etree._Element) else _parse_safely(data, limit)
    schema = next((schema for schema in schemas if schema.root == root.tag), None)
    if schema is None:
        expected = " or ".join(schema.root for schema in schemas)
        raise Refused(UNEXPECTED_ROOT, f"root element is {root.tag}, expected {expected}")
    validator = compiled_schema(schema)
    if not validator.validate(root):
        error = validator.error_log.last_error
        raise Refused(SCHEMA_INVALID, f"line {error.line}: {error.message}")
    return root


def parse_safely(data: bytes, limit: int = MAX_MESSAGE_BYTES) -> etree._Element:
    """Steps 1-3 of the gate alone (size, no DTD, entity or XInclude), for a check that must see the
    document before its schema does: the signature check (adapters.signing)."""
    return _parse_safely(data, limit)


def _parse_safely(data: bytes, limit: int) -> etree._Element:
    """Steps 1-3 of the gate: the parsed root of a document with no DTD, entity or XInclude."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Refused(BAD_ENCODING, "a message is bytes on the wire, not already-decoded text")
    size = memoryview(data).nbytes  # not len(): a memoryview's length counts items, which may be wider than bytes
    if size > limit:
        raise Refused(TOO_LARGE, f"{size} bytes; the limit is {limit}")
    data = bytes(data)
    if not data or data.isspace():  # not strip(): no copy of the message to find out
        raise Refused(EMPTY, "the message has no content")
    parser = _hardened_parser()
    try:
        root = etree.fromstring(data, parser)
    except LookupError as error:  # an encoding declaration libxml2 does not know
        raise Refused(BAD_ENCODING, f"unknown encoding: {error}") from None
    except etree.XMLSyntaxError as error:
        raise _syntax_refusal(error, data, parser.error_log) from None
    except ValueError as error:
        raise Refused(NOT_WELL_FORMED, str(error)) from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise Refused(DOCTYPE, "a document type declaration is not allowed (no DTDs, no entities)")
    for element in root.iter(etree.Entity, "{*}include"):
        if isinstance(element, etree._Entity):
            raise Refused(ENTITY, f"entity reference {element.text} is not allowed")
        if etree.QName(element).namespace in XINCLUDE_NAMESPACES:
            raise Refused(XINCLUDE, f"XInclude at line {element.sourceline} is not allowed")
    return root


def _syntax_refusal(error: etree.XMLSyntaxError, data: bytes, log: etree._ListErrorLog) -> Refused:
    # Classify by libxml2's error codes and the fixed start of its messages, never by words anywhere in a
    # message: messages quote the sender's names (a mismatched <encoding> tag is not an encoding problem).
    message = str(error.msg or error)
    if _declares_doctype(data):  # e.g. billion laughs, which libxml2 stops before lxml returns a tree
        return Refused(DOCTYPE, f"a document type declaration is not allowed (no DTDs, no entities); {message}")
    if message.lower().startswith("excessive depth in document"):
        return Refused(TOO_DEEP, f"elements are nested too deeply ({message})")
    if (error.code in _ENCODING_ERRORS or any(entry.type in _ENCODING_ERRORS for entry in log)
            or message.startswith("Input is not proper UTF-8")  # libxml2 before 2.12
            or _ASCII_DECLARES_WIDE.match(data)):
        return Refused(BAD_ENCODING, message)
    return Refused(NOT_WELL_FORMED, f"line {error.lineno}, column {error.offset}: {message}")


class _SawDoctype(Exception):
    pass


class _SawRoot(Exception):
    pass


class _PrologProbe:
    """A parser target that stops at the DOCTYPE or at the root element, whichever comes first."""

    def doctype(self, *_) -> None:
        raise _SawDoctype

    def start(self, *_) -> None:
        raise _SawRoot

    def close(self) -> None:
        return None


def _declares_doctype(data: bytes) -> bool:
    """Whether a document that failed to parse has a DOCTYPE, found by parsing its prolog only."""
    parser = etree.XMLParser(target=_PrologProbe(), resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    try:
        etree.fromstring(data, parser)
    except _SawDoctype:
        return True
    except (_SawRoot, etree.LxmlError, LookupError, ValueError):
        return False
    return False

