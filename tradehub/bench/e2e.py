"""`tradehub bench e2e`: declarations from submit to released, over PostgreSQL and NATS JetStream.

The hub's parts run as they do in production, each its own process:
`tradehub worker dispatch`, `tradehub worker consume`, `tradehub worker
project` (the projections and the enforcement process, which settles gate-out
and releases) and `tradehub agencies simulate`, against a fresh PostgreSQL database and an embedded nats-server
with a fresh store. The bench process submits through the application (group
commit, many threads), as API workers do, and measures:

1. latency at a steady 100 declarations/s: from submit until the broker holds
   every routed agency's message (a plain subscription sees each as the
   server stores it);
2. throughput: declarations offered for `--duration` seconds faster than the
   hub can take them, then the time until the last one is released; rate =
   declarations released / that time;
3. projection lag meanwhile: every
   100 ms, the log's head and the position of the view furthest behind; the
   lag of a sample is how long ago the oldest event that view has yet to
   apply entered the log, bounded from above by the sample before it
   appeared (so the figures may overstate by up to 100 ms, never understate).

The raw baselines come from the same run, on the same services: single-row
INSERTs into the same database, and JetStream publishes with 100
acknowledgements in flight on a scratch stream of the same server.

With `--cluster` the same flow runs scaled out, with a node of the broker
killed midway (tradehub.bench.e2e_cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from nats.aio.client import Client

from hub.declarations import Declarations
from messaging.broker import broker_servers
from messaging.embedded import EmbeddedNats, stop_processes
from tradehub.bench.common import (
    IN_MEMORY,
    fresh_database,
    percentile_ms,
    postgres_raw,
    postgres_server_url,
    required_postgres,
    stored_rows,
    synthetic_goods,
)
from tradehub.bootstrap import VIEW_NAMES, Settings, build_hub

RELEASED_TOPIC = "hub.declarations.domainmodel:Declaration.Released"


def run_e2e(args: argparse.Namespace) -> int:
    if args.cluster:
        from tradehub.bench.e2e_cluster import run_cluster_e2e

        return run_cluster_e2e(args)
    run = uuid.uuid4().hex[:8]
    latency_count = int(100 * args.latency_seconds)
    offered = int(args.offered * args.duration)
    documents = synthetic_goods(latency_count + offered + 2000, run)
    with tempfile.TemporaryDirectory(prefix="tradehub-bench-e2e-") as directory, \
            required_postgres(postgres_server_url(args), "e2e") as target:
        with fresh_database(target[0]) as database:
            nats = EmbeddedNats(Path(directory) / "jetstream")
            try:
                raw_insert = postgres_raw(database, "public")(
                    stored_rows(Declarations(IN_MEMORY), documents[-2000:]))
                publish_rate = asyncio.run(raw_publish(nats.url, 5000))
                settings = Settings(data_dir=Path(directory), database_url=database, broker_url=nats.url)
                hub = build_hub(settings)  # the tables, before the workers start
                with worker_processes(settings, Path(directory)) as check:
                    try:
                        latencies = dispatch_latency(hub, nats.url, documents[:latency_count])
                        with LagSampler(database) as lag:
                            released, seconds = _throughput(hub, database, documents[latency_count:-2000],
                                                            args.offered, check)
                    finally:
                        hub.close()
            finally:
                nats.stop()
    rate = released / seconds
    print("e2e: PostgreSQL and an embedded nats-server (JetStream); dispatch, consume, the projections and "
          "enforcement, and the simulated agencies each their own process; submits through the application")
    print(f"raw single-row INSERT          {raw_insert:9.0f} rows/s")
    print(f"raw JetStream publish          {publish_rate:9.0f} messages/s (100 acknowledgements in flight)")
    print(f"submitted -> released          {rate:9.1f} declarations/s   {rate / raw_insert:6.1%} of raw INSERT   "
          f"({released} in {seconds:.1f} s, offered {args.offered}/s for {args.duration} s)")
    print(f"submit -> dispatched at 100/s  p50 {percentile_ms(latencies, .5):.0f} ms   "
          f"p99 {percentile_ms(latencies, .99):.0f} ms   ({len(latencies)} declarations)")
    lags = lag.seconds()
    print(f"projection lag, throughput     p50 {percentile_ms(lags, .5):.0f} ms   "
          f"p99 {percentile_ms(lags, .99):.0f} ms   "
          f"max {percentile_ms(lags, 1):.0f} ms   ({len(lags)} samples, every {LAG_SAMPLE * 1000:.0f} ms, "
          f"{len(VIEW_NAMES)} views)")
    return 0


WORKERS = (("worker", "dispatch"), ("worker", "consume"), ("worker", "project"), ("agencies", "simulate"))


@contextmanager
def worker_processes(settings: Settings, directory: Path,
                     commands: Sequence[tuple[str, ...]] = WORKERS) -> Iterator[Callable[[], None]]:
    """Each command a `tradehub` process of its own, its stderr in `directory/<n>-<last word>.log`; yields a
    check that raises if any of them has exited (a bench must not wait for work no one will do)."""
    env = dict(os.environ, TRADEHUB_DATABASE_URL=settings.database_url, TRADEHUB_BROKER_URL=settings.broker_url,
               TRADEHUB_DATA_DIR=str(directory), TRADEHUB_SECRET="bench-" + "x" * 40)
    logs = [directory / f"{number}-{command[1]}.log" for number, command in enumerate(commands)]
    processes = [subprocess.Popen([sys.executable, "-m", "tradehub.cli", *command], env=env, stdout=subprocess.DEVNULL,
                                  stderr=log.open("wb")) for command, log in zip(commands, logs, strict=True)]

    def check() -> None:
        for process, command, log in zip(processes, commands, logs, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited: {log.read_text()[-4000:]}")

    try:
        time.sleep(2)  # connected, streams and consumers created
        check()
        yield check
    finally:
        stop_processes(*processes, timeout=20)


async def raw_publish(url: str, count: int, replicas: int = 1) -> float:
    """JetStream publishes with 100 acknowledgements in flight, on a scratch stream kept on `replicas` servers:
    messages per second."""
    client = Client()
    await client.connect(servers=broker_servers(url))
    try:
        jetstream = client.jetstream()
        await jetstream.add_stream(name="BENCH_RAW", subjects=["bench.raw"], num_replicas=replicas)
        body = b"x" * 3000
        started = time.perf_counter()
        for start in range(0, count, 100):
            await asyncio.gather(*(jetstream.publish("bench.raw", body, headers={"Nats-Msg-Id": f"raw-{n}"})
                                   for n in range(start, min(count, start + 100))))
        rate = count / (time.perf_counter() - started)
        await jetstream.delete_stream("BENCH_RAW")
        return rate
    finally:
        await client.close()


def dispatch_latency(hub, url: str, documents: list[dict]) -> list[float]:
    """Submit at 100/s; for each declaration, seconds until every routed agency's message is on the broker."""
    arrived: dict[tuple[str, str], float] = {}
    stop = threading.Event()
    ready = threading.Event()

    async def observe() -> None:
        client = Client()
        await client.connect(servers=broker_servers(url))

        async def seen(message) -> None:
            headers = message.headers or {}
            key = (headers.get("Tradehub-Declaration-Id", ""), message.subject.rsplit(".", 1)[-1])
            arrived.setdefault(key, time.perf_counter())

        await client.subscribe("tradehub.out.*", cb=seen)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await client.close()

    observer = threading.Thread(target=lambda: asyncio.run(observe()), daemon=True)
    observer.start()
    ready.wait(10)
    submitted: dict[str, tuple[float, set[str]]] = {}
    lock = threading.Lock()

    def submit(document: dict) -> None:
        started = time.perf_counter()
        declaration = hub.declarations.submit(document).declaration
        with lock:
            submitted[str(declaration.id)] = (started, set(declaration.routed_agencies))

    paced(documents, 100, submit)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            all((ident, agency) in arrived for agency in agencies) for ident, (_, agencies) in submitted.items()):
        time.sleep(0.1)
    stop.set()
    observer.join(5)
    return [max(arrived[(ident, agency)] for agency in agencies) - started
            for ident, (started, agencies) in submitted.items()
            if all((ident, agency) in arrived for agency in agencies)]


