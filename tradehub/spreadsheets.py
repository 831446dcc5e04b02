"""Declarations as spreadsheets: the .xlsx templates traders fill, and reading them back (docs/spreadsheets.md).

A workbook holds one declaration. Its header fields are a form (one field per
row: label in column A, value in column B) on the sheet "Declaration" (goods)
or "Call" (vessel calls); each list of the document is a sheet of its own with
a header row and one entry per row, as the EU maritime single window's
harmonised spreadsheets lay out the FAL lists (crew, passengers, dangerous
goods). `template(kind)` writes the empty workbook with an example row,
`fill(document)` writes a document into it, `read(data)` turns a workbook into
the JSON document (not yet checked by the hub), and `convert(data)` /
`to_declaration(data)` also run the hub's own `validate_document` and name
every failing field by its cell as well as its JSON path.

Reading takes cell types as spreadsheets really hold them: numbers arrive as
floats (an IMO number 9074729 as 9074729.0), dates as date cells or as text,
and codes typed as numbers have lost their leading zeros (which is said, not
guessed at). Formulas are refused: the value a formula shows is whatever the
program that last saved the file computed, and a file written by a script may
carry none at all, which would read as a silently blank cell.

The bytes are untrusted. Before python-calamine parses them, `_inspect`
checks that they are a zip of at most MAX_PARTS parts that inflate to at most
MAX_INFLATED bytes (measured by inflating, not taken from the zip's own
claims), and streams every listed sheet's part, wherever its relationship
puts it, through expat (linear time, no DOCTYPE): calamine builds a dense grid
from the first to the last cell, so one cell at XFD1048576 would ask it for
billions of cells; it reserves room for as many shared strings as the file
claims; and it copies a shared string into every cell that points at it. All
three would abort the process, not raise, so each is bounded first. A sheet
that was not inspected never reaches calamine, and at most MAX_CONVERSIONS
workbooks are in calamine at once.
"""

from __future__ import annotations

import io
import posixpath
import re
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from itertools import zip_longest
from typing import Any, NamedTuple
from urllib.parse import unquote
from xml.parsers import expat

from hub.declarations import InvalidDeclaration, validate_document
from hub.declarations.documents import DOCUMENT_TYPES, LIMITS, TRANSPORT_MODES, FieldError, json_path
from hub.declarations.licence import ISSUERS
from hub.declarations.values import IMDG_CLASSES, rec20_units

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_BYTES = 8 * 1024 * 1024  # the file itself; the API's body limit (TRADEHUB_MAX_BODY_BYTES) may be lower
MAX_INFLATED = 64 * 1024 * 1024  # all parts inflated: 10,000 passengers take about 4 MB
MAX_PARTS = 1000
MAX_ROWS = LIMITS["passengers"] + 101  # the longest list, its header row and some blank rows
MAX_COLUMNS = 40
MAX_SHARED_STRINGS = MAX_ROWS * MAX_COLUMNS
MAX_ERRORS = 200  # listed; the last one says how many more there were
KINDS = ("goods", "vessel_call")


class CellError(NamedTuple):
    """What is wrong, where in the workbook (`Crew!D7`) and where in the JSON document (`$.crew[4].date_of_birth`)."""

    cell: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.cell}: {self.message} ({self.path})"


class SpreadsheetInvalid(ValueError):
    """The workbook cannot be read, or the declaration in it fails validation; `errors` names each cell."""

    def __init__(self, errors: list[CellError]) -> None:
        if len(errors) > MAX_ERRORS:
            errors = [*errors[:MAX_ERRORS - 1],
                      CellError(errors[MAX_ERRORS - 1].cell, "$", f"and {len(errors) - MAX_ERRORS + 1} more errors")]
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def _refused(message: str, cell: str = "workbook") -> SpreadsheetInvalid:
    return SpreadsheetInvalid([CellError(cell, "$", message)])


# ---- the layout: which sheet, row and column holds which field ----------------------------------------------

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Column:
    """A field: its heading (a form's label, a list's column header), where it goes in the document, how a cell
    becomes its JSON value (`read`), the code list offered in the template, and a one-line note for the README."""

    heading: str
    path: Path
    read: Callable[[Any], Any]
    note: str
    codes: str | None = None
    example: Any = None

    @property
    def text_cell(self) -> bool:
        return self.read not in (_decimal, _date)


@dataclass(frozen=True)
class Form:
    """The declaration's header fields, one per row: label in column A, value in column B."""

    sheet: str
    fields: tuple[Column, ...]


@dataclass(frozen=True)
class Table:
    """A list of the document (`key`): a header row, then one entry per row."""

    sheet: str
    key: str
    columns: tuple[Column, ...]
    note: str
    # Licences belong to goods items: their first column is the item's number, not a field of the licence.
    owner: str | None = None


@dataclass(frozen=True)
class Layout:
    kind: str
    form: Form
    tables: tuple[Table, ...]


class Unreadable(ValueError):
    """A cell's value cannot be the field's; the message says what to type instead."""


# ---- from a cell's value to the field's JSON value ------------------------------------------------------------

def _number_text(value: float) -> str:
    """A float as the decimal a person typed: 9074729.0 is "9074729", and 15 significant digits are all a
    spreadsheet shows (0.30000000000000004 is "0.3")."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(Decimal(format(value, ".15g")), "f")


def _text(value: Any) -> str | None:
    """Free text: trimmed; a number is written as it shows (a voyage typed 118 is "118")."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        raise Unreadable(f"is {str(value).upper()}, a yes/no value: type the text instead")
    if isinstance(value, int | float):
        return _number_text(float(value))
    if isinstance(value, datetime | date | time | timedelta):
        raise Unreadable(f"is a date or time ({value}): format the cell as Text and type the value")
    raise Unreadable(f"cannot be read ({type(value).__name__})")


def _digits(*lengths: int, what: str) -> Callable[[Any], str | None]:
    """A code of digits whose leading zeros matter (HS code, UN number): typed as a number, they are gone."""

    def read(value: Any) -> str | None:
        text = _text(value)
        if text is None or isinstance(value, str):
            return text
        if len(text) not in lengths and any(len(text) < length for length in lengths):
            expected = " or ".join(map(str, lengths))
            padded = text.zfill(min(length for length in lengths if length > len(text)))
            raise Unreadable(f"not a valid {what}: it was typed as a number ({text}), so the spreadsheet dropped "
                             f"its leading zeros ({len(text)} digits, not {expected}); format the cell as Text and "
                             f"type it in full, e.g. {padded}")
        return text

    return read


