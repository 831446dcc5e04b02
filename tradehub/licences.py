"""`tradehub licences`: load licences from a file into the store, and read them through the API (docs/licences.md).

`licences import FILE` reads a CSV file (header `number,type,issuer,holder,hs_scope,quantity,unit,valid_from,
valid_to`, and optionally `signature`) or a JSON array of such objects, and issues each licence straight into
the store the environment configures, as `tradehub keys` works on the configured keys:

- `hs_scope` in a CSV cell lists the prefixes separated by spaces or semicolons (`0201;020230`);
- a row with a `signature` keeps it: the issuer's own JWS in compact form (or, in JSON, the signature object
  `{"format", "value", "key"}`, which may be "xmldsig"), verified against the issuer's registered certificates
  before anything is stored; a row without one is signed by the hub with its issuing key for the issuer.

Each row is checked, signed or verified, and stored on its own, whole or not at all. A row that fails is
reported by its number (the CSV line, the header being line 1; the position in a JSON array, from 1), field and
reason, and stores nothing; the others are stored. Two rows giving one (issuer, number) different content are
both refused: which one is right is for the file's author to say, not the order of the rows. Importing the same
file again changes nothing (each licence is issued once; the same content again is "unchanged").

`licences show NUMBER` and `licences list` are clients of a running hub, as `tradehub status` is.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm import tqdm

from hub.declarations import Conflict, InvalidLicence
from hub.declarations.documents import validate_licence
from hub.declarations.licence import CONTENT_FIELDS
from tradehub.bootstrap import Settings, build_declarations
from tradehub.client import _client, _get, _table
from tradehub.rows import FileRefused, Layout, Refusal, Row, read_rows

COLUMNS = (*CONTENT_FIELDS, "signature")
REQUIRED = CONTENT_FIELDS
LAYOUT = Layout("file of licences", COLUMNS, REQUIRED)
_SEPARATORS = re.compile(r"[\s;]+")


@dataclass(frozen=True)
class Checked:
    """A row that passed the checks that need no store: the licence's fields and its signature (None: the hub
    signs it)."""

    row: int
    fields: dict[str, Any]
    signature: dict[str, str] | None


def import_licences(args: argparse.Namespace, settings: Settings) -> int:
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
    issued_by = f"import:{path.name}"[:70]
    try:
        with tqdm(total=len(rows), unit="row", desc="licences", file=sys.stderr, disable=None) as progress:
            progress.update(len(rows) - len(accepted))  # the refused ones are done with
            for entry in accepted:
                try:
                    issuance = declarations.issue_licence(entry.fields, issued_by, source="import",
                                                          signature=entry.signature)
                except InvalidLicence as error:  # the signature, checked against the issuer's keys
                    refusals += [Refusal.of(entry.row, found) for found in error.errors]
                except Conflict as error:
                    refusals.append(Refusal(entry.row, "number", str(error)))
                else:
                    counts["issued" if issuance.created else "unchanged"] += 1
                progress.update()
    finally:
        declarations.close()
    for refusal in sorted(refusals, key=lambda refusal: refusal.row):
        print(f"{path}: {refusal}", file=sys.stderr)
    refused = len({refusal.row for refusal in refusals})
    print(f"{path}: {len(rows)} row(s): {counts['issued']} issued, {counts['unchanged']} unchanged, "
          f"{refused} refused")
    return 1 if refused else 0


def check_rows(rows: list[Row]) -> tuple[list[Checked], list[Refusal]]:
    """The rows whose fields pass validation, and every refusal of the others; the signatures are verified
    when each licence is issued (they need the issuer's keys)."""
    refusals: list[Refusal] = []
    passed: list[Checked] = []
    for row in rows:
        if row.problem:
            refusals.append(Refusal(row.number, "row", row.problem))
            continue
        values = dict(row.values)
        raw_signature = values.pop("signature", None)
        if isinstance(values.get("hs_scope"), str):
            values["hs_scope"] = [prefix for prefix in _SEPARATORS.split(values["hs_scope"]) if prefix]
        found: list[Refusal] = []
        try:
            fields = validate_licence(values)
        except InvalidLicence as error:
            found += [Refusal.of(row.number, problem) for problem in error.errors]
            fields = {}
        try:
            signature = signature_of(raw_signature)
        except ValueError as error:
            found.append(Refusal(row.number, "signature", str(error)))
        refusals += found
        if not found:
            passed.append(Checked(row.number, fields, signature))
    return _without_clashes(passed, refusals)


def _without_clashes(passed: list[Checked], refusals: list[Refusal]) -> tuple[list[Checked], list[Refusal]]:
    """Refuse every row of an (issuer, number) listed with different content; identical ones are one licence."""
    listed: dict[tuple[str, str], list[Checked]] = {}
    for entry in passed:
        listed.setdefault((entry.fields["issuer"], entry.fields["number"]), []).append(entry)
    accepted = []
    for (issuer, number), entries in listed.items():
        if all(entry.fields == entries[0].fields and entry.signature == entries[0].signature for entry in entries):
            accepted += entries  # the first issues it, the others find it issued: "unchanged"
            continue
        for entry in entries:
            others = ", ".join(str(other.row) for other in entries if other is not entry)
            refusals.append(Refusal(entry.row, "number", f"licence {number} of {issuer} is also listed in row(s) "
                                                         f"{others} with other content: list each licence once"))
    return sorted(accepted, key=lambda entry: entry.row), refusals


def signature_of(raw: Any) -> dict[str, str] | None:
    """The signature a row carries: None for none (the hub signs), a JWS in compact form (its key read from its
    header), or a signature object; ValueError saying why it is none of these."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"format", "value", "key"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}: a signature has format, value and key")
        if not all(isinstance(value, str) for value in raw.values()):
            raise ValueError("format, value and key are strings")
        return dict(raw)
    if not isinstance(raw, str):
        raise ValueError("must be a JWS in compact form, or an object with format, value and key")
    value = raw.strip()
    if value.count(".") != 2:
        raise ValueError("is not a JWS in compact form (three base64url segments separated by dots)")
    return {"format": "jws", "value": value, **({"key": kid} if (kid := _kid(value)) else {})}


def _kid(value: str) -> str | None:
    """The `kid` a JWS's header names, if it can be read (the seal reads it strictly when it verifies)."""
    segment = value.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


# ---- through the API ------------------------------------------------------------------------------------

def show(number: str, *, url: str, token: str, issuer: str | None) -> int:
    """Print one licence: its fields, status, quantities, signature and ledger."""
    with _client(url, token) as client:
        licence = _get(client, f"/v1/licences/{quote(number, safe='')}", {"issuer": issuer} if issuer else None)
    print(f"{licence['type']} {licence['number']} of {licence['issuer']}  holder {licence['holder']}")
    print(f"status {licence['status'].upper()}  valid {licence['valid_from']} to {licence['valid_to']}  "
          f"HS {' '.join(licence['hs_scope'])}")
    print(f"quantity {licence['quantity']} {licence['unit']}: {licence['remaining']} remaining, "
          f"{licence['reserved']} reserved, {licence['consumed']} consumed")
    print(f"signed {licence['signature']['format']} by key {licence['signature']['key'] or '-'}; issued by "
          f"{licence['issued_by']} ({licence['source']}) at {licence['issued_at']}")
    for state in ("suspended", "revoked"):
        if licence[state]:
            print(f"{state} by {licence[state]['by']} at {licence[state]['at']}: {licence[state]['reason']}")
    if not licence["ledger"]:
        print("no declaration has cited it")
        return 0
    rows = [("TIME", "KIND", "DECLARATION", "VERSION", "QUANTITY", "REASON")]
    rows += [(entry["time"], entry["kind"], entry["declaration_id"], str(entry["declaration_version"]),
              f"{entry['quantity']} {entry['unit']}", entry["reason"]) for entry in licence["ledger"]]
    _table(rows)
    return 0


def listing(*, url: str, token: str, holder: str | None, limit: int) -> int:
    """Print the licences the token may see, one line each, up to `limit`, following the pages."""
    rows = [("NUMBER", "ISSUER", "TYPE", "HOLDER", "STATUS", "REMAINING", "QUANTITY", "VALID TO")]
    cursor: str | None = None
    with _client(url, token) as client:
        while len(rows) - 1 < limit:
            params = {key: value for key, value in (("holder", holder), ("cursor", cursor)) if value}
            params["limit"] = str(min(500, limit - (len(rows) - 1)))
            page = _get(client, "/v1/licences", params)
            rows += [(item["number"], item["issuer"], item["type"], item["holder"], item["status"],
                      f"{item['remaining']} {item['unit']}", item["quantity"], item["valid_to"])
                     for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    if len(rows) == 1:
        print("no licences")
        return 0
    _table(rows)
    return 0
