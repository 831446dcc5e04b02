"""Rows of a CSV or JSON file, for the commands that load records in bulk (`licences import`, `parties import`).

A file is JSON (an array of objects) if it starts with `[`, else CSV with a header line. Each row keeps its
number as a person finds it again: the CSV line (the header is line 1; a quoted field may span lines, and the
record's first line counts) or the position, from 1, in the JSON array. What makes the whole file unreadable (not
UTF-8, not JSON, a missing, unknown or repeated column) is a `FileRefused`; what makes one row no row at all (not an
object, too many or too few CSV fields) is that row's `problem`, so the others still load.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.declarations.documents import FieldError, MalformedJSON, load_json


class FileRefused(ValueError):
    """The file as a whole cannot be read (not UTF-8, not JSON, a missing column, ...)."""


@dataclass(frozen=True)
class Row:
    number: int  # the line of a CSV file (the header is line 1), the position (from 1) in a JSON array
    values: dict[str, Any]
    problem: str = ""  # why the row is no row at all (not an object; too many or too few CSV fields)


@dataclass(frozen=True)
class Refusal:
    row: int
    field: str  # a path into the row: hs_scope[1], signature, ...
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.message}"

    @classmethod
    def of(cls, row: int, error: FieldError) -> Refusal:
        """A validation error of row `row`, its JSON path read as a path into the row."""
        return cls(row, error.path.removeprefix("$."), error.message)


@dataclass(frozen=True)
class Layout:
    """What a file must hold: `name` as messages call it ("register": "a CSV register starts with ..."), its
    columns, and those every row must have."""

    name: str
    columns: Sequence[str]
    required: Sequence[str]


def read_rows(path: Path, layout: Layout) -> list[Row]:
    """The file's rows, or `FileRefused` saying why the file cannot be read as `layout`."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileRefused(f"cannot read: {error.strerror}") from None
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return list(_json_rows(data))
    if start == b"{":
        raise FileRefused(f"a JSON {layout.name} is an array of objects, each with {', '.join(layout.required)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileRefused(f"byte {error.start} (0x{data[error.start]:02x}) is not valid UTF-8") from None
    return list(_csv_rows(text, layout))


def _json_rows(data: bytes) -> Iterator[Row]:
    try:
        entries = load_json(data)
    except MalformedJSON as error:
        raise FileRefused(f"not JSON: {error}") from None
    for number, entry in enumerate(entries, start=1):
        if isinstance(entry, dict):
            yield Row(number, entry)
        else:
            yield Row(number, {}, "is not a JSON object")


def _csv_rows(text: str, layout: Layout) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise FileRefused(f"is empty: a CSV {layout.name} starts with the header {','.join(layout.required)}")
        columns = [name.strip().lower() for name in header]
        missing = [column for column in layout.required if column not in columns]
        if missing:
            optional = [column for column in layout.columns if column not in layout.required]
            raise FileRefused(f"line 1: the header lacks the column(s) {', '.join(missing)} "
                              f"(it must name {','.join(layout.required)}"
                              + (f", and may name {','.join(optional)})" if optional else ")"))
        unknown = [column for column in columns if column not in layout.columns]
        if unknown:
            raise FileRefused(f"line 1: unknown column(s) {', '.join(unknown)} "
                              f"(the columns are {','.join(layout.columns)})")
        repeated = sorted({column for column in columns if columns.count(column) > 1})
        if repeated:
            raise FileRefused(f"line 1: the header names {', '.join(repeated)} twice")
        line = reader.line_num
        for record in reader:
            number, line = line + 1, reader.line_num  # a quoted field may span lines: the record's first
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            if len(record) != len(columns):
                yield Row(number, {}, f"has {len(record)} field(s) where the header names {len(columns)}")
                continue
            yield Row(number, dict(zip(columns, (cell.strip() for cell in record), strict=True)))
    except csv.Error as error:
        raise FileRefused(f"line {reader.line_num}: not CSV: {error}") from None
