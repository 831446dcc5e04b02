"""Declarations as .xlsx workbooks (tradehub/spreadsheets.py): templates, reading what people really type, errors
by cell and JSON path, hostile files, the API, the CLI and the bench."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from hub.declarations import validate_document
from tradehub import spreadsheets
from tradehub.spreadsheets import MEDIA_TYPE, SpreadsheetInvalid

from . import samples
from .conftest import Api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.json"))
DECLARATIONS = [path for path in EXAMPLES if json.loads(path.read_text()).get("kind")]


def edited(data: bytes, changes: dict[str, dict[str, Any]], *, add_sheet: str | None = None) -> bytes:
    """The workbook with cells set ({"Crew": {"D2": value}}), as a person would type them in a spreadsheet; a value
    (value, format) also sets the cell's number format."""
    book = load_workbook(io.BytesIO(data))
    if add_sheet:
        book.create_sheet(add_sheet)["A1"] = "my own notes"
    for sheet, cells in changes.items():
        for reference, value in cells.items():
            value, number_format = value if isinstance(value, tuple) else (value, None)
            book[sheet][reference] = value
            if number_format:
                book[sheet][reference].number_format = number_format
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def errors_of(data: bytes) -> list[tuple[str, str, str]]:
    with pytest.raises(SpreadsheetInvalid) as caught:
        spreadsheets.to_declaration(data)
    return [tuple(error) for error in caught.value.errors]


def call() -> dict[str, Any]:
    document = samples.vessel_call()
    document["passengers"] = [
        {"family_name": "GARCÍA LÓPEZ", "given_names": "María José", "nationality": "ES",
         "date_of_birth": "1988-07-21", "document": {"type": "identity_card", "number": "12345678Z"}},
        {"family_name": "王", "given_names": "小红", "nationality": "CN", "date_of_birth": "2001-01-09",
         "document": {"type": "passport", "number": "E00000001"}, "port_of_embarkation": "KRPUS"},
    ]
    return document


# ---- round trips ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DECLARATIONS, ids=lambda path: str(path.relative_to(ROOT / "examples")))
def test_each_example_document_filled_into_its_template_reads_back_equal(path: Path):
    document = json.loads(path.read_text())
    assert spreadsheets.to_declaration(spreadsheets.fill(document)) == validate_document(document)


def test_extended_characters_survive_the_round_trip():
    document = call()
    assert spreadsheets.to_declaration(spreadsheets.fill(document)) == validate_document(document)


@pytest.mark.parametrize("kind, sheets", [
    ("goods", ["README", "Declaration", "Items", "Containers", "Documents", "Licences"]),
    ("vessel_call", ["README", "Call", "Crew", "Passengers", "Dangerous goods"]),
])
def test_the_template_has_a_sheet_per_list_headers_code_lists_and_an_example_row(kind: str, sheets: list[str]):
    book = load_workbook(io.BytesIO(spreadsheets.template(kind)))
    assert [name for name in book.sheetnames if book[name].sheet_state == "visible"] == sheets
    assert book["Codes"].sheet_state == "hidden"
    layout = spreadsheets.LAYOUTS[kind]
    for table in layout.tables:
        sheet = book[table.sheet]
        assert [cell.value for cell in sheet[1]] == [column.heading for column in table.columns]
        assert any(cell.value is not None for cell in sheet[2]), "an example row"
    lists = {rule.formula1 for name in sheets[1:] for rule in book[name].data_validations.dataValidation}
    assert any(formula.startswith("Codes!$") for formula in lists)
    codes = book["Codes"]
    columns = {codes.cell(1, index).value: [cell.value for cell in col[1:] if cell.value]
               for index, col in enumerate(codes.iter_cols(), start=1)}
    assert "CN" in columns["country"] and ("KGM" in columns.get("unit", ["KGM"]))
    if kind == "vessel_call":
        assert columns["identity"] == ["passport", "seafarer_id", "identity_card", "other"]
        assert "1.1" in columns["imdg"] and "9" in columns["imdg"]


@pytest.mark.parametrize("kind", spreadsheets.KINDS)
def test_an_untouched_template_is_refused_its_example_rows_named(kind: str):
    found = errors_of(spreadsheets.template(kind))
    form = spreadsheets.LAYOUTS[kind].form.sheet
    assert (f"{form}!B2", "$.reference", "is required") in found
    examples = {cell for cell, _, message in found if "example row" in message}
    assert examples == {f"{table.sheet}!A2" for table in spreadsheets.LAYOUTS[kind].tables}