def _identifier(value: Any) -> str | None:
    """A party identifier such as a USCC: text only; a number keeps 15 digits and no leading zeros."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise Unreadable(f"was typed as a number ({_number_text(float(value))}): a spreadsheet keeps only 15 "
                         "significant digits and no leading zeros, so an 18-character USCC cannot survive; format "
                         "the cell as Text and type the code")
    return _text(value)


def _decimal(value: Any) -> str | None:
    """A quantity, mass or amount: a number cell, or text written like 1250.50 (kept exactly as typed)."""
    if isinstance(value, str):
        return value.strip().replace("\u00a0", "").replace(" ", "") or None
    return _text(value)


_SLASHED = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _date(value: Any) -> str | None:
    """A calendar date: a date cell, or text YYYY-MM-DD. 04/03/2026 is refused: it is 4 March in Europe and
    April 3 in the United States."""
    if isinstance(value, datetime):
        if value.time() != time(0):
            raise Unreadable(f"not a valid date: the cell holds a time of day too ({value:%Y-%m-%d %H:%M})")
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise Unreadable(f"not a valid date: the cell holds the number {_number_text(float(value))}; format it "
                         "as a date, or type the date as text YYYY-MM-DD")
    text = _text(value)
    if text is not None and _SLASHED.fullmatch(text):
        raise Unreadable(f"not a valid date: {text!r} reads as different days in different countries; type "
                         "YYYY-MM-DD (e.g. 1979-03-14) or enter a date cell")
    return text


def _moment(value: Any) -> Any:
    """An ETA or ETD: text in ISO 8601 with its UTC offset, or a date-time cell (which gets the form's offset)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        raise Unreadable("not a valid date and time: the cell holds a date without a time of day")
    return _text(value)


_OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})")


def _offset(value: Any) -> str | None:
    text = _text(value)
    if text is not None and not _OFFSET.fullmatch(text.upper()):
        raise Unreadable(f"not a UTC offset: {text!r}; write it like +08:00, -05:00 or Z")
    return text and text.upper()


def _choice(*choices: str) -> Callable[[Any], str | None]:
    """One of a code list's values; case and spaces are forgiven ("Seafarer ID" is seafarer_id)."""
    known = {choice.casefold().replace("_", " "): choice for choice in choices}

    def read(value: Any) -> str | None:
        text = _text(value)
        if text is None:
            return None
        return known.get(" ".join(text.replace("_", " ").split()).casefold(), text)

    return read


