"""Supporting documents in the hub's languages: what kind of file an upload is, and how messages name one.

`judge` decides a document's type by its content, never by its name or the
type the client claims: PDF, JPEG and PNG by their signatures (`filetype`),
XML by parsing it through the same hardened gate as agency messages
(adapters.xml: no DTD, no entity, no XInclude, libxml2's limits). Anything
else is refused. XML whose root is HTML or SVG is refused too: served to a
browser those can run scripts, and no supporting document needs to be one.

`add_references` writes the documents attached to a declaration into an
agency's message where the hub's own schema has a `SupportingDocument`
element (inspection, port): the hash, the file's name, its media type and
size, so the agency can fetch it from the hub and check it is the one the
trader attached. Customs names them as WCO `AdditionalDocument`s instead
(`wco_references`), so that its messages stay valid against the WCO schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import filetype
from lxml import etree

from .xml import Refused, parse_safely

PDF, JPEG, PNG, XML = "application/pdf", "image/jpeg", "image/png", "application/xml"
BINARY_TYPES = (PDF, JPEG, PNG)
# XML vocabularies a browser would render, scripts and all: never a supporting document.
_ACTIVE_NAMESPACES = ("http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class Unacceptable(ValueError):
    """A document the hub does not take: `status` 415 for a type it does not take at all, 422 for a file of a
    type it takes that is not a good one (XML that does not pass the gate, an empty file)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def judge(data: bytes, *, limit: int) -> str:
    """The media type of `data`, judged by its content: one of PDF, JPEG, PNG, XML; `Unacceptable` otherwise."""
    if not data:
        raise Unacceptable(422, "the file is empty")
    kind = filetype.guess(data[:8192])
    if kind is not None and kind.mime in BINARY_TYPES:
        return kind.mime
    if kind is None and _looks_like_xml(data):
        _check_xml(data, limit)
        return XML
    found = f"its content is {kind.mime}" if kind is not None else "its content is none of them"
    raise Unacceptable(415, f"the hub takes PDF, JPEG, PNG or XML documents, judged by content; {found}")


def _looks_like_xml(data: bytes) -> bool:
    if data.startswith(_BOMS[1:]):
        return True  # UTF-16: the gate decides
    return data.removeprefix(_BOMS[0]).lstrip(b" \t\r\n")[:1] == b"<"


def _check_xml(data: bytes, limit: int) -> None:
    try:
        root = parse_safely(data, limit)
    except Refused as error:
        raise Unacceptable(422, f"not acceptable XML ({error.code}): {error.reason}") from None
    name = etree.QName(root)
    if name.namespace in _ACTIVE_NAMESPACES or name.localname.lower() in ("html", "svg"):
        raise Unacceptable(415, f"XML whose root is {name.localname!r} (HTML or SVG) is not a supporting document")


# ---- naming the documents in agency messages ------------------------------------------------------

# WCO AdditionalDocument of a document the hub holds: category HUB (mutually defined), the SHA-256 as its ID
# (WCO 02A ID is an..70), type ZZZ (UN/EDIFACT 1001 "mutually defined": the hub does not know what it is).
HUB_CATEGORY, HUB_DOCUMENT_TYPE = "HUB", "ZZZ"


def documents_in_order(attachments: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A declaration's attachments (`Declaration.attachments`) in the order they were attached."""
    return sorted(attachments.values(), key=lambda entry: (entry["version"], entry["sha256"]))


def wco_references(parent: etree._Element, namespace: str, documents: Iterable[Mapping[str, Any]]) -> None:
    """Append one WCO `AdditionalDocument` (CategoryCode HUB, ID the SHA-256, TypeCode ZZZ) per document."""
    for document in documents:
        element = etree.SubElement(parent, f"{{{namespace}}}AdditionalDocument")
        for name, value in (("CategoryCode", HUB_CATEGORY), ("ID", document["sha256"]),
                            ("TypeCode", HUB_DOCUMENT_TYPE)):
            etree.SubElement(element, f"{{{namespace}}}{name}").text = value


def add_references(parent: etree._Element, namespace: str, documents: Iterable[Mapping[str, Any]]) -> None:
    """Append one `SupportingDocument` per document to `parent`, in `namespace`:
    `<SupportingDocument><SHA256/><FileName/><MediaType/><Size/></SupportingDocument>`."""
    for document in documents:
        element = etree.SubElement(parent, f"{{{namespace}}}SupportingDocument")
        for name, value in (("SHA256", document["sha256"]), ("FileName", _one_line(document["filename"])),
                            ("MediaType", document["media_type"]), ("Size", str(document["size"]))):
            etree.SubElement(element, f"{{{namespace}}}{name}").text = value


def _one_line(text: str) -> str:
    """A file name as the schemas take it: one line, single spaces, at most 255 characters."""
    return " ".join(text.split())[:255].rstrip() or "document"