def test_a_template_with_its_example_rows_replaced_is_a_declaration():
    data = edited(spreadsheets.template("vessel_call"), {
        "Call": {"B2": "MY-CALL-1"},
        "Crew": {"A2": "HANSEN", "B2": "Ole", "C2": "NO", "D2": date(1970, 1, 2), "E2": "Passport", "F2": "N1234567",
                 "G2": "Master"},
        "Passengers": {f"{column}2": None for column in "ABCDEFGH"},
        "Dangerous goods": {f"{column}2": None for column in "ABCDEF"},
    })
    document = spreadsheets.to_declaration(data)
    assert document["reference"] == "MY-CALL-1" and document["vessel"]["imo"] == "9074729"  # typed as a number
    assert document["crew"] == [{"family_name": "HANSEN", "given_names": "Ole", "nationality": "NO",
                                 "date_of_birth": "1970-01-02", "rank": "Master",
                                 "document": {"type": "passport", "number": "N1234567"}}]
    assert document["passengers"] == [] and document["dangerous_goods"] == []


# ---- what people type --------------------------------------------------------------------------------------------

def test_numbers_typed_as_numbers_read_as_the_digits_typed():
    goods = samples.goods()
    data = edited(spreadsheets.fill(goods), {
        "Declaration": {"B19": 9321483},  # Vessel IMO number
        "Items": {"D2": 4, "F2": 5200.5, "G2": 4800.0, "H2": 240000},
    })
    item = spreadsheets.to_declaration(data)["items"][0]
    assert (item["quantity"], item["gross_kg"], item["net_kg"], item["value"]) == ("4", "5200.5", "4800", "240000")
    assert spreadsheets.to_declaration(data)["transport"]["vessel"]["imo"] == "9321483"


def test_a_float_sum_reads_as_the_digits_a_spreadsheet_shows():
    data = edited(spreadsheets.fill(samples.goods()), {"Items": {"F2": 0.1 + 0.2 + 5200}})
    assert spreadsheets.to_declaration(data)["items"][0]["gross_kg"] == "5200.3"


@pytest.mark.parametrize("cell, value, expected", [
    ("A2", 306170000, "Items!A2: not a valid HS code: it was typed as a number (306170000), so the spreadsheet "
                      "dropped its leading zeros (9 digits, not 6 or 8 or 10); format the cell as Text and type it "
                      "in full, e.g. 0306170000 ($.items[0].hs_code)"),
    ("J2", 4, "e.g. 0004 ($.items[0].un_number)"),
])
def test_codes_typed_as_numbers_that_lost_their_leading_zeros_are_named(cell: str, value: int, expected: str):
    with pytest.raises(SpreadsheetInvalid) as caught:
        spreadsheets.to_declaration(edited(spreadsheets.fill(samples.goods()), {"Items": {cell: value}}))
    assert str(caught.value).endswith(expected)


def test_a_code_typed_as_a_number_that_kept_its_digits_is_read():
    data = edited(spreadsheets.fill(samples.goods()), {"Items": {"A2": 8479899990}})
    assert spreadsheets.to_declaration(data)["items"][0]["hs_code"] == "8479899990"


def test_a_uscc_typed_as_a_number_is_refused_with_how_to_type_it():
    data = edited(spreadsheets.fill(samples.goods()), {"Declaration": {"B4": 913502006120030001}})
    [(cell, path, message)] = errors_of(data)
    assert (cell, path) == ("Declaration!B4", "$.declarant.id")
    assert "typed as a number" in message and "format the cell as Text" in message


@pytest.mark.parametrize("value, expected", [
    (date(1975, 6, 30), "1975-06-30"),
    (datetime(1975, 6, 30), "1975-06-30"),
    ("1975-06-30", "1975-06-30"),
    ("  1975-06-30 ", "1975-06-30"),
])
def test_dates_as_date_cells_or_iso_text(value: Any, expected: str):
    data = edited(spreadsheets.fill(samples.vessel_call()), {"Crew": {"D2": value}})
    assert spreadsheets.to_declaration(data)["crew"][0]["date_of_birth"] == expected


@pytest.mark.parametrize("value, message", [
    ("30/06/1975", "not a valid date: '30/06/1975' reads as different days in different countries"),
    ("06.30.1975", "not a valid date: '06.30.1975' reads as different days"),
    ((27575, "General"), "not a valid date: the cell holds the number 27575"),
    (datetime(1975, 6, 30, 14, 5), "not a valid date: the cell holds a time of day too"),
    ("June 1975", "'June 1975' is not an ISO 8601 date (YYYY-MM-DD)"),
])
def test_dates_that_are_not_dates_are_named_by_cell_and_path(value: Any, message: str):
    data = edited(spreadsheets.fill(call()), {"Passengers": {"D3": value}})
    [(cell, path, text)] = errors_of(data)
    assert (cell, path) == ("Passengers!D3", "$.passengers[1].date_of_birth")
    assert text.startswith(message)


