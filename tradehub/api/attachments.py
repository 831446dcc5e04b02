"""/v1/declarations/{id}/documents: attach supporting documents to a declaration, list and download them.

- Attaching (multipart/form-data, one file in the field `file`) is for whoever may change the declaration
  (tradehub/visibility.py: the declarant, an admin). The file is at most 10 MB, judged by its content
  (adapters/attachments.py: PDF, JPEG, PNG or XML through the hub's XML gate), stored by its SHA-256
  (projections/attachments.py), then recorded on the declaration (`DocumentAttached`): 20 per declaration,
  the same content twice is one document.
- Listing and downloading are for whoever may see the declaration; anyone else gets 404, as for the
  declaration itself. A download is always `Content-Disposition: attachment` with `nosniff` and a sandboxing
  Content-Security-Policy, so no document is ever rendered by a browser as part of the hub.

Limits are checked before anything is stored: a body over the route's cap is cut off by the API's
middleware (`UPLOAD_LIMIT`), a file over 10 MB is refused whole, and so is a declaration that cannot take it.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.attachments import Unacceptable, documents_in_order, judge
from hub.declarations import Declaration
from hub.declarations.attachments import MAX_DOCUMENT_BYTES, AttachmentInvalid, clean_filename
from hub.declarations.domainmodel import MAX_ATTACHMENTS, DeclarationClosed, TooManyAttachments
from projections.attachments import DocumentMissing, DocumentStore, DocumentStoreError

from .common import Authenticated, State, answer
from .problems import ProblemError, documented

router = APIRouter(tags=["documents"])

FIELD = "file"
# The body of an upload may exceed the file by its multipart framing: boundaries, part headers, a long name.
MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_LIMIT = MAX_DOCUMENT_BYTES + MULTIPART_OVERHEAD
# The one route whose body may be larger than TRADEHUB_MAX_BODY_BYTES (tradehub/api/middleware.py).
UPLOAD_ROUTE = ("POST", re.compile(r"/v1/declarations/[^/]+/documents/?"))


class AttachmentResource(BaseModel):
    sha256: str = Field(description="the SHA-256 of the content, in hex: the document's address")
    filename: str = Field(description="the name it was uploaded under, cleaned (no path, no control characters)")
    media_type: str = Field(description="judged from the content: application/pdf, image/jpeg, image/png or "
                                        "application/xml")
    size: int = Field(description="bytes")
    attached_by: str
    attached_at: str
    version: int = Field(description="the declaration version its DocumentAttached event made")
    href: str = Field(description="where to download it")


class AttachmentList(BaseModel):
    declaration_id: str
    documents: list[AttachmentResource]
    limit: int = Field(description="how many documents a declaration may have")


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary",
                           "description": "a PDF, JPEG, PNG or XML file of at most 10 MB"}}}}}}}


@router.post("/v1/declarations/{declaration_id}/documents", status_code=201, response_model=AttachmentResource,
             responses={200: {"model": AttachmentResource, "description": "This content was already attached"},
                        415: {"description": "Not a PDF, JPEG, PNG or XML file, judged by its content"},
                        503: {"description": "The document store cannot be reached now"},
                        **documented(400, 401, 403, 404, 409, 413, 422)},
             openapi_extra=_UPLOAD_BODY)
async def attach(declaration_id: str, request: Request, api: State, who: Authenticated) -> Response:
    """Attach a supporting document (multipart/form-data, the file in field `file`); 201, or 200 if this content
    is already attached to the declaration."""
    declaration = await api.offload(api.see.to_change, who, declaration_id)
    filename, data = await _the_file(request)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ProblemError(413, "too-large", "Document too large",
                           f"a document may have {MAX_DOCUMENT_BYTES} bytes; this one has {len(data)}",
                           errors=[{"path": FIELD, "message": f"at most {MAX_DOCUMENT_BYTES} bytes"}])
    try:
        media_type = judge(data, limit=MAX_DOCUMENT_BYTES)
    except Unacceptable as error:
        slug, title = ("unsupported-media-type", "Unsupported document type") if error.status == 415 else \
            ("invalid-request", "Invalid document")
        raise ProblemError(error.status, slug, title, error.message,
                           errors=[{"path": FIELD, "message": error.message}]) from None
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 in declaration.attachments:
        return answer(_resource(declaration, declaration.attachments[sha256]), 200)
    _refuse_early(declaration)  # nothing stored for a declaration that cannot take it
    store = _store(api)
    try:
        await api.offload(store.put, sha256, io.BytesIO(data), len(data), media_type)
    except DocumentStoreError as error:
        raise ProblemError(503, "unavailable", "Document store unavailable", str(error)) from None
    name = clean_filename(filename, sha256, media_type)
    attached_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    try:
        declaration = await api.offload(api.hub.declarations.attach_document, declaration.id, sha256, name,
                                        media_type, len(data), who.subject[:70], attached_at)
    except AttachmentInvalid as error:
        raise ProblemError(422, "invalid-request", "Invalid document",
                           errors=[{"path": error.field, "message": error.message}]) from None
    except TooManyAttachments as error:
        raise _too_many(str(error)) from None
    entry = declaration.attachments[sha256]
    created = entry["version"] == declaration.version and entry["attached_at"] == attached_at
    return answer(_resource(declaration, entry), 201 if created else 200,
                  {"Location": _href(declaration.id, sha256)})


@router.get("/v1/declarations/{declaration_id}/documents", response_model=AttachmentList,
            responses=documented(401, 404))
def list_documents(declaration_id: str, api: State, who: Authenticated) -> Response:
    """The declaration's supporting documents, in the order they were attached."""
    declaration = api.see.declaration(who, declaration_id).declaration
    documents = [_resource(declaration, entry) for entry in documents_in_order(declaration.attachments)]
    return answer({"declaration_id": str(declaration.id), "documents": documents, "limit": MAX_ATTACHMENTS})


