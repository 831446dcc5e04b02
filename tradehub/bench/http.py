"""`tradehub bench http`: declarations accepted per second by a real `tradehub serve`.

In alternating rounds of one run (each phase starting once the views have
caught up with the last) it measures the raw single-row INSERT rate
(the bytes the hub stores, on the same database) and the API's peak rate with
`--clients` concurrent connections; then it offers half the peak rate, paced
open-loop, and reports latency from each request's scheduled time, so a
stalled server cannot hide its queue (no coordinated omission).

The load generator speaks minimal HTTP/1.1 over asyncio streams: an HTTP
library costs more CPU per request than the server under test does, on the
same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from hub.declarations import Declarations
from messaging.embedded import stop_processes
from tradehub.auth import issue_token
from tradehub.bench.common import (
    IN_MEMORY,
    RawInsert,
    fresh_database,
    percentile_ms,
    postgres_raw,
    postgres_server_url,
    required_postgres,
    sqlite_raw,
    stored_rows,
    synthetic_goods,
)
from tradehub.client import wait_until_healthy


def submissions(token: str, bodies: list[bytes]) -> list[bytes]:
    """Whole HTTP requests, built before the clock starts."""
    head = (b"POST /v1/declarations HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: ")
    return [head + str(len(body)).encode() + b"\r\n\r\n" + body for body in bodies]


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        start = head.lower().find(b"content-length:") + 15
        await self.reader.readexactly(int(head[start:head.index(b"\r\n", start)]))
        return int(head[9:12])

    def close(self) -> None:
        self.writer.close()


async def _peak(port: int, token: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    connections = [await Connection.open(port) for _ in range(clients)]
    queue = iter(submissions(token, bodies))
    latencies: list[float] = []

    async def client(connection: Connection) -> None:
        for request in queue:
            started = time.perf_counter()
            status = await connection.post(request)
            latencies.append(time.perf_counter() - started)
            if status not in (200, 201):
                raise RuntimeError(f"the server answered {status}")

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return len(bodies) / elapsed, latencies


async def _paced(port: int, token: str, bodies: list[bytes], rate: float) -> list[float]:
    """Offer `rate` requests per second on a schedule; latency counts from the scheduled time."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        idle.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    failures: list[int] = []

    async def one(scheduled: float, request: bytes) -> None:
        connection = await idle.get()
        status = await connection.post(request)
        latencies.append(time.perf_counter() - scheduled)
        idle.put_nowait(connection)
        if status not in (200, 201):
            failures.append(status)

    start, running = time.perf_counter(), set()
    for n, request in enumerate(submissions(token, bodies)):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        task = asyncio.create_task(one(scheduled, request))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    while not idle.empty():
        idle.get_nowait().close()
    if failures:
        raise RuntimeError(f"the server answered {sorted(set(failures))}")
    return latencies


def _without_gc(measurement: Any) -> Any:
    """Run a measurement with the load generator's collector off: its pauses are not the server's."""
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(measurement)
    finally:
        gc.enable()


def _settle(port: int, timeout: float = 120) -> None:
    """Wait until the views have caught up, so no phase pays for the previous one's backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        if not any(health.get("view_lag", {}).values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the views did not catch up within {timeout}s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _server(database: str, workers: int, data_dir: Path) -> Iterator[tuple[int, str]]:
    secret, port = secrets.token_urlsafe(48), _free_port()
    env = dict(os.environ, TRADEHUB_DATABASE_URL=database, TRADEHUB_SECRET=secret,
               TRADEHUB_DATA_DIR=str(data_dir))
    # The API tier alone: dispatch, a separate worker that can run elsewhere, is measured by its own bench.
    process = subprocess.Popen([sys.executable, "-m", "tradehub.cli", "serve", "--port", str(port),
                                "--workers", str(workers), "--no-dispatch"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_until_healthy(f"http://127.0.0.1:{port}", lambda: process.poll() is None):
            process.terminate()
            raise RuntimeError(f"serve did not start: {process.communicate()[1].decode()[-2000:]}")
        yield port, issue_token(secret, "admin")
    finally:
        stop_processes(process, timeout=20)


def run_http(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:8]
    warm_up = 200
    documents = synthetic_goods(warm_up + args.count + args.count // 2, run)
    bodies = [json.dumps(document).encode() for document in documents]
    mapper = Declarations(IN_MEMORY)
    rounds, size = args.rounds, args.count // args.rounds
    with tempfile.TemporaryDirectory(prefix="tradehub-bench-http-") as directory, \
            _target(args, Path(directory)) as (database, raw_insert):
        with _server(database, args.workers, Path(directory)) as (port, token):
            asyncio.run(_peak(port, token, bodies[:warm_up], args.clients))  # first connections, caches
            bodies, documents = bodies[warm_up:], documents[warm_up:]
            raw, peak, latencies = [], [], []
            for n in range(rounds):
                chunk = slice(n * size, (n + 1) * size)
                _settle(port)
                raw.append(raw_insert(stored_rows(mapper, documents[chunk])))
                rate, observed = _without_gc(_peak(port, token, bodies[chunk], args.clients))
                peak.append(rate)
                latencies += observed
            half = median(peak) / 2
            _settle(port)
            paced = _without_gc(_paced(port, token, bodies[rounds * size:], half))
    store = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
    print(f"http: {store}, {args.workers} API worker(s), {args.clients} concurrent clients, "
          f"{rounds} rounds of {size}; medians of the rounds")
    print(f"raw single-row INSERT        {median(raw):9.0f} rows/s")
    print(f"API peak (POST accepted)     {median(peak):9.0f} declarations/s   "
          f"{median(peak) / median(raw):6.1%} of raw   p50 {percentile_ms(latencies, .5):.1f} ms  "
          f"p99 {percentile_ms(latencies, .99):.1f} ms")
    print(f"API at half the peak         {half:9.0f} declarations/s offered   "
          f"p50 {percentile_ms(paced, .5):.1f} ms  p99 {percentile_ms(paced, .99):.1f} ms")
    return 0


@contextmanager
def _target(args: argparse.Namespace, directory: Path) -> Iterator[tuple[str, RawInsert]]:
    """The database the server uses, and a raw-INSERT measurer on the same database."""
    if args.store == "sqlite":
        yield f"sqlite:///{directory / 'hub.sqlite'}", sqlite_raw(directory / "raw.sqlite")
        return
    with required_postgres(postgres_server_url(args), "http") as target, fresh_database(target[0]) as database:
        yield database, postgres_raw(database, "public")