def test_an_eta_date_time_cell_takes_the_utc_offset_row():
    document = samples.vessel_call(direction="arrival", eta="2026-12-01T08:00:00+08:00")
    document.pop("etd")
    base = spreadsheets.fill(document)
    eta_row = 1 + [c.heading for c in spreadsheets.VESSEL_CALL.form.fields].index("ETA") + 1
    offset_row = eta_row + 2
    found = errors_of(edited(base, {"Call": {f"B{eta_row}": datetime(2026, 12, 1, 8, 0)}}))
    assert found == [(f"Call!B{eta_row}", "$.eta", "is a date-time cell without a UTC offset: fill 'UTC offset' "
                      "(e.g. +08:00), or type the time as text 2026-12-01T08:00+08:00")]
    data = edited(base, {"Call": {f"B{eta_row}": datetime(2026, 12, 1, 8, 0), f"B{offset_row}": "+08:00"}})
    assert spreadsheets.to_declaration(data)["eta"] == "2026-12-01T08:00:00+08:00"


def test_blank_rows_trailing_spaces_choices_and_extra_sheets_are_forgiven():
    data = edited(spreadsheets.fill(call()), {
        "Passengers": {"A5": "  LEE  ", "B5": "Min\u00a0", "C5": "kr", "D5": "1999-12-31", "E5": " Seafarer  ID ",
                       "F5": "M1"},
    }, add_sheet="Notes")
    passengers = spreadsheets.to_declaration(data)["passengers"]
    assert passengers[2] == {"family_name": "LEE", "given_names": "Min", "nationality": "KR",
                             "date_of_birth": "1999-12-31", "document": {"type": "seafarer_id", "number": "M1"}}
    assert len(passengers) == 3  # row 4 was blank


def test_reordered_columns_are_read_by_their_headers():
    book = load_workbook(io.BytesIO(spreadsheets.fill(samples.vessel_call())))
    book["Crew"].move_range("A1:A2", cols=10)  # Family name moves to column K
    book["Crew"].delete_cols(1)
    buffer = io.BytesIO()
    book.save(buffer)
    assert spreadsheets.to_declaration(buffer.getvalue()) == validate_document(samples.vessel_call())


def test_unknown_and_missing_columns_and_sheets_are_named():
    data = edited(spreadsheets.fill(samples.vessel_call()), {"Crew": {"H1": "Gender", "H2": "F", "C1": "Citizenship"}})
    found = errors_of(data)
    assert ("Crew!H1", "$", "'Gender' is not a column of this sheet: Family name, Given names, Nationality, "
            "Date of birth, Identity document type, Identity document number, Rank or rating") in found
    assert any(cell == "Crew!1:1" and "'Nationality'" in message for cell, _, message in found)
    book = load_workbook(io.BytesIO(spreadsheets.fill(samples.vessel_call())))
    book["Passengers"].title = "Passenger list"
    buffer = io.BytesIO()
    book.save(buffer)
    assert errors_of(buffer.getvalue())[0][0] == "Passengers!A1"


def test_hub_errors_are_mapped_back_to_their_cells():
    document = call()
    document["passengers"][1]["nationality"] = "XX"
    document["crew"][0]["document"]["type"] = "visa"
    found = errors_of(spreadsheets.fill(document))
    assert ("Passengers!C3", "$.passengers[1].nationality", "'XX' is not an ISO 3166-1 alpha-2 country code") in found
    assert any(cell == "Crew!E2" and path == "$.crew[0].document.type" for cell, path, _ in found)


def test_licences_attach_to_the_item_they_name():
    document = json.loads((ROOT / "examples/licensed/goods-import.json").read_text())
    data = edited(spreadsheets.fill(document), {"Licences": {"A3": 2, "B3": "AIL-2026-9", "C3": 5, "D3": "H87"}})
    items = spreadsheets.to_declaration(data)["items"]
    assert items[1]["licences"] == [{"number": "AIL-2026-9", "quantity": "5", "unit": "H87"}]
    found = errors_of(edited(data, {"Licences": {"A3": 7, "D3": "XXX"}}))
    assert ("Licences!A3", "$", "there is no item 7 on the Items sheet (it lists 2)") in found
    wrong_unit = edited(data, {"Licences": {"D3": "XXX"}})
    assert [cell for cell, *_ in errors_of(wrong_unit)] == ["Licences!D3"]


def test_text_that_looks_like_a_formula_stays_text():
    document = samples.goods()
    document["items"][0]["description"] = "=HYPERLINK(\"http://x\")"
    data = spreadsheets.fill(document)
    assert spreadsheets.to_declaration(data) == validate_document(document)


# ---- hostile files -----------------------------------------------------------------------------------------------

def only(data: bytes) -> tuple[str, str]:
    [(cell, _, message)] = errors_of(data)
    return cell, message