def _item_number(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    text = _text(value)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise Unreadable(f"not an item number: {text!r}; give the item's row number on the Items sheet (1 is the "
                         "first item)")
    return int(text)


# ---- the two layouts ------------------------------------------------------------------------------------------

def _field(heading: str, path: str, read: Callable[[Any], Any], note: str, codes: str | None = None,
           example: Any = None) -> Column:
    return Column(heading, tuple(path.split(".")) if path else (), read, note, codes, example)


_hs = _digits(6, 8, 10, what="HS code")
_un = _digits(4, what="UN number")
_office = _digits(4, what="customs office code")
_CALL_DIRECTIONS = _choice("arrival", "departure")
_DOCUMENT_TYPE = _choice(*DOCUMENT_TYPES)
_IDENTITY = _choice("passport", "seafarer_id", "identity_card", "other")


def _person(example: tuple[str, str, str, date, str, str]) -> tuple[Column, ...]:
    family, given, nationality, born, document, number = example
    return (
        _field("Family name", "family_name", _text, "as in the passport or identity document", example=family),
        _field("Given names", "given_names", _text, "as in the passport or identity document", example=given),
        _field("Nationality", "nationality", _text, "ISO 3166-1 alpha-2 country code", "country", nationality),
        _field("Date of birth", "date_of_birth", _date, "a date cell, or text YYYY-MM-DD", example=born),
        _field("Identity document type", "document.type", _IDENTITY, "passport, seafarer_id, identity_card or other",
               "identity", document),
        _field("Identity document number", "document.number", _text, "up to 35 characters", example=number),
    )


def _party(role: str, path: str, example: tuple[str, str, str | None]) -> tuple[Column, ...]:
    name, country, identifier = example
    return (
        _field(f"{role} name", f"{path}.name", _text, "up to 70 characters", example=name),
        _field(f"{role} country", f"{path}.country", _text, "ISO 3166-1 alpha-2 country code", "country", country),
        _field(f"{role} ID", f"{path}.id", _identifier, "USCC (18 characters) if in China, else up to 17 "
               "characters (EORI); optional", example=identifier),
        _field(f"{role} address", f"{path}.address", _text, "one line, up to 70 characters; optional"),
    )


def _declarant(example: tuple[str, str]) -> tuple[Column, ...]:
    return (
        _field("Declarant USCC", "declarant.id", _identifier, "unified social credit code, 18 characters, as Text",
               example=example[0]),
        _field("Declarant name", "declarant.name", _text, "up to 70 characters (filled from the business register "
               "when it is on)", example=example[1]),
        _field("Declarant address", "declarant.address", _text, "one line, up to 70 characters; optional"),
    )


GOODS = Layout("goods", Form("Declaration", (
    _field("Reference", "reference", _text, "your own reference, unique among your declarations (up to 35)"),
    _field("Direction", "direction", _choice("import", "export"), "import or export", "goods_direction", "import"),
    *_declarant(("91350200MA2YQ4RK0U", "Xiamen Haixi Trading Co., Ltd.")),
    *_party("Consignor", "consignor", ("Mekong Seafood Export JSC", "VN", None)),
    *_party("Consignee", "consignee", ("Xiamen Haixi Trading Co., Ltd.", "CN", "91350200MA2YQ4RK0U")),
    _field("Customs office", "customs_office", _office, "4 digits (China) or 2 letters + 6 (EU), as Text",
           example="3702"),
    _field("Port of loading", "port_of_loading", _text, "UN/LOCODE, e.g. VNSGN", example="VNSGN"),
    _field("Port of discharge", "port_of_discharge", _text, "UN/LOCODE, e.g. CNXMN", example="CNXMN"),
    _field("Transport mode", "transport.mode", _choice(*TRANSPORT_MODES), ", ".join(TRANSPORT_MODES), "transport",
           "sea"),
    _field("Vessel IMO number", "transport.vessel.imo", _text, "7 digits; required for sea transport",
           example=9074729),
    _field("Vessel name", "transport.vessel.name", _text, "required for sea transport", example="HAI XI STAR"),
    _field("Voyage number", "transport.vessel.voyage", _text, "required for sea transport", example="026N"),
    _field("Bill of lading", "transport.bill_of_lading", _text, "required for sea transport",
           example="COSU6123456780"),
)), (
    Table("Items", "items", (
        _field("HS code", "hs_code", _hs, "6, 8 or 10 digits, as Text (leading zeros matter)", example="0901210000"),
        _field("Description", "description", _text, "up to 512 characters", example="Roasted coffee beans"),
        _field("Origin country", "origin", _text, "ISO 3166-1 alpha-2", "country", "VN"),
        _field("Quantity", "quantity", _decimal, "a number greater than 0", example=2000),
        _field("Unit", "unit", _text, "UN/ECE Recommendation 20 code: KGM, H87, LTR ...", "unit", "KGM"),
        _field("Gross mass kg", "gross_kg", _decimal, "a number", example=2100.5),
        _field("Net mass kg", "net_kg", _decimal, "a number, at most the gross mass", example=2000),
        _field("Value", "value", _decimal, "a number, up to 3 decimal places", example="18500.00"),
        _field("Currency", "currency", _text, "ISO 4217 code", "currency", "USD"),
        _field("UN number", "un_number", _un, "4 digits if the goods are dangerous, as Text; optional"),
    ), f"one goods item per row, at most {LIMITS['items']}; at least one"),
    Table("Containers", "containers", (
        _field("Container number", "", _text, "ISO 6346, e.g. TCLU1234568", example="TCLU1234568"),
    ), f"one container per row, at most {LIMITS['containers']}; none for loose cargo"),
    Table("Documents", "documents", (
        _field("Document type", "type", _DOCUMENT_TYPE, ", ".join(DOCUMENT_TYPES), "document",
               "commercial_invoice"),
        _field("Document number", "number", _text, "up to 35 characters", example="INV-2026-0001"),
    ), f"supporting documents, one per row, at most {LIMITS['documents']}"),
    Table("Licences", "licences", (
        _field("Item", "", _item_number, "the goods item's row number on the Items sheet: 1 is the first item",
               example=1),
        _field("Licence number", "number", _text, "as the licence states it", example="AIL-2026-000001"),
        _field("Quantity", "quantity", _decimal, "how much of the licence this item uses", example=2000),
        _field("Unit", "unit", _text, "the licence's unit (Recommendation 20)", "unit", "KGM"),
        _field("Issuer", "issuer", _choice(*ISSUERS), "only where two issuers use the same number; optional",
               "issuer"),
    ), f"licences and certificates the items are declared under, up to {LIMITS['licences']} per item",
        owner="items"),
))

VESSEL_CALL = Layout("vessel_call", Form("Call", (
    _field("Reference", "reference", _text, "your own reference, unique among your declarations (up to 35)"),
    _field("Direction", "direction", _CALL_DIRECTIONS, "arrival or departure", "call_direction", "arrival"),
    *_declarant(("91350200612003000Y", "Xiamen Ocean Shipping Agency Co., Ltd.")),
    _field("Vessel IMO number", "vessel.imo", _text, "7 digits", example=9074729),
    _field("Vessel name", "vessel.name", _text, "up to 35 characters", example="HAI XI STAR"),
    _field("Call sign", "vessel.call_sign", _text, "3 to 7 letters or digits", example="BQXY"),
    _field("Flag", "vessel.flag", _text, "ISO 3166-1 alpha-2", "country", "CN"),
    _field("Voyage number", "voyage", _text, "up to 35 characters", example="026N"),
    _field("Port of call", "port_of_call", _text, "UN/LOCODE, e.g. CNXMN", example="CNXMN"),
    _field("ETA", "eta", _moment, "required for an arrival: text 2026-12-01T08:00+08:00, or a date-time cell "
           "with the UTC offset below", example="2026-12-01T08:00:00+08:00"),
    _field("ETD", "etd", _moment, "required for a departure; as ETA"),
    _field("UTC offset", "", _offset, "of ETA and ETD entered as date-time cells: +08:00, -05:00 or Z"),
    _field("Last port", "last_port", _text, "UN/LOCODE; optional", example="VNSGN"),
    _field("Next port", "next_port", _text, "UN/LOCODE; optional", example="CNSHA"),
)), (
    Table("Crew", "crew", (
        *_person(("LIU", "Yang", "CN", date(1982, 5, 9), "seafarer_id", "S0012345")),
        _field("Rank or rating", "rank", _text, "e.g. Master, Chief officer, Able seaman", example="Chief officer"),
    ), f"FAL form 5: one crew member per row, at most {LIMITS['crew']}; at least one"),
    Table("Passengers", "passengers", (
        *_person(("GARCÍA LÓPEZ", "María José", "ES", date(1988, 7, 21), "identity_card", "12345678Z")),
        _field("Port of embarkation", "port_of_embarkation", _text, "UN/LOCODE; optional", example="VNSGN"),
        _field("Port of disembarkation", "port_of_disembarkation", _text, "UN/LOCODE; optional", example="CNXMN"),
    ), f"FAL form 6: one passenger per row, at most {LIMITS['passengers']}"),
    Table("Dangerous goods", "dangerous_goods", (
        _field("UN number", "un_number", _un, "4 digits, as Text (0004 to 3599)", example="1263"),
        _field("IMDG class", "imdg_class", _text, "class or division: 1.1 ... 9", "imdg", "3"),
        _field("Description", "description", _text, "proper shipping name", example="Paint"),
        _field("Packing group", "packing_group", _choice("I", "II", "III"), "I, II or III; optional", "packing",
               "III"),
        _field("Gross mass kg", "gross_kg", _decimal, "a number; optional", example=1200),
        _field("Container number", "container", _text, "ISO 6346; optional", example="SEGU1234569"),
    ), f"FAL form 7: one dangerous cargo entry per row, at most {LIMITS['dangerous_goods']}"),
))

LAYOUTS = {layout.kind: layout for layout in (GOODS, VESSEL_CALL)}
README, CODES = "README", "Codes"


def _heading_key(heading: Any) -> str:
    return " ".join(str(heading).split()).casefold().rstrip(" *")


# ---- inspecting the bytes before calamine parses them -----------------------------------------------------------

ROW_SLACK = 101  # a list's header row and some blank rows beyond its longest
COLUMN_SLACK = 10  # empty styled cells right of a list, as spreadsheet programs write them
MAX_SHARED_STRING = 4096  # characters in one shared string: a field holds at most 512
MAX_SHARED_TEXT = 16 * 2**20  # characters of shared strings summed over the cells that point at them
MAX_CONVERSIONS = 4  # workbooks in calamine at once in this process: each holds its sheets' grids
_CONVERSIONS = threading.BoundedSemaphore(MAX_CONVERSIONS)
_WORKBOOK, _RELATIONS, _SHARED_STRINGS = "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/sharedstrings.xml"
_SHARED_STRINGS_TYPE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
_CELL_REFERENCE = re.compile(r"([A-Za-z]{1,3})([0-9]{1,7})")
_ROW_REFERENCE = re.compile(r"[0-9]{1,7}")


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number


def column_letter(number: int) -> str:
    """1 is A, 27 is AA."""
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


class _Extent(NamedTuple):
    """How far a sheet may reach: calamine builds a dense grid from A1 to its last cell."""

    rows: int
    columns: int


def _extents(layout: Layout) -> dict[str, _Extent]:
    """Each read sheet's extent, from its layout: the form's fields, a list's longest length and its columns."""
    longest = {**LIMITS, "licences": LIMITS["items"] * LIMITS["licences"]}
    extents = {layout.form.sheet: _Extent(len(layout.form.fields) + ROW_SLACK, 3 + COLUMN_SLACK)}
    for table in layout.tables:
        extents[table.sheet] = _Extent(longest[table.key] + ROW_SLACK, len(table.columns) + COLUMN_SLACK)
    return extents


_ANY_SHEET = _Extent(MAX_ROWS, MAX_COLUMNS)  # a sheet the hub does not read (README, Codes, the trader's own)


def _local(name: str) -> str:
    return name.rpartition(":")[2]


def _refuse_doctype(*_: Any) -> None:
    raise _refused("the workbook's XML declares a DOCTYPE: spreadsheet programs never write one, and its entities "
                   "could expand without bound")


def _walk(where: str, xml: bytes, start: Callable[[str, dict[str, str]], None],
          end: Callable[[str], None] | None = None, text: Callable[[str], None] | None = None) -> None:
    """Stream a part through expat, calling `start(element, attributes)` with namespace prefixes dropped from
    element names. Its work is linear in the part's length (no pattern backtracks on `<c <c <c ...`), and a
    DOCTYPE, hence any entity definition, is refused before it is used."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.StartElementHandler = lambda element, attributes: start(_local(element), attributes)
    if end is not None:
        parser.EndElementHandler = lambda element: end(_local(element))
    if text is not None:
        parser.CharacterDataHandler = text
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as error:
        raise _refused(f"not a readable .xlsx workbook: the part {where} is not well-formed XML "
                       f"({expat.ErrorString(error.code)}, line {error.lineno})") from None


def _attribute(attributes: dict[str, str], name: str) -> list[str]:
    """An attribute's values under any prefix (`r:id`, `id`): a reader may take either, so all are checked."""
    return [value for key, value in attributes.items() if _local(key) == name]


def _inflated(archive: zipfile.ZipFile) -> dict[str, bytes]:
    """Every part by its name in lower case (calamine finds parts ignoring case), its size measured by inflating
    it: a zip's own size fields are claims. Two parts whose names differ only in case, or a name that is not
    normalised (`a/../b`, `./b`, `\\`), are refused: which of them a reader opens is not ours to guess."""
    parts: dict[str, bytes] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename.lower()
        if name.endswith("/") and info.file_size == 0:
            continue  # a folder
        if name != posixpath.normpath(name) or name.startswith("/") or "\\" in name:
            raise _refused(f"the zip holds a part named {info.filename[:80]!r}: part names are plain paths")
        if name in parts:
            raise _refused(f"the zip holds the part {info.filename[:80]!r} twice")
        chunks = []
        with archive.open(info) as stream:
            while chunk := stream.read(1 << 16):
                total += len(chunk)
                if total > MAX_INFLATED:
                    raise _refused(f"the workbook inflates to more than {MAX_INFLATED // 2**20} MiB: a zip bomb, or "
                                   "far more than a declaration holds")
                chunks.append(chunk)
        parts[name] = b"".join(chunks)
    return parts


def _targets(parts: dict[str, bytes]) -> dict[str, list[tuple[str, set[str]]]]:
    """The workbook's relationships by id: (type, the part names its target may mean). A target is resolved as
    OPC does (relative to xl/, from the package root when it starts with "/"), both as written and
    percent-decoded."""
    targets: dict[str, list[tuple[str, set[str]]]] = {}

    def relationship(element: str, attributes: dict[str, str]) -> None:
        if element != "Relationship":
            return
        target = attributes.get("Target", "")
        names = set()
        for written in {target, unquote(target)}:
            joined = written[1:] if written.startswith("/") else f"xl/{written}"
            names.add(posixpath.normpath(joined).lower())
        targets.setdefault(attributes.get("Id", ""), []).append((attributes.get("Type", ""), names))

    if _RELATIONS in parts:
        _walk(_RELATIONS, parts[_RELATIONS], relationship)
    return targets


def _sheets(parts: dict[str, bytes], targets: dict[str, list[tuple[str, set[str]]]]) -> dict[str, set[str]]:
    """Each sheet the workbook lists, by name: the part names calamine may read it from. A sheet whose part
    is not in the zip, or a name given twice, is refused: an unchecked sheet must not reach calamine."""
    if _WORKBOOK not in parts:
        raise _refused("not an .xlsx workbook: the zip holds no xl/workbook.xml")
    sheets: dict[str, set[str]] = {}
    folded: set[str] = set()

    def sheet(element: str, attributes: dict[str, str]) -> None:
        if element != "sheet":
            return
        name = attributes.get("name", "")
        if name.casefold() in folded:
            raise _refused(f"the workbook lists the sheet {name[:40]!r} twice")
        folded.add(name.casefold())
        found = {part for ident in _attribute(attributes, "id") for _, names in targets.get(ident, ())
                 for part in names if part in parts}
        if not found:
            raise _refused(f"the sheet {name[:40]!r} has no part in the zip: its relationship is missing or points "
                           "nowhere", f"{name[:40]}!A1")
        sheets[name] = found

    _walk(_WORKBOOK, parts[_WORKBOOK], sheet)
    return sheets


def _shared_strings(parts: dict[str, bytes], targets: dict[str, list[tuple[str, set[str]]]]) -> list[int]:
    """Each shared string's length. calamine reads xl/sharedStrings.xml and first reserves room for as many
    strings as its `count` claims (four billion abort the process); a relationship's table is checked too."""
    names = {_SHARED_STRINGS} | {part for related in targets.values() for kind, meant in related
                                 if kind == _SHARED_STRINGS_TYPE for part in meant}
    lengths: list[int] = []
    for name in sorted(names & parts.keys()):
        table = _SharedStrings(name)
        _walk(name, parts[name], table.start, table.end, table.text)
        lengths = [max(pair) for pair in zip_longest(lengths, table.lengths, fillvalue=0)]
    return lengths


class _SharedStrings:
    """Streams a shared strings table: its claimed count, and the length of each string."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lengths: list[int] = []
        self.within: int | None = None

    def start(self, element: str, attributes: dict[str, str]) -> None:
        if element == "sst":
            for claim in (*_attribute(attributes, "count"), *_attribute(attributes, "uniqueCount")):
                if not claim.strip().isdigit() or int(claim) > MAX_SHARED_STRINGS:
                    raise _refused(f"the shared strings table claims {claim[:20]} strings: at most "
                                   f"{MAX_SHARED_STRINGS}")
        elif element == "si":
            self.within = 0

    def text(self, text: str) -> None:
        if self.within is not None:
            self.within += len(text)
            if self.within > MAX_SHARED_STRING:
                raise _refused(f"shared string {len(self.lengths)} has more than {MAX_SHARED_STRING} characters: a "
                               "field holds at most 512")

    def end(self, element: str) -> None:
        if element == "si" and self.within is not None:
            self.lengths.append(self.within)
            self.within = None


class _Sheet:
    """Streams a worksheet: checks its extent, sums the shared strings its cells point at, finds its first
    formula. A cell without an `r` reference is the one after the previous cell, as calamine places it."""

    def __init__(self, name: str, extent: _Extent, shared: list[int], budget: list[int]) -> None:
        self.name, self.extent, self.shared, self.budget = name, extent, shared, budget
        self.row = self.column = 0
        self.formula: str | None = None
        self.shared_cell = False
        self.index: list[str] | None = None

    def start(self, element: str, attributes: dict[str, str]) -> None:
        if element == "row":
            numbers = _attribute(attributes, "r")
            self.row, self.column = max(map(self._row_number, numbers)) if numbers else self.row + 1, 0
            self._check()
        elif element == "c":
            references = _attribute(attributes, "r")
            if references:
                places = [self._cell(reference) for reference in references]
                self.column, self.row = max(column for column, _ in places), max(self.row, *(r for _, r in places))
            else:
                self.column += 1
            self.shared_cell = "s" in _attribute(attributes, "t")
            self._check()
        elif element == "f" and self.formula is None and self.column:
            self.formula = f"{column_letter(self.column)}{self.row}"
        elif element == "v" and self.shared_cell:
            self.index = []

    def text(self, text: str) -> None:
        if self.index is not None:
            self.index.append(text[:20])

    def end(self, element: str) -> None:
        if element == "v" and self.index is not None:
            index = "".join(self.index).strip()
            self.index = None
            if index.isascii() and index.isdigit() and int(index) < len(self.shared):
                self.budget[0] -= self.shared[int(index)]
                if self.budget[0] < 0:
                    raise _refused(f"the cells point at more than {MAX_SHARED_TEXT:,} characters of shared strings "
                                   "in all: far more than a declaration holds",
                                   f"{self.name}!{column_letter(self.column)}{self.row}")
        elif element == "c":
            self.shared_cell = False

    def _row_number(self, number: str) -> int:
        if not _ROW_REFERENCE.fullmatch(number):
            raise _refused(f"sheet {self.name!r} has a row numbered {number[:20]!r}", f"{self.name}!A1")
        return int(number)

    def _cell(self, reference: str) -> tuple[int, int]:
        found = _CELL_REFERENCE.fullmatch(reference)
        if found is None:
            raise _refused(f"sheet {self.name!r} has a cell at {reference[:20]!r}, which is not a cell reference",
                           f"{self.name}!A{self.row or 1}")
        return _column_number(found[1]), int(found[2])

    def _check(self) -> None:
        rows, columns = self.extent
        if self.row > rows:
            raise _refused(f"sheet {self.name!r} has a row {self.row}: at most {rows} rows are read",
                           f"{self.name}!A{self.row}")
        if self.column > columns:
            raise _refused(f"sheet {self.name!r} has a cell beyond column {column_letter(columns)}: a declaration's "
                           "sheets are narrower",
                           f"{self.name}!{column_letter(min(self.column, 16384))}{self.row}")


def _inspect(data: bytes) -> dict[str, str | None]:
    """Refuse what is not a modest .xlsx workbook; return each sheet's first formula cell (or None), by name.

    Every sheet the workbook lists is walked, wherever its part is, within the extent its layout allows."""
    if len(data) > MAX_BYTES:
        raise _refused(f"the file has {len(data)} bytes: at most {MAX_BYTES} are read")
    if not data.startswith(b"PK\x03\x04"):
        hint = (" (an encrypted or old-style .xls workbook: save it as .xlsx without a password)"
                if data.startswith(b"\xd0\xcf\x11\xe0") else "")
        raise _refused(f"not an .xlsx workbook: it does not start as a zip file does{hint}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if len(archive.infolist()) > MAX_PARTS:
                raise _refused(f"the workbook has {len(archive.infolist())} parts: at most {MAX_PARTS}")
            parts = _inflated(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as error:
        if isinstance(error, SpreadsheetInvalid):
            raise
        raise _refused(f"not a readable .xlsx workbook: {error}") from None
    targets = _targets(parts)
    sheets = _sheets(parts, targets)
    extents = _extents(_layout_of(list(sheets)))
    shared, budget = _shared_strings(parts, targets), [MAX_SHARED_TEXT]
    formulas: dict[str, str | None] = {}
    for name, names in sheets.items():
        for part in sorted(names):
            scan = _Sheet(name, extents.get(name, _ANY_SHEET), shared, budget)
            _walk(part, parts[part], scan.start, scan.end, scan.text)
            formulas[name] = formulas.get(name) or scan.formula
    return formulas


# ---- reading --------------------------------------------------------------------------------------------------

@dataclass
class Origins:
    """Where each part of the document came from, to name a JSON path's cell."""

    layout: Layout
    fields: dict[Path, int] = field(default_factory=dict)  # a form field's path -> its row
    entries: dict[Path, int] = field(default_factory=dict)  # ("crew", 4) or ("items", 0, "licences", 1) -> its row
    columns: dict[str, dict[Path, str]] = field(default_factory=dict)  # a table's sheet -> field path -> letter

    def cell(self, path: str) -> str:
        """The cell a JSON path points at: its own, else its row's, else its sheet's first entry or form."""
        location = _location(path)
        form = self.layout.form.sheet
        for length in range(len(location), 0, -1):
            for table in self.layout.tables:
                row = self.entries.get((table.sheet, *location[:length]))
                if row is not None:
                    return f"{table.sheet}!{self._letter(table.sheet, location[length:])}{row}"
        for table in self.layout.tables:
            if location[:1] == (table.key,) and not table.owner:
                return f"{table.sheet}!A2"
        for length in range(len(location), 0, -1):
            if location[:length] in self.fields:
                return f"{form}!B{self.fields[location[:length]]}"
        within = [row for field_path, row in self.fields.items() if field_path[:len(location)] == location]
        return f"{form}!B{min(within)}" if location and within else f"{form}!A1"

    def _letter(self, sheet: str, rest: Path) -> str:
        letters = self.columns.get(sheet, {})
        for length in range(len(rest), -1, -1):
            if rest[:length] in letters:
                return letters[rest[:length]]
        return "A"

    def errors(self, errors: Iterable[FieldError]) -> list[CellError]:
        return [CellError(self.cell(error.path), error.path, error.message) for error in errors]


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _location(path: str) -> Path:
    return tuple(int(index) if index else name for name, index in _STEP.findall(path.removeprefix("$")))


@dataclass
class Workbook:
    """A read workbook: the document it holds, where each field came from, and what could not be read."""

    document: dict[str, Any]
    origins: Origins
    errors: list[CellError]

    def validated(self) -> dict[str, Any]:
        """The document made canonical by the hub's `validate_document`; else SpreadsheetInvalid with every failing
        cell, the unreadable ones first."""
        try:
            document = validate_document(self.document)
        except InvalidDeclaration as error:
            raise self.invalid(error) from None
        if self.errors:
            raise SpreadsheetInvalid(self.errors)
        return document

    def invalid(self, error: InvalidDeclaration) -> SpreadsheetInvalid:
        """The hub's errors by JSON path, with their cells; a cell already reported unreadable is not repeated."""
        reported = {problem.path for problem in self.errors}
        found = [problem for problem in self.origins.errors(error.errors) if problem.path not in reported]
        return SpreadsheetInvalid(self.errors + found)


def _put(target: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _calamine_failed(error: BaseException) -> bool:
    """What calamine raises on a file it cannot read: its own errors, and a Rust panic (pyo3's PanicException
    is a BaseException, so it must be named; KeyboardInterrupt and the like pass)."""
    from python_calamine import CalamineError

    return isinstance(error, CalamineError | ValueError | OverflowError) or type(error).__name__ == "PanicException"


def _load(data: bytes, formulas: dict[str, str | None]) -> tuple[list[str], dict[str, list[list[Any]]],
                                                                 list[CellError]]:
    """calamine's sheet names, the rows of the sheets the layout reads, and their formulas and merged cells.

    At most MAX_CONVERSIONS workbooks are in calamine at once (each holds its sheets' grids); any failure in
    calamine is SpreadsheetInvalid naming the sheet, never a 500."""
    from python_calamine import CalamineWorkbook

    sheet = "workbook"
    with _CONVERSIONS:
        try:
            with CalamineWorkbook.from_filelike(io.BytesIO(data)) as book:
                names = list(book.sheet_names)
                layout = _layout_of(names)
                read = [name for name in (layout.form.sheet, *(t.sheet for t in layout.tables)) if name in names]
                rows, errors = {}, []
                for sheet in read:
                    if sheet not in formulas:
                        raise _refused(f"calamine reads a sheet {sheet!r} that was not inspected", f"{sheet}!A1")
                    if formulas[sheet]:
                        errors.append(CellError(f"{sheet}!{formulas[sheet]}", "$", "is a formula: formulas are not "
                                                "read (their value is whatever the last program computed, or "
                                                "nothing); copy the cells and paste them as values"))
                    loaded = book.get_sheet_by_name(sheet)
                    if (merged := _merged(sheet, loaded.merged_cell_ranges)) is not None:
                        errors.append(merged)
                    rows[sheet] = loaded.to_python(skip_empty_area=False)
        except BaseException as error:
            if not _calamine_failed(error) or isinstance(error, SpreadsheetInvalid):
                raise
            where = "" if sheet == "workbook" else f"the sheet {sheet!r} cannot be read: "
            detail = ("its part is not where its relationship points" if type(error).__name__ == "WorksheetNotFound"
                      else str(error))
            raise _refused(f"not a readable .xlsx workbook: {where}{detail}"[:300],
                           "workbook" if sheet == "workbook" else f"{sheet}!A1") from None
    return names, rows, errors


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _merged(sheet: str, ranges: list[Any] | None) -> CellError | None:
    ranges = ranges or []
    for (top, left), (bottom, right) in ranges:
        if bottom > 0:  # merged cells in the header row are layout; below it they leave all but one cell blank
            where = f"{column_letter(left + 1)}{top + 1}:{column_letter(right + 1)}{bottom + 1}"
            return CellError(f"{sheet}!{where}", "$", "merged cells: unmerge them and give each row its own value")
    return None


def read_workbook(data: bytes) -> Workbook:
    """Read a declaration workbook: the document (unchecked by the hub), its cells, and what could not be read.

    Raises SpreadsheetInvalid if the bytes are not a workbook of this hub's layout at all."""
    names, rows, errors = _load(data, _inspect(data))
    layout = _layout_of(names)
    origins = Origins(layout)
    missing = [sheet for sheet in (layout.form.sheet, *(t.sheet for t in layout.tables)) if sheet not in names]
    if missing:
        raise SpreadsheetInvalid([CellError(f"{sheet}!A1", "$", f"the sheet {sheet!r} is missing: the template "
                                            "has it (leave it empty if there is nothing to list)")
                                  for sheet in missing])
    if errors:
        raise SpreadsheetInvalid(errors)
    document: dict[str, Any] = {"kind": layout.kind}
    _read_form(rows[layout.form.sheet], layout.form, document, origins, errors)
    for table in layout.tables:
        _read_table(rows[table.sheet], table, document, origins, errors)
    return Workbook(document, origins, errors)


def _layout_of(names: Sequence[str]) -> Layout:
    found = [layout for layout in LAYOUTS.values() if layout.form.sheet in names]
    if len(found) != 1:
        raise _refused("not a declaration workbook: it needs either a 'Declaration' sheet (goods) or a 'Call' "
                       "sheet (vessel call), as the templates of `tradehub template` have; its sheets are "
                       + ", ".join(map(repr, names[:10])))
    return found[0]


def _read_form(rows: list[list[Any]], form: Form, document: dict[str, Any], origins: Origins,
               errors: list[CellError]) -> None:
    by_label = {_heading_key(column.heading): column for column in form.fields}
    seen: dict[str, int] = {}
    moments: list[tuple[Column, int, datetime]] = []
    offset = None
    for number, row in enumerate(rows[1:], start=2):  # row 1: the headings Field, Value, Note
        label = row[0] if row else None
        value = row[1] if len(row) > 1 else None
        if _blank(label):
            if not _blank(value):
                errors.append(CellError(f"{form.sheet}!B{number}", "$", "has a value but no label in column A"))
            continue
        column = by_label.get(_heading_key(label))
        if column is None:
            errors.append(CellError(f"{form.sheet}!A{number}", "$", f"{str(label)[:40]!r} is not a field of this "
                                    "form (the template's labels are in column A)"))
            continue
        path = json_path(column.path) if column.path else "$"
        cell = f"{form.sheet}!B{number}"
        if column.heading in seen:
            errors.append(CellError(f"{form.sheet}!A{number}", path, f"{column.heading!r} is given twice (also on "
                                    f"row {seen[column.heading]})"))
            continue
        seen[column.heading] = number
        try:
            converted = column.read(value)
        except Unreadable as error:
            errors.append(CellError(cell, path, str(error)))
            continue
        if column.read is _offset:
            offset = (converted, cell)
        elif isinstance(converted, datetime):
            moments.append((column, number, converted))
            origins.fields[column.path] = number
        elif column.path:
            origins.fields[column.path] = number
            if converted is not None:
                _put(document, column.path, converted)
    for column, number, moment in moments:
        if offset is None or offset[0] is None:
            errors.append(CellError(f"{form.sheet}!B{number}", json_path(column.path), "is a date-time cell without "
                                    "a UTC offset: fill 'UTC offset' (e.g. +08:00), or type the time as text "
                                    "2026-12-01T08:00+08:00"))
        else:
            suffix = "+00:00" if offset[0] == "Z" else offset[0]
            _put(document, column.path, moment.isoformat(timespec="seconds") + suffix)


def _read_table(rows: list[list[Any]], table: Table, document: dict[str, Any], origins: Origins,
                errors: list[CellError]) -> None:
    if not table.owner:
        document[table.key] = []
    placed = _header(rows[0] if rows else [], rows[1:], table, errors)
    if placed is None:
        return
    letters = {column.path: column_letter(index + 1) for index, column in placed.items()}
    origins.columns[table.sheet] = letters
    example = _example(table)
    for number, row in enumerate(rows[1:], start=2):
        if all(_blank(value) for value in row):
            continue  # blank rows, anywhere, are skipped
        values = [row[index] if index < len(row) else None for index in placed]
        if example == {column.heading: _example_value(column, value)
                       for column, value in zip(placed.values(), values, strict=True)}:
            errors.append(CellError(f"{table.sheet}!A{number}", "$", "is the template's example row: overwrite it "
                                    "with your own or delete the row"))
            continue
        entry: Any = {} if any(column.path for column in table.columns) else None
        item = None
        index = len(document.get(table.key, ()))
        for column, value in zip(placed.values(), values, strict=True):
            try:
                converted = column.read(value)
            except Unreadable as error:
                errors.append(CellError(f"{table.sheet}!{letters[column.path]}{number}",
                                        _entry_path(table, item, index, column), str(error)))
                continue
            if table.owner and not column.path:
                item = converted
            elif not column.path:
                entry = converted
            elif converted is not None:
                _put(entry, column.path, converted)
        if table.owner:
            _attach(table, entry, item, number, document, origins, errors)
        else:
            origins.entries[(table.sheet, table.key, index)] = number
            document[table.key].append(entry)


def _header(header: list[Any], below: list[list[Any]], table: Table,
            errors: list[CellError]) -> dict[int, Column] | None:
    """The table's columns by their index in the header row; None (and errors) if the header row is wrong."""
    wanted = {_heading_key(column.heading): column for column in table.columns}
    placed: dict[int, Column] = {}
    failed = False
    for index, heading in enumerate(header):
        letter = column_letter(index + 1)
        column = None if _blank(heading) else wanted.get(_heading_key(heading))
        if _blank(heading):
            if any(index < len(row) and not _blank(row[index]) for row in below):
                errors.append(CellError(f"{table.sheet}!{letter}1", "$", "this column has values but no header"))
                failed = True
        elif column is None:
            errors.append(CellError(f"{table.sheet}!{letter}1", "$", f"{str(heading)[:40]!r} is not a column of this "
                                    "sheet: " + ", ".join(c.heading for c in table.columns)))
            failed = True
        elif column in placed.values():
            errors.append(CellError(f"{table.sheet}!{letter}1", "$", f"the column {column.heading!r} is given twice"))
            failed = True
        else:
            placed[index] = column
    absent = [column.heading for column in table.columns if column not in placed.values()]
    if absent and (header or any(not _blank(value) for row in below for value in row)):
        errors.append(CellError(f"{table.sheet}!1:1", "$", "the header row lacks the column(s) " + ", ".join(
            map(repr, absent)) + " (leave a column's cells empty rather than removing it)"))
        failed = True
    return None if failed or not header else placed


def _example_value(column: Column, value: Any) -> Any:
    try:
        return column.read(value)
    except Unreadable:
        return None


@cache
def _example(table: Table) -> dict[str, Any]:
    """The template's example row as read, by column heading."""
    return {column.heading: _example_value(column, column.example) for column in table.columns}


def _entry_path(table: Table, item: int | None, index: int, column: Column) -> str:
    if table.owner:
        return json_path((table.owner, (item or 0) - 1, table.key, *column.path)) if item else "$"
    return json_path((table.key, index, *column.path))


def _attach(table: Table, entry: dict[str, Any], item: int | None, number: int, document: dict[str, Any],
            origins: Origins, errors: list[CellError]) -> None:
    """A licence row goes to the item it names."""
    items = document.get(table.owner or "", [])
    if item is None or not 1 <= item <= len(items):
        errors.append(CellError(f"{table.sheet}!A{number}", "$", f"there is no item {item} on the Items sheet "
                                f"(it lists {len(items)})" if item is not None else "is required: the number of "
                                "the item (its row on the Items sheet, 1 for the first) this licence is for"))
        return
    cited = items[item - 1].setdefault(table.key, [])
    origins.entries[(table.sheet, table.owner, item - 1, table.key, len(cited))] = number
    cited.append(entry)


def read(data: bytes) -> dict[str, Any]:
    """The JSON document a workbook holds, not yet checked by the hub; SpreadsheetInvalid names unreadable cells."""
    workbook = read_workbook(data)
    if workbook.errors:
        raise SpreadsheetInvalid(workbook.errors)
    return workbook.document


def convert(data: bytes) -> Workbook:
    """Read a workbook and check its document as the hub does: the canonical document is `.document`.

    Every failure, unreadable cell or invalid field, is in one SpreadsheetInvalid."""
    workbook = read_workbook(data)
    workbook.document = workbook.validated()
    return workbook


def to_declaration(data: bytes) -> dict[str, Any]:
    """The validated, canonical declaration a workbook holds; SpreadsheetInvalid names every failing cell."""
    return convert(data).document


# ---- writing: the template, and a document as a workbook -------------------------------------------------------

@cache
def _code_lists() -> dict[str, tuple[str, ...]]:
    import pycountry

    return {
        "country": tuple(sorted(country.alpha_2 for country in pycountry.countries)),
        "currency": tuple(sorted(currency.alpha_3 for currency in pycountry.currencies)),
        "unit": tuple(sorted(rec20_units())),
        "goods_direction": ("import", "export"),
        "call_direction": ("arrival", "departure"),
        "transport": TRANSPORT_MODES,
        "document": DOCUMENT_TYPES,
        "identity": ("passport", "seafarer_id", "identity_card", "other"),
        "imdg": tuple(sorted(IMDG_CLASSES, key=lambda code: [int(part) for part in code.split(".")])),
        "packing": ("I", "II", "III"),
        "issuer": ISSUERS,
    }


def template(kind: str) -> bytes:
    """An empty workbook for `kind` ("goods" or "vessel_call"): instructions, headers, code lists, an example row
    on each list (which reading refuses, so it cannot be declared by mistake)."""
    if kind not in LAYOUTS:
        raise ValueError(f"no template for {kind!r}: choose one of {', '.join(KINDS)}")
    return _write(LAYOUTS[kind], None)


def fill(document: dict[str, Any]) -> bytes:
    """A declaration document as a workbook of its kind's layout; reading it back gives the document."""
    if document.get("kind") not in LAYOUTS:
        raise ValueError(f"no layout for kind {document.get('kind')!r}")
    return _write(LAYOUTS[document["kind"]], document)


def _value_at(entry: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry


def _write(layout: Layout, document: dict[str, Any] | None) -> bytes:
    from openpyxl import Workbook as OpenpyxlWorkbook
    from openpyxl.styles import Font
    from openpyxl.worksheet.datavalidation import DataValidation

    book = OpenpyxlWorkbook()
    readme = book.active
    readme.title = README
    codes = book.create_sheet(CODES)
    ranges = _write_codes(codes, layout)
    codes.sheet_state = "hidden"
    bold = Font(bold=True)

    def validation(sheet: Any, key: str | None, where: str) -> None:
        if key is None:
            return
        rule = DataValidation(type="list", formula1=ranges[key], allow_blank=True, showErrorMessage=True,
                              errorTitle="Not in the code list", error="Choose a value from the list")
        rule.add(where)
        sheet.add_data_validation(rule)

    form = book.create_sheet(layout.form.sheet, 1)
    form.append(["Field", "Value", "Note"])
    for cell in form[1]:
        cell.font = bold
    for number, column in enumerate(layout.form.fields, start=2):
        value = _value_at(document, column.path) if document is not None else column.example
        if not column.path:
            value = None
        form.cell(number, 1, column.heading).font = bold
        _set(form.cell(number, 2), value, column)
        form.cell(number, 3, column.note)
        validation(form, column.codes, f"B{number}")
    form.column_dimensions["A"].width, form.column_dimensions["B"].width = 24, 44
    form.column_dimensions["C"].width = 70
    for table in layout.tables:
        sheet = book.create_sheet(table.sheet)
        sheet.append([column.heading for column in table.columns])
        sheet.freeze_panes = "A2"
        for index, column in enumerate(table.columns, start=1):
            letter = column_letter(index)
            sheet.cell(1, index).font = bold
            sheet.column_dimensions[letter].width = max(14, len(column.heading) + 4)
            sheet.column_dimensions[letter].number_format = "@" if column.text_cell else (
                "yyyy-mm-dd" if column.read is _date else "General")
            validation(sheet, column.codes, f"{letter}2:{letter}{MAX_ROWS}")
        for number, row in enumerate(_table_rows(table, document), start=2):
            for index, (column, value) in enumerate(zip(table.columns, row, strict=True), start=1):
                _set(sheet.cell(number, index), value, column)
    _write_readme(readme, layout)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# Spreadsheets count 1900 as a leap year: serial dates before 1 March 1900 differ between programs; written as text.
_FIRST_SERIAL_DATE = "1900-03-01"


def _set(cell: Any, value: Any, column: Column) -> None:
    """A value into a cell: text stays text (a description "=1+2" is not a formula), dates are date cells."""
    if column.read is _date and isinstance(value, str) and value >= _FIRST_SERIAL_DATE:
        value = date.fromisoformat(value)
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"
    cell.number_format = "@" if column.text_cell else ("yyyy-mm-dd" if column.read is _date else "General")


def _table_rows(table: Table, document: dict[str, Any] | None) -> Iterator[list[Any]]:
    if document is None:
        yield [column.example for column in table.columns]
        return
    if table.owner:
        for number, item in enumerate(document.get(table.owner, []), start=1):
            for cited in item.get(table.key, []):
                yield [number if not column.path else _value_at(cited, column.path) for column in table.columns]
        return
    for entry in document.get(table.key, []):
        yield [entry if not column.path else _value_at(entry, column.path) for column in table.columns]


def _write_codes(sheet: Any, layout: Layout) -> dict[str, str]:
    """The code lists the layout's fields offer, one column each; the ranges their validations refer to."""
    wanted = sorted({column.codes for column in (*layout.form.fields, *(c for t in layout.tables for c in t.columns))
                     if column.codes})
    ranges = {}
    for index, key in enumerate(wanted, start=1):
        values = _code_lists()[key]
        letter = column_letter(index)
        sheet.cell(1, index, key)
        for number, value in enumerate(values, start=2):
            sheet.cell(number, index, value).data_type = "s"
        ranges[key] = f"{CODES}!${letter}$2:${letter}${len(values) + 1}"
    return ranges


def _write_readme(sheet: Any, layout: Layout) -> None:
    from openpyxl.styles import Font

    title = {"goods": "Goods declaration", "vessel_call": "Vessel call (FAL forms 1, 5, 6 and 7)"}[layout.kind]
    lines: list[tuple[str, ...]] = [
        (f"Trade hub: {title}",),
        ("Fill the sheets, keep their names and header rows, and submit the file: tradehub submit FILE.xlsx, "
         "or POST it to /v1/declarations with Content-Type " + MEDIA_TYPE + ".",),
        ("Row 2 of each list is an example: overwrite or delete it (a row equal to it is refused). Blank rows "
         "are skipped. Columns may be reordered; unknown columns are refused. Other sheets are ignored.",),
        ("Dates: date cells, or text YYYY-MM-DD. Numbers: number cells, or text like 1250.50. Codes whose "
         "leading zeros matter (HS codes, UN numbers, USCCs) must be Text. Formulas are refused: paste values.",),
        (),
        ("Sheet", "Field", "What to enter"),
    ]
    lines += [(layout.form.sheet, column.heading, column.note) for column in layout.form.fields]
    for table in layout.tables:
        lines.append((table.sheet, "", table.note))
        lines += [(table.sheet, column.heading, column.note) for column in table.columns]
    for line in lines:
        sheet.append(list(line))
    sheet["A1"].font = Font(bold=True, size=14)
    for cell in sheet[6]:
        cell.font = Font(bold=True)
    sheet.column_dimensions["A"].width, sheet.column_dimensions["B"].width = 18, 26
    sheet.column_dimensions["C"].width = 90
