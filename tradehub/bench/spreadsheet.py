"""`tradehub bench spreadsheet`: a ferry's passenger list converted from .xlsx to its declaration.

The workload is a vessel call with `--passengers` passengers (5,000 by
default, a large ferry's sailing) and a crew of 40, written by
`spreadsheets.fill` as a trader's upload would arrive: names in several
scripts, dates as date cells. Each round times, on the same bytes:

- raw: python-calamine opening the workbook and reading every sheet the hub
  reads into Python lists: the floor for any reader of these bytes;
- hub: `spreadsheets.to_declaration`, everything an upload goes through before
  it is stored (the zip and cell-extent checks, the read, the conversion of
  every cell and the hub's own validation of the document).

The issue's target is 2 s for 5,000 passengers; the figure is the median over
rounds, with its ratio to raw.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from datetime import date, timedelta
from statistics import median
from typing import Any

from tradehub import spreadsheets

TARGET_SECONDS = 2.0
# Names as a ferry's list holds them: accents, CJK, Cyrillic, Greek, apostrophes and hyphens.
FAMILY_NAMES = ("GARCÍA LÓPEZ", "MÜLLER", "O'BRIEN", "NGUYỄN", "ØSTERGÅRD", "KOWALSKA", "王", "李", "ΠΑΠΑΔΌΠΟΥΛΟΣ",
                "ИВАНОВА", "SMITH-JONES", "DUBOIS", "YILMAZ", "SZÉKELY", "JOHANSSON", "陈", "ROSSI", "ŠIMKŮ")
GIVEN_NAMES = ("María José", "Jürgen", "Siobhán", "Thị Lan", "Søren", "Zofia", "伟", "小红", "Γιώργος",
               "Анна", "Chloé", "Ahmet", "Zoltán", "Åsa", "Wei", "Giulia", "Jiří", "Noël")
NATIONALITIES = ("ES", "DE", "IE", "VN", "DK", "PL", "CN", "GR", "RU", "GB", "FR", "TR", "HU", "SE", "IT", "CZ")
PORTS = ("CNXMN", "CNSHA", "KRPUS", "JPYOK")


def ferry_call(passengers: int, seed: int = 18) -> dict[str, Any]:
    """A vessel call of a ferry with `passengers` passengers and 40 crew, deterministic for a seed."""
    rng = random.Random(seed)

    def person(number: int) -> dict[str, Any]:
        return {
            "family_name": rng.choice(FAMILY_NAMES), "given_names": rng.choice(GIVEN_NAMES),
            "nationality": rng.choice(NATIONALITIES),
            "date_of_birth": (date(1940, 1, 1) + timedelta(days=rng.randrange(30000))).isoformat(),
            "document": {"type": rng.choice(("passport", "identity_card")), "number": f"P{number:08d}"},
        }

    return {
        "kind": "vessel_call", "reference": f"FERRY-{passengers}", "direction": "arrival",
        "declarant": {"id": "91350200612003000Y", "name": "Xiamen Ocean Shipping Agency Co., Ltd."},
        "vessel": {"imo": "9074729", "name": "HAI XI STAR", "call_sign": "BQXY", "flag": "CN"},
        "voyage": "026N", "port_of_call": "CNXMN", "eta": "2026-12-01T08:00:00+08:00", "last_port": "KRPUS",
        "crew": [dict(person(n), rank=rng.choice(("Master", "Chief officer", "Able seaman", "Steward")))
                 for n in range(40)],
        "passengers": [dict(person(100 + n), port_of_embarkation=rng.choice(PORTS[2:]),
                            port_of_disembarkation=rng.choice(PORTS[:2])) for n in range(passengers)],
    }


def _raw_read(data: bytes) -> None:
    from python_calamine import CalamineWorkbook

    layout = spreadsheets.VESSEL_CALL
    with CalamineWorkbook.from_filelike(io.BytesIO(data)) as book:
        for name in (layout.form.sheet, *(table.sheet for table in layout.tables)):
            book.get_sheet_by_name(name).to_python(skip_empty_area=False)


def _seconds(work: Any, data: bytes) -> float:
    started = time.perf_counter()
    work(data)
    return time.perf_counter() - started


def run_spreadsheet(args: argparse.Namespace) -> int:
    document = ferry_call(args.passengers)
    data = spreadsheets.fill(document)
    if spreadsheets.to_declaration(data)["passengers"] != document["passengers"]:
        raise SystemExit("bench spreadsheet: the declaration read back differs from the list written")
    raw, hub = [], []
    for _ in range(args.rounds):
        raw.append(_seconds(_raw_read, data))
        hub.append(_seconds(spreadsheets.to_declaration, data))
    raw_s, hub_s = median(raw), median(hub)
    verdict = "met" if hub_s < TARGET_SECONDS else "MISSED"
    print(f"spreadsheet: a ferry call, {args.passengers} passengers and 40 crew, {len(data) // 1024} KB .xlsx; "
          f"medians of {args.rounds} rounds")
    print(f"raw calamine read          {raw_s:7.3f} s")
    print(f"hub to_declaration         {hub_s:7.3f} s   {hub_s / raw_s:5.1f}x raw   "
          f"target {TARGET_SECONDS:g} s: {verdict}")
    return 0