def rezipped(data: bytes, change) -> bytes:
    """The workbook's zip with each part passed through `change(name, bytes) -> bytes | None` (None drops it)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            part = change(info.filename, source.read(info))
            if part is not None:
                target.writestr(info.filename, part)
    return buffer.getvalue()


def crew_part(data: bytes) -> str:
    """The zip part of the Crew sheet (openpyxl numbers the parts in sheet order)."""
    return f"xl/worksheets/sheet{load_workbook(io.BytesIO(data)).sheetnames.index('Crew') + 1}.xml"


@pytest.mark.parametrize("data, message", [
    (b"", "not an .xlsx workbook"),
    (b"family_name,given_names\nCHEN,Wei\n", "not an .xlsx workbook"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "an encrypted or old-style .xls workbook"),
    (b"PK\x03\x04" + bytes(100), "not a readable .xlsx workbook"),
])
def test_bytes_that_are_not_a_workbook_are_refused_clearly(data: bytes, message: str):
    assert message in only(data)[1]


def test_a_zip_without_a_workbook_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    assert only(buffer.getvalue())[1] == "not an .xlsx workbook: the zip holds no xl/workbook.xml"


def test_a_zip_bomb_is_refused_by_what_it_inflates_to_not_what_it_claims():
    data = spreadsheets.fill(samples.vessel_call())
    bomb = rezipped(data, lambda name, part: part if name != "docProps/app.xml"
                    else part + b" " * (spreadsheets.MAX_INFLATED + 1))
    assert len(bomb) < 200_000
    assert "inflates to more than 64 MiB" in only(bomb)[1]


def test_too_many_parts_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(spreadsheets, "MAX_PARTS", 5)
    assert "parts: at most 5" in only(spreadsheets.fill(samples.vessel_call()))[1]


def test_a_cell_far_away_is_refused_before_calamine_would_build_its_grid():
    data = spreadsheets.fill(samples.vessel_call())
    far = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'
    bomb = rezipped(data, lambda name, part: part.replace(b"</sheetData>", far) if name == crew_part(data) else part)
    cell, message = only(bomb)
    assert cell == "Crew!A1048576" and "at most 5100 rows" in message  # Crew: 4,999 members, a header, blank rows


def test_too_many_rows_or_columns_without_references_are_refused():
    data = spreadsheets.fill(samples.vessel_call())
    wide = b"<row>" + b"<c/>" * 100 + b'<c t="inlineStr"><is><t>x</t></is></c></row></sheetData>'
    bomb = rezipped(data, lambda name, part: part.replace(b"</sheetData>", wide) if name == crew_part(data) else part)
    assert "beyond column Q" in only(bomb)[1]  # Crew's 7 columns and COLUMN_SLACK
    tall = b"<row/>" * 5101 + b"</sheetData>"
    bomb = rezipped(data, lambda name, part: part.replace(b"</sheetData>", tall) if name == crew_part(data) else part)
    assert "at most 5100 rows" in only(bomb)[1]


@pytest.mark.parametrize("sheet, cell, message", [
    ("Crew", "Z2", "beyond column Q"),  # read: its layout's 7 columns, not 40 for every sheet
    ("Crew", "A5101", "at most 5100 rows"),
    ("Call", "N2", "beyond column M"),
    ("Notes", "AO1", "beyond column AN"),  # not read: the general bound
])
def test_each_sheet_read_is_bounded_by_its_own_layout(sheet: str, cell: str, message: str):
    data = edited(spreadsheets.fill(samples.vessel_call()), {sheet: {cell: "x"}}, add_sheet="Notes")
    assert message in only(data)[1]


def test_a_shared_strings_table_claiming_billions_of_strings_is_refused_before_calamine_reserves_them():
    """calamine would ask for 96 GB at once for this claim, and the failed allocation aborts the whole process."""
    data = with_shared_strings(spreadsheets.fill(samples.vessel_call()), claimed=4_000_000_000)
    assert only(data)[1] == "the shared strings table claims 4000000000 strings: at most 404000"


def test_formulas_are_refused_in_the_sheets_read_and_ignored_elsewhere():
    data = edited(spreadsheets.fill(samples.vessel_call()), {"Crew": {"F2": '="C01X"&"00T47"'}})
    cell, message = only(data)
    assert cell == "Crew!F2" and message.startswith("is a formula")
    notes = edited(spreadsheets.fill(samples.vessel_call()), {}, add_sheet="Notes")
    notes = edited(notes, {"Notes": {"B2": "=1+1"}})
    assert spreadsheets.to_declaration(notes) == validate_document(samples.vessel_call())


def test_merged_cells_in_a_list_are_refused():
    book = load_workbook(io.BytesIO(spreadsheets.fill(call())))
    book["Passengers"].merge_cells("C2:C3")
    buffer = io.BytesIO()
    book.save(buffer)
    assert only(buffer.getvalue())[0] == "Passengers!C2:C3"


def test_an_oversized_file_is_refused_before_it_is_opened():
    assert "at most" in only(b"PK\x03\x04" + bytes(spreadsheets.MAX_BYTES))[1]


def test_errors_are_capped_with_a_count_of_the_rest():
    document = samples.vessel_call()
    document["crew"] = [dict(document["crew"][0], nationality="XX") for _ in range(300)]
    found = errors_of(spreadsheets.fill(document))
    assert len(found) == spreadsheets.MAX_ERRORS and found[-1][2] == "and 101 more errors"


CREW_RELATION = b'Target="/xl/worksheets/sheet4.xml"'  # fill's vessel call: README, Call, Codes, Crew, ...
FORMULA = b'<row r="3"><c r="A3"><f>1+1</f><v>2</v></c></row></sheetData>'


def moved_crew(target: str, name: str, content: bytes = FORMULA) -> bytes:
    """The vessel call with its Crew sheet's part renamed `name` and its relationship pointing at `target`."""
    data = rezipped(spreadsheets.fill(samples.vessel_call()), lambda name, part: part.replace(
        CREW_RELATION, f'Target="{target}"'.encode()) if name == "xl/_rels/workbook.xml.rels" else part)
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            part = source.read(info)
            if info.filename == "xl/worksheets/sheet4.xml":
                archive.writestr(name, part.replace(b"</sheetData>", content))
            else:
                archive.writestr(info.filename, part)
    return buffer.getvalue()