@router.get("/v1/declarations/{declaration_id}/documents/{sha256}",
            responses={200: {"description": "The document's bytes", "content": {
                "application/pdf": {}, "image/jpeg": {}, "image/png": {}, "application/xml": {}}},
                503: {"description": "The document store cannot be reached now"}, **documented(401, 404)})
def download(declaration_id: str, sha256: str, api: State, who: Authenticated) -> Response:
    """One document, as it was attached: its media type, always as a download."""
    declaration = api.see.declaration(who, declaration_id).declaration
    entry = declaration.attachments.get(sha256)
    if entry is None:
        raise ProblemError(404, "not-found", "No such document",
                           f"declaration {declaration_id} has no document {sha256[:64]}")
    try:
        chunks = _store(api).open(sha256)
    except DocumentMissing:
        raise ProblemError(503, "unavailable", "Document missing from the store",
                           f"document {sha256} is recorded but its bytes are not in the store") from None
    except DocumentStoreError as error:
        raise ProblemError(503, "unavailable", "Document store unavailable", str(error)) from None
    return StreamingResponse(chunks, media_type=entry["media_type"], headers=download_headers(entry))


def download_headers(entry: dict[str, Any]) -> dict[str, str]:
    """Headers that make a browser save the document, never render it within the hub's origin."""
    name = entry["filename"]
    fallback = "".join(char if 32 <= ord(char) < 127 and char not in '"\\;' else "_" for char in name)
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
        "Content-Length": str(entry["size"]),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
        "ETag": f"\"{entry['sha256']}\"",
    }


async def _the_file(request: Request) -> tuple[str, bytes]:
    """The one file of the multipart body, whole (at most `UPLOAD_LIMIT` bytes reach here): its name, its bytes."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ProblemError(415, "unsupported-media-type", "Multipart expected",
                           "send the document as multipart/form-data, in the field `file`",
                           errors=[{"path": FIELD, "message": "send multipart/form-data with the file in `file`"}])
    try:
        form = await request.form(max_files=1, max_fields=0, max_part_size=1024)
    except StarletteHTTPException as error:
        raise ProblemError(422, "invalid-request", "Invalid multipart body", str(error.detail),
                           errors=[{"path": FIELD, "message": f"{error.detail} Send one file, in `file`."}]) from None
    try:
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise ProblemError(422, "invalid-request", "No document",
                               errors=[{"path": FIELD, "message": "missing: send one file in the field `file`"}])
        data = await upload.read(MAX_DOCUMENT_BYTES + 1)  # one byte more tells a file over the limit
        return upload.filename or "", data
    finally:
        await form.close()


def _refuse_early(declaration: Declaration) -> None:
    """The declaration's own refusals, before the bytes are stored (the aggregate decides again on save)."""
    if declaration.withdrawn:
        raise DeclarationClosed("a withdrawn declaration takes no documents")
    if len(declaration.attachments) >= MAX_ATTACHMENTS:
        raise _too_many(f"a declaration takes at most {MAX_ATTACHMENTS} documents; "
                        f"this one has {len(declaration.attachments)}")


def _too_many(detail: str) -> ProblemError:
    return ProblemError(409, "too-many-documents", "Too many documents", detail,
                        errors=[{"path": FIELD, "message": f"at most {MAX_ATTACHMENTS} documents per declaration"}])


def _store(api: Any) -> DocumentStore:
    store = api.hub.documents
    if store is None:
        raise ProblemError(503, "unavailable", "No document store", "this hub was built without a document store")
    return store


def _href(declaration_id: Any, sha256: str) -> str:
    return f"/v1/declarations/{declaration_id}/documents/{sha256}"


def _resource(declaration: Declaration, entry: dict[str, Any]) -> dict[str, Any]:
    return {**{key: entry[key] for key in ("sha256", "filename", "media_type", "size", "attached_by",
                                           "attached_at", "version")},
            "href": _href(declaration.id, entry["sha256"])}