def _throughput(hub, database: str, documents: list[dict], offered: int,
                check: Callable[[], None]) -> tuple[int, float]:
    """Declarations released, and the seconds from the first submit until the last release."""
    return measure_released(database, len(documents),
                            lambda: paced(documents, offered, lambda document: hub.declarations.submit(document)), check)


def measure_released(database: str, count: int, submit: Callable[[], None],
                     check: Callable[[], None] = lambda: None) -> tuple[int, float]:
    """Once every declaration submitted before is released: `submit()` (which submits `count` declarations);
    the declarations released since, and the seconds from its start until the last of them was. `check` is
    called while waiting, to stop waiting for work no one is doing (it raises)."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as connection:
        released = EventCounter(connection, "topic = %s", (RELEASED_TOPIC,))
        submitted = EventCounter(connection, "originator_version = 1")
        settled = time.monotonic() + 600  # the declarations of earlier phases first, so they are not counted here
        while released() < submitted() and time.monotonic() < settled:
            check()
            time.sleep(0.2)
        before = released()
        started = time.perf_counter()
        submit()
        deadline = time.monotonic() + 600
        last, total = time.perf_counter(), before
        while total - before < count and time.monotonic() < deadline:
            check()
            time.sleep(0.2)
            now_total = released()
            if now_total != total:
                total, last = now_total, time.perf_counter()
        return total - before, last - started


class EventCounter:
    """Events matching a condition, counted as the log grows: each call reads only the new part of the log
    (by its primary key), so measuring does not load the database it measures with a scan of the table."""

    def __init__(self, connection, condition: str, parameters: tuple = (), *,
                 table: str = "declarations_events") -> None:
        self.connection = connection
        self.query = (f"SELECT count(*) FILTER (WHERE {condition}), max(notification_id) FROM {table}"
                      " WHERE notification_id > %s")
        self.parameters = parameters
        self.seen = 0
        self.count = 0

    def __call__(self) -> int:
        matching, last = self.connection.execute(self.query, (*self.parameters, self.seen)).fetchone()
        if last is not None:
            self.count += matching
            self.seen = last
        return self.count


LAG_SAMPLE = 0.1  # seconds between samples of the projections' lag


class LagSampler:
    """The log's head and the slowest view's position, sampled on a thread of its own while in use."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.samples: list[tuple[float, int, int]] = []  # (time, head, slowest view's position)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        import psycopg

        with psycopg.connect(self.database, autocommit=True) as connection:
            while not self._stop.wait(LAG_SAMPLE):
                head, position = connection.execute(
                    "SELECT (SELECT COALESCE(max(notification_id), 0) FROM declarations_events),"
                    " (SELECT COALESCE(min(position), 0) FROM projection_tracking WHERE name = ANY(%s))",
                    (list(VIEW_NAMES),)).fetchone()
                self.samples.append((time.perf_counter(), head, position))

    def seconds(self) -> list[float]:
        """Each sample's lag: since the last sample before the oldest event not yet applied entered the log."""
        times = [moment for moment, _, _ in self.samples]
        heads = [head for _, head, _ in self.samples]
        lags = []
        for moment, head, position in self.samples:
            if position >= head:
                lags.append(0.0)
                continue
            appeared = bisect.bisect_right(heads, position)  # the first sample whose head includes it
            lags.append(moment - times[max(0, appeared - 1)])
        return lags


def paced(documents: list[dict], rate: float, submit) -> None:
    """Submit at `rate` per second from a pool of threads (never faster; slower if the hub pushes back)."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        started = time.perf_counter()
        futures = []
        for n, document in enumerate(documents):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(submit, document))
        for future in futures:
            future.result()