@pytest.mark.parametrize("target, name", [
    ("/xl/crew.xml", "xl/crew.xml"),
    ("crew.xml", "xl/crew.xml"),
    ("/crew.xml", "crew.xml"),
    ("/xl/worksheets/SHEET4.xml", "xl/worksheets/sheet4.xml"),  # calamine finds parts ignoring case
])
def test_a_sheet_moved_out_of_the_worksheets_folder_is_still_inspected(target: str, name: str):
    cell, message = only(moved_crew(target, name))
    assert cell == "Crew!A3" and message.startswith("is a formula")
    cell, message = only(moved_crew(target, name, b'<row r="5101"><c r="A5101" t="inlineStr"><is><t>x</t></is></c>'
                                                  b'</row></sheetData>'))
    assert cell == "Crew!A5101" and "at most 5100 rows" in message


@pytest.mark.parametrize("target", ["worksheets/../worksheets/sheet4.xml", "worksheets/sheet%34.xml"])
def test_a_relationship_target_is_normalised_and_what_calamine_cannot_find_is_refused_not_a_500(target: str):
    """Normalised or decoded as OPC says, the target is the Crew part with a formula: inspected. calamine looks
    the target up as written and finds nothing: WorksheetNotFound, which was once a 500."""
    cell, message = only(moved_crew(target, "xl/worksheets/sheet4.xml"))
    assert cell == "Crew!A1" and message.endswith("the sheet 'Crew' cannot be read: its part is not where its "
                                                  "relationship points")


@pytest.mark.parametrize("target, name", [
    ("crew.xml", "xl/elsewhere.xml"),  # a listed sheet whose part is not in the zip
    ("http://example.com/crew.xml", "xl/worksheets/sheet4.xml"),
])
def test_a_listed_sheet_whose_part_was_not_inspected_is_refused(target: str, name: str):
    cell, message = only(moved_crew(target, name))
    assert cell == "Crew!A1" and "has no part in the zip" in message


@pytest.mark.parametrize("first, names", [
    (True, ("xl/worksheets/sheet4.xml", "xl/worksheets/sheet4.xml")),
    (False, ("xl/worksheets/sheet4.xml", "xl/worksheets/sheet4.xml")),
    (True, ("xl/worksheets/sheet4.xml", "XL/Worksheets/Sheet4.xml")),
    (True, ("xl/worksheets/sheet4.xml", "xl/worksheets/./sheet4.xml")),
])
def test_a_part_given_twice_or_under_an_unnormalised_name_is_refused(first: bool, names: tuple[str, str]):
    """Which copy a reader opens is not ours to guess: the one with the formula may come first or last."""
    source = zipfile.ZipFile(io.BytesIO(spreadsheets.fill(samples.vessel_call())))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning) if names[0] == names[1] else \
            contextlib.nullcontext():
        for info in source.infolist():
            part = source.read(info)
            if info.filename == names[0]:
                copies = (part.replace(b"</sheetData>", FORMULA), part)
                for copy, name in zip(copies if first else copies[::-1], names, strict=True):
                    archive.writestr(name, copy)
            else:
                archive.writestr(info.filename, part)
    assert "the zip holds" in only(buffer.getvalue())[1]


def test_a_sheet_listed_twice_is_refused():
    data = rezipped(spreadsheets.fill(samples.vessel_call()), lambda name, part: part.replace(
        b'name="Codes"', b'name="crew"') if name == "xl/workbook.xml" else part)
    assert only(data)[1] == "the workbook lists the sheet 'Crew' twice"


SHARED_STRINGS_TYPE = b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-' \
                      b'officedocument.spreadsheetml.sharedStrings+xml"/>'
SHARED_STRINGS_RELATION = b'<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/officeDocument/2006/' \
                          b'relationships/sharedStrings" Target="sharedStrings.xml"/>'


