"""`tradehub bench rebuild`: every read model rebuilt from a log of 100,000+ events, against a raw read of it.

The log is written straight into a scratch PostgreSQL schema, as the hub
would have stored it: goods declarations in waves of 1,000 (submitted, then
each routed agency's receipt, then its decision, an inspection result where
the inspection agency is routed, and the overall release), so declarations'
events interleave as they do in a live log. Then, in the same run:

1. raw: every row of the event table read in notification order through a
   server-side cursor, nothing decoded;
2. rebuild: `tradehub projections rebuild`, all views: each reads the log,
   decodes the events and writes its rows with its position, batch by batch.

The figure is events of the log per second of rebuild, against rows per
second of the raw read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from hub.declarations import Declaration, Declarations
from tradehub.bench.common import postgres_server_url, required_postgres, synthetic_goods
from tradehub.bootstrap import Settings, build_hub

WAVE = 1000  # declarations whose events interleave in the log
RECEIPT = {"customs": "02", "inspection": "RCV", "port": "RCV", "maritime": "OK", "border": "OK"}
DECISION = {"customs": "08", "inspection": "REL", "port": "REL", "maritime": "Cleared", "border": "Cleared"}


def run_rebuild(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tradehub-bench-rebuild-") as directory, \
            required_postgres(postgres_server_url(args), "rebuild") as (server, schema):
        hub = build_hub(Settings(data_dir=Path(directory), database_url=server), schema=schema)
        try:
            events = _write_log(hub.declarations, args.declarations)
            raw_rows, raw_seconds = _raw_read(server, schema)
            started = time.perf_counter()
            applied = hub.runner.rebuild()
            seconds = time.perf_counter() - started
        finally:
            hub.close()
    raw, rate = raw_rows / raw_seconds, events / seconds
    print(f"rebuild: PostgreSQL, {events} events ({args.declarations} goods declarations), "
          f"{len(applied)} views: {', '.join(applied)}")
    print(f"raw read of the event table   {raw:10.0f} events/s   ({raw_rows} rows in {raw_seconds:.2f} s)")
    print(f"projections rebuild           {rate:10.0f} events/s   {rate / raw:6.1%} of raw read   "
          f"({seconds:.1f} s)")
    return 0


def _write_log(app: Declarations, count: int) -> int:
    """Store the events of `count` released goods declarations, in waves; the number of events."""
    documents = synthetic_goods(count, uuid.uuid4().hex[:8])
    total = 0
    for start in range(0, count, WAVE):
        wave = [app.prepare_submission(document) for document in documents[start:start + WAVE]]
        stages = [[event for declaration in wave for event in declaration.collect_events()]]
        for step in (_receipts, _decisions, _settled):
            for declaration in wave:
                step(declaration)
            stages.append([event for declaration in wave for event in declaration.collect_events()])
        for events in stages:
            app.recorder.insert_events([app.mapper.to_stored_event(event) for event in events])
            total += len(events)
    return total


def _receipts(declaration: Declaration) -> None:
    for agency in declaration.routed_agencies:
        declaration.record_response(agency, f"{agency}-receipt", "received", "2026-12-01T09:00:00Z",
                                    code=RECEIPT[agency])


def _decisions(declaration: Declaration) -> None:
    for agency in declaration.routed_agencies:
        if agency == "inspection":
            declaration.record_inspection(agency, "inspection-result", "pass", "2026-12-01T09:10:00Z")
        declaration.record_response(agency, f"{agency}-decision", "released", "2026-12-01T09:20:00Z",
                                    code=DECISION[agency])


def _settled(declaration: Declaration) -> None:
    """What the enforcement process records once every agency released: gate-out, then the release."""
    declaration.settle(declaration.version)


def _raw_read(server: str, schema: str) -> tuple[int, float]:
    """Every row of the event table, in log order, through a server-side cursor: (rows, seconds)."""
    with psycopg.connect(server) as connection:
        started = time.perf_counter()
        rows = 0
        with connection.cursor(name="raw_read") as cursor:
            cursor.itersize = 5000
            cursor.execute(SQL("SELECT notification_id, originator_id, originator_version, topic, state"
                               " FROM {}.declarations_events ORDER BY notification_id").format(Identifier(schema)))
            for _ in _rows(cursor):
                rows += 1
        return rows, time.perf_counter() - started


def _rows(cursor: Any) -> Iterator[tuple]:
    while batch := cursor.fetchmany(5000):
        yield from batch

