"""Declaration documents as traders submit them, and their validation.

`validate_document` takes the parsed JSON and returns the canonical document,
or raises `InvalidDeclaration` listing every failing field by JSON path.
Models are strict: no field outside the models (docs/api.md), no coercion of `false` to a
number, and quantities as decimal strings so nothing is lost to floats.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from . import values
from .licence import ISSUERS, LICENCE_TYPES

KINDS = ("goods", "vessel_call")
DOCUMENT_TYPES = (
    "certificate_of_origin", "health_certificate", "phytosanitary_certificate",
    "veterinary_certificate", "import_licence", "export_licence", "commercial_invoice",
    "packing_list", "dangerous_goods_declaration", "other",
)
TRANSPORT_MODES = ("sea", "rail", "road", "air", "postal", "fixed_installation", "inland_waterway")
# How many entries each list may hold, and the longest free text. The largest legal declaration's largest agency
# message, signed, must fit the broker's payload limit (messaging.broker.MAX_PAYLOAD_BYTES, 16 MiB): the
# standards' own caps where they fit (999 goods items: WCO), lower ones where they do not, since one
# container, document or person costs up to 140, 260 and 1,670 bytes of XML, and each licence an item cites up to
# 1,020 (10 per item: 10.2 MB of the largest customs message's 16.18 MB). docs/dispatch.md has the sums.
LIMITS = {"items": 999, "containers": 9999, "documents": 999, "crew": 4999, "passengers": 9999,
          "dangerous_goods": 999, "description": 512, "licences": 10}


class FieldError(NamedTuple):
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidDeclaration(ValueError):
    """The document fails validation; `errors` names every failing field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def _text(max_length: int):
    return AfterValidator(lambda value: values.text(value, max_length))


def _decimal(**limits: Any):
    return AfterValidator(lambda value: values.decimal_string(value, **limits))


Name = Annotated[str, _text(70)]
Address = Annotated[str, _text(70)]  # one WCO Address Line (an..70); filled from the business register
Reference = Annotated[str, _text(35)]
Description = Annotated[str, _text(LIMITS["description"])]
Country = Annotated[str, AfterValidator(values.country)]
Locode = Annotated[str, AfterValidator(values.locode)]
Uscc = Annotated[str, AfterValidator(values.uscc)]
ImoNumber = Annotated[str, AfterValidator(values.imo_number)]
ContainerNumber = Annotated[str, AfterValidator(values.container_number)]
UnNumber = Annotated[str, AfterValidator(values.un_number)]
Mass = Annotated[str, _decimal()]
Quantity = Annotated[str, _decimal(positive=True)]
Money = Annotated[str, _decimal(max_places=3)]
BirthDate = Annotated[str, AfterValidator(lambda v: values.calendar_date(v, latest=date.today()))]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Declarant(_Strict):
    id: Uscc
    name: Name
    address: Address | None = None