def with_shared_strings(data: bytes, extra: tuple[bytes, ...] = (), claimed: int | None = None) -> bytes:
    """The workbook with its text cells in a shared strings table, as Excel and LibreOffice write them (openpyxl
    3.1 writes every string inline); `extra` strings come last in the table, which may claim `claimed` strings."""
    strings: dict[bytes, int] = {}
    cell = re.compile(rb'<c ([^>]*)t="inlineStr"([^>]*)><is><t[^>]*>(.*?)</t></is></c>', re.S)

    def shared(found: re.Match[bytes]) -> bytes:
        index = strings.setdefault(found[3], len(strings))
        return b"<c " + found[1] + b't="s"' + found[2] + b"><v>" + str(index).encode() + b"</v></c>"

    def change(name: str, part: bytes) -> bytes:
        if name.startswith("xl/worksheets/"):
            return cell.sub(shared, part)
        return {"[Content_Types].xml": part.replace(b"</Types>", SHARED_STRINGS_TYPE + b"</Types>"),
                "xl/_rels/workbook.xml.rels": part.replace(b"</Relationships>", SHARED_STRINGS_RELATION +
                                                           b"</Relationships>")}.get(name, part)

    changed = rezipped(data, change)
    texts = [*strings, *extra]
    count = len(texts) if claimed is None else claimed
    buffer = io.BytesIO(changed)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/sharedStrings.xml", b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/'
                         b'main" count="%d" uniqueCount="%d">' % (count, count) + b"".join(
                             b'<si><t xml:space="preserve">' + text + b"</t></si>" for text in texts) + b"</sst>")
    return buffer.getvalue()


@pytest.mark.parametrize("path", DECLARATIONS, ids=lambda path: path.stem)
def test_a_workbook_with_shared_strings_reads_back_equal(path: Path):
    document = json.loads(path.read_text())
    data = with_shared_strings(spreadsheets.fill(document))
    assert b't="s"' in zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet2.xml")
    assert spreadsheets.to_declaration(data) == validate_document(document)


