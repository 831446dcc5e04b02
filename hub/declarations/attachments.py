"""Supporting documents: what the hub records of a file attached to a declaration (docs/api.md).

The bytes are judged (by content, never by name) and stored outside the log by
the entry points (tradehub/api/attachments.py, projections/attachments.py);
what reaches the aggregate is checked here once more, so that no caller, the
API or a script, can record a document the hub would not have accepted: a
SHA-256 in lower-case hex, a clean file name, one of the four media types and
a size within the limit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .domainmodel import MAX_ATTACHMENTS

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024  # 10 MB: the largest document the hub takes
MAX_FILENAME_CHARACTERS = 255
# What the hub takes, by media type, with the extension a download is named with when the upload gave no name.
MEDIA_TYPES = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png", "application/xml": "xml"}

_SHA256 = re.compile(r"[0-9a-f]{64}")

__all__ = ["MAX_ATTACHMENTS", "MAX_DOCUMENT_BYTES", "MEDIA_TYPES", "AttachmentInvalid", "Attachment",
           "clean_filename", "checked_attachment"]


class AttachmentInvalid(ValueError):
    """A document the hub cannot record; `field` names what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Attachment:
    """One document as the aggregate records it (`Declaration.attach_document`)."""

    sha256: str
    filename: str
    media_type: str
    size: int
    attached_by: str
    attached_at: str

    def fields(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "filename": self.filename, "media_type": self.media_type, "size": self.size,
                "attached_by": self.attached_by, "attached_at": self.attached_at}


def clean_filename(name: str | None, sha256: str, media_type: str) -> str:
    """The name a document is kept and offered under: the last path component of what the client sent, in NFC,
    without control characters, quotes or backslashes, at most 255 characters (keeping the extension); the hash
    and the media type's extension when nothing is left."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in text if char not in "\"'`")
    text = " ".join(text.split()).strip(" .")
    if len(text) > MAX_FILENAME_CHARACTERS:
        stem, dot, extension = text.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            text = stem[:MAX_FILENAME_CHARACTERS - len(extension) - 1].rstrip() + "." + extension
        else:
            text = text[:MAX_FILENAME_CHARACTERS].rstrip()
    return text or f"{sha256}.{MEDIA_TYPES.get(media_type, 'bin')}"


def checked_attachment(sha256: str, filename: str, media_type: str, size: int, attached_by: str,
                       attached_at: str) -> Attachment:
    """The attachment's fields, checked; `AttachmentInvalid` names the first one at fault."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise AttachmentInvalid("sha256", "must be a SHA-256 digest: 64 lower-case hex digits")
    if media_type not in MEDIA_TYPES:
        raise AttachmentInvalid("media_type", f"must be one of {', '.join(MEDIA_TYPES)}, got {media_type!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_DOCUMENT_BYTES:
        raise AttachmentInvalid("size", f"must be 1 to {MAX_DOCUMENT_BYTES} bytes, got {size!r}")
    if not isinstance(filename, str):
        raise AttachmentInvalid("filename", "must be text")
    cleaned = clean_filename(filename, sha256, media_type)
    if not isinstance(attached_by, str) or not attached_by.strip() or len(attached_by) > 70:
        raise AttachmentInvalid("attached_by", "must be 1 to 70 characters")
    if not isinstance(attached_at, str) or not attached_at:
        raise AttachmentInvalid("attached_at", "must be an ISO 8601 time")
    return Attachment(sha256, cleaned, media_type, size, attached_by.strip(), attached_at)
