"""Release certificates on the web: the printable page, its PDF, and the public verification page.

The certificate and its PDF are for whoever may see the declaration (tradehub/certificates.py decides what it
shows, tradehub/visibility.py who may see it). `/verify/{code}` is the one page that needs no session: it is
what a QR code on a printed certificate opens. It shows the reference, the current status and the release time,
nothing else; every code the hub did not issue gets the same 404, whatever is wrong with it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from tradehub import certificates, visibility
from tradehub.api.problems import problem
from tradehub.auth import Caller
from tradehub.certificates import Certificate, InvalidCode, NotReleased

from .pages import SECURITY_HEADERS, PageError, Pages, SignedIn, Site, refused_page

router = APIRouter(include_in_schema=False)

NOT_A_CODE = "This is not a valid certificate code. Check that it was copied whole, or scan the QR code again."


def certificate_of(request: Request, pages: Pages, who: Caller, declaration_id: str) -> Certificate:
    """The certificate, or the page that says why there is none: 404 as for the declaration, 409 if not released."""
    try:
        return certificates.certificate_for(pages.hub, who, declaration_id, request_base=str(request.base_url))
    except visibility.Refused as refused:
        raise refused_page(refused, who, declaration_id) from None
    except NotReleased as error:
        title = "Not released yet" if error.status in ("submitted", "in_progress", "held") else "Not released"
        message = str(error)
        raise PageError(409, title, f"{message[:1].upper()}{message[1:]}.", who) from None


@router.get("/declarations/{declaration_id}/certificate")
def certificate_page(declaration_id: str, request: Request, who: SignedIn, pages: Site) -> Response:
    certificate = certificate_of(request, pages, who, declaration_id)
    return pages.render("certificate.html", who, certificate=certificate,
                        qr=Markup(certificates.qr_svg(certificate.verify_url)),  # noqa: S704 segno escapes its text
                        pdf=certificates.certificate_path(certificate.declaration_id, pdf=True))


@router.get("/declarations/{declaration_id}/certificate.pdf")
def certificate_pdf(declaration_id: str, request: Request, who: SignedIn, pages: Site) -> Response:
    certificate = certificate_of(request, pages, who, declaration_id)
    return pdf_response(certificate)


def pdf_response(certificate: Certificate) -> Response:
    """The PDF, to open in the browser's viewer or save under the reference's name."""
    return Response(certificates.pdf(certificate), media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{certificates.filename(certificate)}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@router.get("/verify/{code:path}")  # any text, even with a slash, gets the one answer
def verify(code: str, request: Request, pages: Site) -> Response:
    """Public: is this a certificate the hub issued, and what is its declaration's status now?"""
    wants_json = _prefers_json(request.headers.get("accept", ""))
    try:
        found: dict[str, Any] | None = certificates.verification(pages.hub, code)
    except InvalidCode:
        found = None
    if wants_json:
        if found is None:
            return problem(404, "not-found", "Not a valid certificate code", NOT_A_CODE, headers=SECURITY_HEADERS)
        return JSONResponse(found, headers=SECURITY_HEADERS)
    return pages.render("verify.html", None, 200 if found is not None else 404, found=found, detail=NOT_A_CODE)


def _prefers_json(accept: str) -> bool:
    """JSON when the client asks for it over HTML; a browser's Accept names text/html first."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "application/json" in kinds and ("text/html" not in kinds
                                            or kinds.index("application/json") < kinds.index("text/html"))