def test_cells_pointing_again_and_again_at_a_long_shared_string_are_refused(monkeypatch: pytest.MonkeyPatch):
    """400,000 cells at one 30,000-character string took 6 GB in calamine: the text the cells point at is summed
    while scanning, and one string may not be longer than a field could use."""
    def passengers(text: bytes, cells: int) -> bytes:
        data = with_shared_strings(spreadsheets.fill(samples.vessel_call()), extra=(text,))
        index = zipfile.ZipFile(io.BytesIO(data)).read("xl/sharedStrings.xml").count(b"<si>") - 1
        rows = b"".join(b'<row r="%d">' % row + b'<c t="s"><v>%d</v></c>' % index * 8 + b"</row>"
                        for row in range(3, 3 + cells // 8))
        return rezipped(data, lambda name, part: part.replace(b"</sheetData>", rows + b"</sheetData>")
                        if name == "xl/worksheets/sheet5.xml" else part)

    assert "has more than 4096 characters: a field holds at most 512" in only(passengers(b"x" * 30_000, 8))[1]
    monkeypatch.setattr(spreadsheets, "MAX_SHARED_TEXT", 100_000)
    cell, message = only(passengers(b"x" * 4000, 8 * 4))
    assert cell == "Passengers!H5" and "more than 100,000 characters of shared strings" in message
    read = spreadsheets.read_workbook(passengers(b"x" * 4000, 8 * 2)).document  # 64,000: read (hub then refuses)
    assert read["passengers"][-1]["family_name"] == "x" * 4000


@pytest.mark.parametrize("pathological", [
    b"<c " * 34_000,
    b'<row r="1"><c r="A1" ' + b"a " * 50_000,
    b"<x " + b"a=\"\" " * 20_000,
    b"<sheet " * 15_000,
])
@pytest.mark.parametrize("part", ["xl/worksheets/sheet4.xml", "xl/workbook.xml", "xl/_rels/workbook.xml.rels"])
def test_a_pathological_part_is_refused_in_linear_time(pathological: bytes, part: str):
    """`<c <c <c ...` took the former patterns quadratic time: 13 KB held the GIL for 16 s. This is a DoS guard:
    a 100 KB part must be done with well under 2 s even on a busy machine."""
    data = rezipped(spreadsheets.fill(samples.vessel_call()), lambda name, original: original.replace(
        b"<sheetData>", b"<sheetData>" + pathological) if name == part == "xl/worksheets/sheet4.xml"
        else (original + pathological if name == part else original))
    began = time.perf_counter()
    assert "not well-formed XML" in only(data)[1]
    assert time.perf_counter() - began < 2


def test_a_doctype_with_entities_is_refused():
    lol = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    data = rezipped(spreadsheets.fill(samples.vessel_call()), lambda name, part: lol + part.split(b"?>", 1)[-1]
                    if name == "xl/worksheets/sheet4.xml" else part)
    assert "declares a DOCTYPE" in only(data)[1]


def test_an_entity_encoded_cell_reference_is_read_as_a_reader_would():
    far = b'<row r="2"><c r="&#88;FD2" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'
    data = rezipped(spreadsheets.fill(samples.vessel_call()), lambda name, part: part.replace(
        b"<row r=\"2\"", b"<row r=\"9\"", 1).replace(b"</sheetData>", far) if name == "xl/worksheets/sheet4.xml"
        else part)
    assert only(data)[0] == "Crew!XFD2"


def test_a_shared_string_index_calamine_cannot_find_is_refused_naming_the_sheet():
    data = with_shared_strings(spreadsheets.fill(samples.vessel_call()))
    data = rezipped(data, lambda name, part: re.sub(rb'(t="s"><v>)\d+', rb"\g<1>99999", part, count=1)
                    if name == "xl/worksheets/sheet4.xml" else part)
    cell, message = only(data)
    assert cell == "Crew!A1" and "the sheet 'Crew' cannot be read" in message


def test_a_panic_in_calamine_is_refused_not_a_500(monkeypatch: pytest.MonkeyPatch):
    """pyo3 raises a Rust panic as PanicException, a BaseException that `except Exception` lets through."""
    import python_calamine

    panic = type("PanicException", (BaseException,), {})

    class Panicking:
        def __init__(self, book: Any) -> None:
            self.book = book

        def __enter__(self) -> Panicking:
            return self

        def __exit__(self, *_: object) -> None:
            self.book.close()

        sheet_names = property(lambda self: self.book.sheet_names)

        def get_sheet_by_name(self, name: str) -> Any:
            raise panic("called `Option::unwrap()` on a `None` value")

    opened = python_calamine.CalamineWorkbook.from_filelike
    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", lambda stream: Panicking(opened(stream)))
    cell, message = only(spreadsheets.fill(samples.vessel_call()))
    assert cell == "Call!A1" and "called `Option::unwrap()`" in message
    monkeypatch.setattr(Panicking, "get_sheet_by_name", lambda self, name: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # only a panic is taken for a bad file
        spreadsheets.read_workbook(spreadsheets.fill(samples.vessel_call()))


def test_at_most_max_conversions_workbooks_are_in_calamine_at_once(monkeypatch: pytest.MonkeyPatch):
    import python_calamine

    running, most, lock = [0], [0], threading.Lock()
    opened = python_calamine.CalamineWorkbook.from_filelike

    def slow(stream: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return opened(stream)

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", slow)
    data = spreadsheets.fill(samples.vessel_call())
    with ThreadPoolExecutor(3 * spreadsheets.MAX_CONVERSIONS) as pool:
        read = list(pool.map(spreadsheets.to_declaration, [data] * 3 * spreadsheets.MAX_CONVERSIONS))
    assert read == [validate_document(samples.vessel_call())] * 3 * spreadsheets.MAX_CONVERSIONS
    assert most[0] == spreadsheets.MAX_CONVERSIONS


# ---- the property: any valid document survives the spreadsheet ----------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
                min_size=1, max_size=30).map(str.strip).filter(bool)
decimals = st.builds(lambda whole, part: f"{whole}.{part}" if part else str(whole),
                     st.integers(1, 10**9), st.sampled_from(["", "5", "25", "125"]))
birthdays = st.dates(date(1900, 1, 1), date(2020, 12, 31)).map(date.isoformat)


@st.composite
def documents(draw) -> dict[str, Any]:
    if draw(st.booleans()):
        document = samples.goods(reference=draw(names.filter(lambda text: len(text) <= 35)))
        item = document["items"][0]
        items = []
        for _ in range(draw(st.integers(1, 4))):
            gross = draw(decimals)
            items.append(dict(item, description=draw(names), quantity=draw(decimals), gross_kg=gross, net_kg=gross,
                              value=draw(decimals), hs_code=draw(st.sampled_from(["0306170000", "847130", "01012100"]))))
        document["items"] = items
        document["consignor"]["name"] = draw(names)
        return document
    document = call()
    person = document["passengers"][0]
    document["passengers"] = [
        dict(person, family_name=draw(names), given_names=draw(names), date_of_birth=draw(birthdays),
             document={"type": "passport", "number": draw(st.from_regex(r"[A-Z0-9]{1,12}", fullmatch=True))})
        for _ in range(draw(st.integers(0, 6)))]
    document["crew"][0]["family_name"] = draw(names)
    return document


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_valid_document_written_into_the_template_reads_back_the_same(document: dict[str, Any]):
    canonical = validate_document(document)
    assert spreadsheets.to_declaration(spreadsheets.fill(canonical)) == canonical


# ---- the API -----------------------------------------------------------------------------------------------------

def post(api: Api, data: bytes, party: str = samples.TRADER_A):
    return api.client.post("/v1/declarations", content=data,
                           headers={**api.as_("trader", party=party), "Content-Type": MEDIA_TYPE})


def test_the_api_takes_a_spreadsheet_as_it_takes_json(api: Api):
    data = spreadsheets.fill(samples.goods())
    created = post(api, data)
    assert created.status_code == 201, created.text
    assert created.json()["document"] == validate_document(samples.goods())
    assert post(api, data).status_code == 200
    as_json = api.client.post("/v1/declarations", json=samples.goods(), headers=api.as_("trader",
                                                                                         party=samples.TRADER_A))
    assert as_json.status_code == 200 and as_json.json()["id"] == created.json()["id"]


def test_the_api_names_cell_and_path_and_stores_nothing(api: Api):
    document = call()
    document["passengers"][1]["nationality"] = "XX"
    data = edited(spreadsheets.fill(document), {"Crew": {"D2": "30/06/1975"}})
    refused = post(api, data, party=samples.SHIPPING_AGENT)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    errors = refused.json()["errors"]
    assert {"cell": "Passengers!C3", "path": "$.passengers[1].nationality",
            "message": "'XX' is not an ISO 3166-1 alpha-2 country code"} in errors
    assert any(e["cell"] == "Crew!D2" and e["path"] == "$.crew[0].date_of_birth" for e in errors)
    api.sync()
    listed = api.client.get("/v1/declarations", headers=api.as_("trader", party=samples.SHIPPING_AGENT))
    assert listed.json()["items"] == []


def test_the_api_refuses_a_non_workbook_and_another_partys_declaration(api: Api):
    refused = post(api, b"not a workbook")
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["cell"] == "workbook"
    assert post(api, spreadsheets.fill(samples.goods()), party=samples.TRADER_B).status_code == 403


def test_the_openapi_document_names_the_spreadsheet_media_type():
    document = json.loads((ROOT / "openapi.json").read_text())
    content = document["paths"]["/v1/declarations"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", MEDIA_TYPE}


# ---- the CLI -----------------------------------------------------------------------------------------------------

def test_cli_template_writes_a_workbook_but_not_to_a_terminal(tmp_path: Path):
    out = tmp_path / "call.xlsx"
    with out.open("wb") as stdout:
        result = subprocess.run([sys.executable, "-m", "tradehub.cli", "template", "vessel_call"], stdout=stdout,
                                stderr=subprocess.PIPE, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Crew" in load_workbook(out).sheetnames
    script = ("import pty, sys; sys.exit(pty.spawn([sys.executable, '-m', 'tradehub.cli', 'template', 'goods']) "
              ">> 8)")
    terminal = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert terminal.returncode == 2
    assert b"redirect it: tradehub template goods > goods.xlsx" in terminal.stdout
    assert b"PK" not in terminal.stdout


@pytest.fixture
def hub_api(hub, monkeypatch):
    import contextlib

    from fastapi.testclient import TestClient

    from tradehub import client
    from tradehub.api.app import create_app

    app = create_app(hub)

    def connect(url: str, token: str, concurrency: int = 4):
        return contextlib.nullcontext(TestClient(app, headers={"Authorization": f"Bearer {token}"}))

    monkeypatch.setattr(client, "_client", connect)
    return hub


def test_cli_submit_sends_a_workbook_and_prints_cells(hub_api, tmp_path: Path, capsys: pytest.CaptureFixture):
    from tradehub.auth import issue_token
    from tradehub.cli import main

    from .conftest import SECRET

    token = issue_token(SECRET, "trader", party=samples.SHIPPING_AGENT)
    good = tmp_path / "call.xlsx"
    good.write_bytes(spreadsheets.fill(samples.vessel_call()))
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(edited(spreadsheets.fill(samples.vessel_call(reference="OTHER")), {"Crew": {"D2": (27575, "General")}}))
    assert main(["submit", "--token", token, str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"call\.xlsx: accepted \S+ submitted", out)
    assert "bad.xlsx:   Crew!D2: not a valid date: the cell holds the number 27575" in out
    assert "($.crew[0].date_of_birth)" in out


# ---- the bench ---------------------------------------------------------------------------------------------------

def test_bench_spreadsheet_reports_the_conversion_against_raw_calamine_and_the_target():
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "spreadsheet", "--passengers", "200",
                             "--rounds", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"200 passengers and 40 crew, \d+ KB \.xlsx; medians of 2 rounds", result.stdout)
    raw = re.search(r"^raw calamine read\s+([\d.]+) s$", result.stdout, re.MULTILINE)
    hub = re.search(r"^hub to_declaration\s+([\d.]+) s\s+([\d.]+)x raw\s+target 2 s: (met|MISSED)$", result.stdout,
                    re.MULTILINE)
    assert raw and hub and float(hub[1]) > 0


def test_the_bench_ferry_list_is_valid_and_not_ascii():
    from tradehub.bench.spreadsheet import ferry_call

    document = ferry_call(300)
    assert validate_document(document)["passengers"] == document["passengers"]
    assert any(not person["family_name"].isascii() for person in document["passengers"])
