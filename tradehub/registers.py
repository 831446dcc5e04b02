"""`tradehub parties import FILE`: load the business register from a CSV or JSON file (docs/licences.md).

Rows are checked one by one and reported by number, field and reason; the
rows that pass are stored, each whole or not at all (one party's events in one
save), and those that fail store nothing. A USCC listed twice refuses every
row that lists it: which one is right is for the file's author to say, not
for the order of the rows. Importing the same file again changes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hub.declarations import FieldError, PartyInvalid
from hub.declarations.documents import MalformedJSON, load_json
from hub.declarations.party import party_fields
from tradehub.bootstrap import Settings, build_declarations

COLUMNS = ("uscc", "name", "address", "status")
BATCH = 500  # rows read and saved together: one read and one transaction per batch


class FileRefused(ValueError):
    """The file as a whole cannot be read as a register (not UTF-8, not JSON, a missing column, ...)."""


@dataclass(frozen=True)
class Row:
    number: int  # the line of a CSV file (the header is line 1), the position (from 1) in a JSON array
    values: dict[str, Any]
    problem: str = ""  # why the row is no row at all (not an object; too many or too few CSV fields)


@dataclass(frozen=True)
class Refusal:
    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.message}"


def import_parties(args: argparse.Namespace, settings: Settings) -> int:
    """Check every row, store those that pass, report the others; exit 1 if any row was refused."""
    path: Path = args.file
    try:
        rows = read_rows(path)
    except FileRefused as error:
        print(f"tradehub: {path}: {error}", file=sys.stderr)
        return 2
    accepted, refusals = check_rows(rows)
    declarations = build_declarations(settings)
    counts: Counter[str] = Counter()
    try:
        with tqdm(total=len(rows), unit="row", desc="parties", file=sys.stderr, disable=None) as progress:
            progress.update(len(rows) - len(accepted))  # the refused ones are done with
            for start in range(0, len(accepted), BATCH):
                batch = accepted[start:start + BATCH]
                for registration in declarations.register_parties(batch, by=f"import:{path.name}"[:70]):
                    counts["registered" if registration.created else "changed" if registration.changed
                           else "unchanged"] += 1
                progress.update(len(batch))
    finally:
        declarations.close()
    for refusal in sorted(refusals, key=lambda refusal: refusal.row):
        print(f"{path}: {refusal}", file=sys.stderr)
    refused = len({refusal.row for refusal in refusals})
    print(f"{path}: {len(rows)} row(s): {counts['registered']} registered, {counts['changed']} changed, "
          f"{counts['unchanged']} unchanged, {refused} refused")
    return 1 if refused else 0


def check_rows(rows: Sequence[Row]) -> tuple[list[dict[str, str]], list[Refusal]]:
    """The rows' fields in canonical form, those that pass; and every refusal of those that do not."""
    refusals: list[Refusal] = []
    passed: list[tuple[Row, dict[str, str]]] = []
    for row in rows:
        if row.problem:
            refusals.append(Refusal(row.number, "row", row.problem))
            continue
        unknown = sorted(set(row.values) - set(COLUMNS))
        refusals += [Refusal(row.number, name, "is not a known field") for name in unknown]
        try:
            fields = party_fields(*(row.values.get(column) for column in COLUMNS))
        except PartyInvalid as error:
            refusals += [_refusal(row.number, found) for found in error.errors]
            continue
        if not unknown:
            passed.append((row, fields))
    listed: dict[str, list[int]] = {}
    for row, fields in passed:
        listed.setdefault(fields["uscc"], []).append(row.number)
    accepted = []
    for row, fields in passed:
        numbers = listed[fields["uscc"]]
        if len(numbers) > 1:
            others = ", ".join(str(number) for number in numbers if number != row.number)
            refusals.append(Refusal(row.number, "uscc", f"{fields['uscc']} is also listed in row(s) {others}: "
                                                        "list each party once"))
        else:
            accepted.append(fields)
    return accepted, refusals


def _refusal(number: int, error: FieldError) -> Refusal:
    return Refusal(number, error.path.removeprefix("$."), error.message)


def read_rows(path: Path) -> list[Row]:
    """The file's rows: JSON (an array of objects) if it starts with `[`, else CSV with a header line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileRefused(f"cannot read: {error.strerror}") from None
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return list(_json_rows(data))
    if start == b"{":
        raise FileRefused("a JSON register is an array of objects, each with uscc, name, address and status")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileRefused(f"byte {error.start} (0x{data[error.start]:02x}) is not valid UTF-8") from None
    return list(_csv_rows(text))


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


def _csv_rows(text: str) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise FileRefused("is empty: a CSV register starts with the header uscc,name,address,status")
        columns = [name.strip().lower() for name in header]
        missing = [column for column in COLUMNS if column not in columns]
        if missing:
            raise FileRefused(f"line 1: the header lacks the column(s) {', '.join(missing)} "
                              f"(it must name {','.join(COLUMNS)})")
        unknown = [column for column in columns if column not in COLUMNS]
        if unknown:
            raise FileRefused(f"line 1: unknown column(s) {', '.join(unknown)} (the columns are {','.join(COLUMNS)})")
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
