"""The shapes the API documents: request and response models, and the OpenAPI document built from them.

Handlers answer with plain JSON (orjson) and the request envelopes are
validated by hand; these models document the shapes and the tests check them.
The HTTP API's reference is docs/api.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from hub.declarations import AGENCIES
from hub.declarations.documents import GoodsDeclaration, VesselCall
from hub.declarations.values import text

from .problems import Problem


class AgencyState(BaseModel):
    status: str
    routed: bool
    reason: str
    code: str = ""
    text: str = ""
    updated_at: str = ""


class Hold(BaseModel):
    since: datetime | None = Field(description="since when the declaration has been held without a break")
    note: str = Field(description="always the neutral `held for control`; officers find the alerts in `holds`")


class DispatchFailure(BaseModel):
    version: int = Field(description="the version whose message(s) failed; later ones wait behind it")
    reason: str
    since: str


class DeclarationResource(BaseModel):
    id: UUID
    reference: str
    kind: Literal["goods", "vessel_call"]
    declarant: str
    version: int
    status: str
    agencies: dict[str, AgencyState]
    holds: list[str] = Field(description="the ids of the alerts holding it; empty for a trader (I5)")
    hold: Hold | None = Field(description="set while the declaration is held, for everyone who sees it")
    submitted_at: datetime
    updated_at: datetime
    document: dict[str, Any]
    dispatch_failures: dict[str, DispatchFailure] = Field(
        default_factory=dict, description="agency -> why the hub cannot send it this declaration's messages now; "
                                          "they wait and are retried (docs/dispatch.md)")


class DeclarationSummary(BaseModel):
    id: UUID
    reference: str
    kind: str
    declarant: str
    version: int
    status: str
    agencies: dict[str, dict[str, str]]
    submitted_at: datetime
    updated_at: datetime
    released_at: datetime | None


class DeclarationPage(BaseModel):
    items: list[DeclarationSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    version: int
    time: datetime
    note: str = Field(default="", description="for a trader, what an enforcement event did, in place of its "
                                              "details (`held for control`)")


class History(BaseModel):
    declaration_id: UUID
    events: list[HistoryEvent]


class AgencyMessage(BaseModel):
    direction: Literal["outbound", "inbound"]
    agency: Literal[AGENCIES]  # type: ignore[valid-type]
    message_id: str
    type: str = Field(description="what the message is, e.g. declaration, fal5, release-notice")
    time: datetime = Field(description="the event's time for outbound messages")
    version: int = Field(description="the declaration version the message reports")
    body: str | None = Field(description="the XML, as sent; null if the hub cannot open its sealed copy")
    body_error: str | None = Field(None, description="why the body is null: the sealed copy does not open "
                                                     "under this TRADEHUB_CIPHER_KEY, or was changed")


class AgencyMessages(BaseModel):
    declaration_id: UUID
    messages: list[AgencyMessage]


class Strict(BaseModel):  # a request envelope: exact types, no unknown fields
    model_config = ConfigDict(strict=True, extra="forbid")


class AlertRequest(Strict):
    subject_kind: Literal["party", "vessel", "container"] = Field(
        description="party: a USCC; vessel: an IMO number; container: an ISO 6346 number")
    subject: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=512)


class AlertResource(BaseModel):
    id: UUID
    subject_kind: str
    subject: str
    reason: str
    raised_by: str
    raised_at: datetime
    status: Literal["open", "cleared"]
    cleared_by: str = ""


class ExchangeRow(BaseModel):
    agency: str
    routed: bool
    status: str
    code: str
    text: str
    sent_at: datetime | None
    messages_sent: int
    acknowledged_at: datetime | None
    decided_at: datetime | None
    decision: str | None


class Flow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    type: str = Field(description="the message type carrying it: release-notice, recognition-notice, alert-notice, "
                                  "alert-cleared-notice")
    message: str
    time: datetime


class ExchangeView(BaseModel):
    declaration_id: UUID
    agencies: list[ExchangeRow]
    flows: list[Flow]


class Recognised(BaseModel):
    agency: str
    notified_at: datetime
    released_at: datetime | None
    saved: bool = Field(description="released on the recognised result without inspecting itself")


class InspectionRow(BaseModel):
    declaration_id: UUID
    reference: str
    agency: str = Field(description="the agency that inspected")
    result: Literal["pass", "fail"]
    inspected_at: str
    message_id: str
    findings: str
    recorded_at: datetime
    recognised_by: list[Recognised]


class RecognitionTotals(BaseModel):
    inspections: int
    recognitions: int
    inspections_saved: int
    documents_recognised: int = Field(description="documents cited on declarations that an agency recognises")


class RecognisedDocument(BaseModel):
    number: str
    issuer: str = Field(description="the agency that issued it")
    type: str | None = Field(description="the licence type, as the registry has it")
    items: list[int] = Field(description="the goods items citing it, 1-based")
    revoked_at: datetime | None = Field(description="when its issuer revoked it since, if it did")


class RecognisedDocuments(BaseModel):
    declaration_id: UUID
    reference: str
    version: int = Field(description="the declaration version citing them (its latest)")
    recognised_by: str = Field(description="the agency that takes them without a check of its own")
    cited_at: datetime
    documents: list[RecognisedDocument]


class RecognitionView(BaseModel):
    inspections: list[InspectionRow]
    documents: list[RecognisedDocuments] = Field(
        description="declarations citing licences or certificates issued by an agency whose results the "
                    "recipient recognises (docs/messages.md)")
    totals: RecognitionTotals


class HeldDeclaration(BaseModel):
    declaration_id: UUID
    reference: str
    held_at: datetime
    lifted_at: datetime | None


class AlertRow(AlertResource):
    cleared_at: datetime | None
    cleared_by: str | None = None
    declarations: list[HeldDeclaration]


class AlertsView(BaseModel):
    alerts: list[AlertRow]


class Clearance(BaseModel):
    count: int
    p50_seconds: float | None
    p90_seconds: float | None


class ClearanceTimes(BaseModel):
    overall: Clearance
    agencies: dict[str, Clearance]


class StatisticsView(BaseModel):
    by_status: dict[str, int]
    by_agency: dict[str, dict[str, int]]
    clearance: ClearanceTimes


class AmendmentRequest(Strict):
    expected_version: int = Field(ge=1)
    declaration: dict[str, Any]


class WithdrawalRequest(Strict):
    # Free text that travels in agency messages: one line, no control characters.
    reason: Annotated[str, AfterValidator(lambda value: text(value, 512))] = Field(min_length=1, max_length=512)
    expected_version: int | None = Field(default=None, ge=1)


DECLARATION_SCHEMA = TypeAdapter(GoodsDeclaration | VesselCall)


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            declaration = DECLARATION_SCHEMA.json_schema(ref_template="#/components/schemas/{model}")
            components.update(declaration.pop("$defs", {}))
            components["Declaration"] = declaration
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(components["Problem"].pop("$defs", {}))
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                                   "bearerFormat": "JWT"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
