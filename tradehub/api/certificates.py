"""/v1/declarations/{id}/certificate: a released declaration's certificate as PDF (tradehub/certificates.py).

The same visibility as the declaration itself: 404 for an unknown id and for one the caller may not see.
A declaration that is not released has no certificate yet: 409, saying its status.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tradehub import certificates
from tradehub.certificates import NotReleased

from .common import Authenticated, State
from .problems import ProblemError, documented

router = APIRouter(tags=["declarations"])


@router.get("/v1/declarations/{declaration_id}/certificate", response_class=Response,
            responses={200: {"description": "The release certificate (A4), with its verification code and QR code",
                             "content": {"application/pdf": {}}},
                       **documented(401, 404, 409)})
async def certificate(declaration_id: str, request: Request, api: State, who: Authenticated) -> Response:
    """The release certificate of a released declaration, as a PDF; 409 while it is not released."""
    try:
        found = await api.offload(certificates.certificate_for, api.hub, who, declaration_id,
                                  request_base=str(request.base_url))
    except NotReleased as error:
        raise ProblemError(409, "not-released", "Not released", str(error),
                           declaration_status=error.status) from None
    data = await api.offload(certificates.pdf, found)
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{certificates.filename(found)}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
