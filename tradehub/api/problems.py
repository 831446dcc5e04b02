"""RFC 9457 problem details: every error the API returns has this shape."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    path: str
    message: str
    cell: str | None = Field(default=None, description="for a spreadsheet upload: the sheet and cell, e.g. Crew!D7")


class Problem(BaseModel):
    """An error: `type` identifies the kind, `detail` says what happened here."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str = ""
    errors: list[FieldProblem] | None = None


class ProblemError(Exception):
    """Raised by a route to answer with a problem."""

    def __init__(self, status: int, slug: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.slug, self.title, self.detail, self.extra = status, slug, title, detail, extra


def problem(status: int, slug: str, title: str, detail: str = "",
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:tradehub:problem:{slug}", "title": title, "status": status, "detail": detail,
            **{key: value for key, value in extra.items() if value is not None}}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these problem statuses."""
    titles = {
        400: "Malformed JSON", 401: "Missing or invalid bearer token",
        403: "Not allowed for this caller", 404: "No such declaration for this caller",
        409: "Conflict with the stored declaration", 413: "Request body too large",
        422: "Invalid request: every failing field by JSON path",
    }
    return {status: {"model": Problem, "description": titles[status],
                     "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}