class Party(_Strict):
    country: Country
    name: Name
    id: str | None = None
    address: Address | None = None

    @field_validator("id")
    @classmethod
    def _id_fits_country(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("country") == "CN":
            return values.uscc(value)
        return values.text(value, 17)  # WCO party identifiers are an..17 (the EORI length)


class Document(_Strict):
    type: Literal[DOCUMENT_TYPES]  # type: ignore[valid-type]
    number: Reference


VesselName = Annotated[str, _text(35)]  # as WCO transport means and FAL forms carry it


class Vessel(_Strict):
    imo: ImoNumber
    name: VesselName
    voyage: Reference


class Transport(_Strict):
    mode: Literal[TRANSPORT_MODES]  # type: ignore[valid-type]
    vessel: Vessel | None = Field(default=None, validate_default=True)
    bill_of_lading: Reference | None = Field(default=None, validate_default=True)

    @field_validator("vessel", "bill_of_lading")
    @classmethod
    def _required_by_sea(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("mode") == "sea":
            raise ValueError("is required for sea transport")
        return value


class Citation(_Strict):
    """A licence or certificate a goods item is declared under, and how much of it the item uses."""

    number: Reference
    quantity: Quantity
    unit: Annotated[str, AfterValidator(values.unit)]
    issuer: Literal[ISSUERS] | None = None  # type: ignore[valid-type]  # needed only where numbers collide


def _cited(citation: Citation) -> str:
    return f"licence {citation.number}" + (f" of {citation.issuer}" if citation.issuer else "")


class Item(_Strict):
    hs_code: Annotated[str, AfterValidator(values.hs_code)]
    description: Description
    origin: Country
    quantity: Quantity
    unit: Annotated[str, AfterValidator(values.unit)]
    gross_kg: Mass
    net_kg: Mass
    value: Money
    currency: Annotated[str, AfterValidator(values.currency)]
    un_number: UnNumber | None = None
    # Absent rather than empty when none is cited, so documents declared before licences keep their hashes.
    licences: Annotated[
        list[Citation], Field(min_length=1, max_length=LIMITS["licences"]),
        AfterValidator(lambda cited: _unique(cited, _cited)),
    ] | None = None

    @field_validator("net_kg")
    @classmethod
    def _net_within_gross(cls, value: str, info: ValidationInfo) -> str:
        gross = info.data.get("gross_kg")
        if gross is not None and values.decimal(value) > values.decimal(gross):
            raise ValueError(f"net mass {value} kg exceeds gross mass {gross} kg")
        return value


def _unique(entries: list[Any], key=lambda entry: entry) -> list[Any]:
    seen = set()
    for entry in entries:
        if key(entry) in seen:
            raise ValueError(f"{key(entry)} is listed twice")
        seen.add(key(entry))
    return entries


class GoodsDeclaration(_Strict):
    """An import or export goods declaration, for customs and inspection at once."""

    kind: Literal["goods"]
    reference: Reference
    direction: Literal["import", "export"]
    declarant: Declarant
    consignor: Party
    consignee: Party
    customs_office: Annotated[str, AfterValidator(values.customs_office)]
    port_of_loading: Locode
    port_of_discharge: Locode
    transport: Transport
    # WCO numbers containers and documents with a SequenceNumeric of n..5, but 99,999 of them would not fit a
    # message; the port's replies name at most 9,999 containers (xsd/port/replies.xsd).
    containers: Annotated[list[ContainerNumber], Field(max_length=LIMITS["containers"]), AfterValidator(_unique)] = []
    items: Annotated[list[Item], Field(min_length=1, max_length=LIMITS["items"])]
    documents: Annotated[
        list[Document], Field(max_length=LIMITS["documents"]),
        AfterValidator(lambda docs: _unique(docs, lambda d: f"{d.type} {d.number}")),
    ] = []

    @field_validator("port_of_discharge")
    @classmethod
    def _discharge_elsewhere(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("port_of_loading"):
            raise ValueError(f"is the same as the port of loading ({value})")
        return value


class CallVessel(_Strict):
    imo: ImoNumber
    name: VesselName
    call_sign: Annotated[str, AfterValidator(values.call_sign)]
    flag: Country


class IdentityDocument(_Strict):
    type: Literal["passport", "seafarer_id", "identity_card", "other"]
    number: Reference


class Person(_Strict):
    family_name: Name
    given_names: Name
    nationality: Country
    date_of_birth: BirthDate
    document: IdentityDocument


class CrewMember(Person):
    rank: Name


class Passenger(Person):
    port_of_embarkation: Locode | None = None
    port_of_disembarkation: Locode | None = None


class DangerousGoods(_Strict):
    un_number: UnNumber
    imdg_class: Annotated[str, AfterValidator(values.imdg_class)]
    description: Description
    packing_group: Literal["I", "II", "III"] | None = None
    gross_kg: Mass | None = None
    container: ContainerNumber | None = None


class VesselCall(_Strict):
    """A ship's arrival at or departure from a port of call."""

    kind: Literal["vessel_call"]
    reference: Reference
    direction: Literal["arrival", "departure"]
    declarant: Declarant
    vessel: CallVessel
    voyage: Reference
    port_of_call: Locode
    eta: str | None = Field(default=None, validate_default=True)
    etd: str | None = Field(default=None, validate_default=True)
    last_port: Locode | None = None
    next_port: Locode | None = None
    # FAL forms 5 and 6 set no number; the border's lists must each fit one message (docs/dispatch.md).
    crew: Annotated[list[CrewMember], Field(min_length=1, max_length=LIMITS["crew"])]
    passengers: Annotated[list[Passenger], Field(max_length=LIMITS["passengers"])] = []
    # Customs gets each entry as a WCO goods item, of which a declaration holds at most 999.
    dangerous_goods: Annotated[list[DangerousGoods], Field(max_length=LIMITS["dangerous_goods"])] = []

    @field_validator("eta", "etd")
    @classmethod
    def _times(cls, value: str | None, info: ValidationInfo) -> str | None:
        needed = {"eta": "arrival", "etd": "departure"}[info.field_name]
        if value is None:
            if info.data.get("direction") == needed:
                raise ValueError(f"is required for an {needed}")
            return None
        moment = values.timestamp(value)
        eta = info.data.get("eta")
        if info.field_name == "etd" and eta is not None and moment <= values.timestamp(eta):
            raise ValueError(f"must be after the ETA ({eta})")
        return value


_MODELS: dict[str, type[_Strict]] = {"goods": GoodsDeclaration, "vessel_call": VesselCall}


def validate_document(raw: Any) -> dict[str, Any]:
    """Check a submitted document; return its canonical JSON form."""
    if not isinstance(raw, dict):
        raise InvalidDeclaration([FieldError("$", "must be a JSON object")])
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in _MODELS:
        message = "is required" if kind is None else f"must be one of {', '.join(map(repr, KINDS))}"
        raise InvalidDeclaration([FieldError("$.kind", message)])
    try:
        model = _MODELS[kind].model_validate(raw)
    except PydanticValidationError as error:
        raise InvalidDeclaration([_field_error(e) for e in error.errors()]) from None
    return model.model_dump(mode="json", exclude_none=True)


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8): equal documents, equal hashes."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def json_path(location: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location)


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
}


def _field_error(error: dict[str, Any]) -> FieldError:
    kind, context = error["type"], error.get("ctx", {})
    if kind == "string_type" and isinstance(error["input"], int | float) and not isinstance(
        error["input"], bool
    ):
        message = f'must be a string: write {error["input"]} as "{error["input"]}"'
    elif kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind == "value_error":
        message = str(context["error"])
    elif kind == "literal_error":
        message = f"must be one of {context['expected']}"
    elif kind == "too_short":
        count = context["min_length"]
        message = "must not be empty" if count == 1 else f"must have at least {count} entries"
    elif kind == "too_long":
        message = (f"must have at most {context['max_length']} entries: every agency's message of a declaration"
                   " must fit the broker's payload limit")
    else:
        message = error["msg"]
    return FieldError(json_path(error["loc"]), message)


class MalformedJSON(ValueError):
    """The bytes are not one JSON document; the message names the line and column or byte."""


def load_json(data: bytes) -> Any:
    """Parse UTF-8 JSON strictly: no duplicate keys, no NaN or Infinity."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MalformedJSON(f"byte {error.start} (0x{data[error.start]:02x}) is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise MalformedJSON(f"line {error.lineno}, column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise MalformedJSON("arrays or objects are nested too deeply") from None
    except MalformedJSON:
        raise
    except ValueError:  # an integer beyond Python's digit limit (4300)
        raise MalformedJSON("a number has too many digits") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedJSON(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise MalformedJSON(f"{name} is not a JSON number")


# ---- licences and certificates (docs/licences.md) ---------------------------------------

HsPrefix = Annotated[str, AfterValidator(lambda value: values.hs_prefix(value))]
IsoDate = Annotated[str, AfterValidator(lambda value: values.calendar_date(value, earliest=date(2000, 1, 1)))]


class LicenceFields(_Strict):
    """A licence as an issuer states it: what its signature covers."""

    number: Reference
    type: Literal[LICENCE_TYPES]  # type: ignore[valid-type]
    issuer: Literal[ISSUERS]  # type: ignore[valid-type]
    holder: Uscc
    hs_scope: Annotated[list[HsPrefix], Field(min_length=1, max_length=100), AfterValidator(_unique)]
    quantity: Quantity
    unit: Annotated[str, AfterValidator(values.unit)]
    valid_from: IsoDate
    valid_to: IsoDate

    @field_validator("valid_to")
    @classmethod
    def _after_start(cls, value: str, info: ValidationInfo) -> str:
        start = info.data.get("valid_from")
        if start is not None and value < start:
            raise ValueError(f"is before valid_from ({start})")
        return value


class InvalidLicence(ValueError):
    """A licence with fields the hub cannot take; `errors` names every one."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def validate_licence(raw: Any) -> dict[str, Any]:
    """Check a licence's fields (no others: the signature and who issued it travel beside them)."""
    if not isinstance(raw, dict):
        raise InvalidLicence([FieldError("$", "must be a JSON object")])
    try:
        return LicenceFields.model_validate(raw).model_dump(mode="json")
    except PydanticValidationError as error:
        raise InvalidLicence([_field_error(e) for e in error.errors()]) from None
