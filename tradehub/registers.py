"""`tradehub parties import FILE`: load the business register from a CSV or JSON file (docs/licences.md).

Rows are checked one by one and reported by number, field and reason; the
rows that pass are stored, each whole or not at all (one party's events in one
save), and those that fail store nothing. A USCC listed twice refuses every
row that lists it: which one is right is for the file's author to say, not
for the order of the rows. Importing the same file again changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from hub.declarations import PartyInvalid
from hub.declarations.party import party_fields
from tradehub.bootstrap import Settings, build_declarations
from tradehub.rows import FileRefused, Layout, Refusal, Row, read_rows

COLUMNS = ("uscc", "name", "address", "status")
LAYOUT = Layout("register", COLUMNS, COLUMNS)
BATCH = 500  # rows read and saved together: one read and one transaction per batch


def import_parties(args: argparse.Namespace, settings: Settings) -> int:
    """Check every row, store those that pass, report the others; exit 1 if any row was refused."""
    path: Path = args.file
    try:
        rows = read_rows(path, LAYOUT)
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
            refusals += [Refusal.of(row.number, found) for found in error.errors]
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
