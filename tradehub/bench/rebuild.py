"""`tradehub bench rebuild`: every read model rebuilt from a log of 100,000+ events, against raw reads of it.

The log is written straight into a scratch PostgreSQL schema, as the hub
would have stored it: goods declarations in waves of 1,000 (submitted, then
each routed agency's receipt, then its decision, an inspection result where
the inspection agency is routed, and the overall release), so declarations'
events interleave as they do in a live log. Then, in the same run:

1. raw: every row of the event table read in notification order through a
   server-side cursor, nothing decoded;
2. read + decode: the log read through eventsourcing's recorder in the
   rebuild's batches and every event decoded by the application's mapper,
   no view written: the floor under any rebuild that goes through the library;
3. rebuild, 1 process: `tradehub projections rebuild`, all views, blue/green
   (built in a shadow schema, then swapped in: docs/rebuilds.md);
4. rebuild, N processes (`--processes`, default 2): the same, with the
   shadow filled by N processes (tradehub.rebuilds).

Each figure is events of the log per second. The targets (issue 20) are
ratios: 1 process against read + decode, N processes against 1 and against
the raw read.
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

from followers.runner import REBUILD_BATCH
from hub.declarations import Declaration, Declarations
from tradehub.bench.common import postgres_server_url, required_postgres, synthetic_goods
from tradehub.bootstrap import Settings, build_hub
from tradehub.rebuilds import parallel_fill

WAVE = 1000  # declarations whose events interleave in the log
RECEIPT = {"customs": "02", "inspection": "RCV", "port": "RCV", "maritime": "OK", "border": "OK"}
DECISION = {"customs": "08", "inspection": "REL", "port": "REL", "maritime": "Cleared", "border": "Cleared"}


def run_rebuild(args: argparse.Namespace) -> int:
    processes = max(2, args.processes)
    with tempfile.TemporaryDirectory(prefix="tradehub-bench-rebuild-") as directory, \
            required_postgres(postgres_server_url(args), "rebuild") as (server, schema):
        settings = Settings(data_dir=Path(directory), database_url=server)
        hub = build_hub(settings, schema=schema)
        try:
            events = _write_log(hub.declarations, args.declarations)
            raw_rows, raw_seconds = _raw_read(server, schema)
            decoded, decode_seconds = _read_and_decode(hub.declarations)
            started = time.perf_counter()
            applied = hub.runner.rebuild()
            one = time.perf_counter() - started
            started = time.perf_counter()
            hub.runner.rebuild(fill=parallel_fill(settings, schema, processes))
            many = time.perf_counter() - started
        finally:
            hub.close()
    raw, decode, rate, rate_many = raw_rows / raw_seconds, decoded / decode_seconds, events / one, events / many
    print(f"rebuild: PostgreSQL, {events} events ({args.declarations} goods declarations), "
          f"{len(applied)} views: {', '.join(applied)}")
    print(f"raw read of the event table   {raw:10.0f} events/s   ({raw_rows} rows in {raw_seconds:.2f} s)")
    print(f"read + decode, no views       {decode:10.0f} events/s   {decode / raw:6.1%} of raw read   "
          f"({decode_seconds:.1f} s)")
    print(f"rebuild, 1 process            {rate:10.0f} events/s   {rate / decode:6.1%} of read + decode   "
          f"{rate / raw:6.1%} of raw read   ({one:.1f} s)")
    print(f"rebuild, {processes} processes          {rate_many:10.0f} events/s   {rate_many / rate:5.2f}x 1 process   "
          f"{rate_many / raw:6.1%} of raw read   ({many:.1f} s)")
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


def _read_and_decode(app: Declarations) -> tuple[int, float]:
    """The whole log through the recorder, in the rebuild's batches, each event decoded: (events, seconds)."""
    started, position, count = time.perf_counter(), 0, 0
    while notifications := app.recorder.select_notifications(start=position, limit=REBUILD_BATCH,
                                                            inclusive_of_start=False):
        for notification in notifications:
            app.mapper.to_domain_event(notification)
        count += len(notifications)
        position = notifications[-1].id
    return count, time.perf_counter() - started
