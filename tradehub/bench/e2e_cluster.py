"""`tradehub bench e2e --cluster`: the e2e flow scaled out, and a broker node lost while it runs.

The layout docs/scale-out.md maps onto machines, here on one:

- a 3-node NATS JetStream cluster on loopback (messaging.embedded), each
  node with its own store, and each of the hub's streams kept on all three
  (R3: the streams are made by the workers' `ensure_streams`, which makes
  them R3 on a cluster);
- two submitting processes, each building the hub and submitting through
  the application with many threads, as two API replicas' workers do. HTTP
  is left out, as in the single-server e2e, so the two figures compare
  (`bench http` measures the API's own cost);
- dispatch split over two processes by agency (`worker dispatch --agency`),
  and consume, the projections and enforcement, and the simulated agencies
  each a process of their own, every one given all three nodes' URLs.

The latency at 100/s is measured as in `bench e2e`; then throughput twice,
over the same processes and the same cluster: steady, then with the node that
leads the outbound stream SIGKILLed a quarter into the offered load and
started again (same port, same store) up to 10 s later. Between the phases
every declaration of the first is released first.

Then the run is checked, and fails if any check does: every declaration
released; every message dispatch recorded as published is in the outbound
stream, once, and the agencies' consumers hold nothing unacknowledged; every
answer in the inbound stream was applied (or dead-lettered), and none twice:
no declaration has two AgencyResponded or InspectionRecorded events with the
same message id.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from eventsourcing.persistence import StoredEvent
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from hub.declarations import Declarations
from messaging.broker import (
    DEAD_STREAM,
    INBOUND_STREAM,
    OUTBOUND_STREAM,
    agency_durable,
    broker_servers,
)
from messaging.contract import inbound_consumer
from messaging.embedded import EmbeddedNatsCluster
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
from tradehub.bench.e2e import (
    LAG_SAMPLE,
    RELEASED_TOPIC,
    LagSampler,
    dispatch_latency,
    measure_released,
    paced,
    raw_publish,
    worker_processes,
)
from tradehub.bootstrap import VIEW_NAMES, Settings, build_hub

# The five agencies' dispatch over two processes, each with traffic: every goods declaration goes to customs
# and the port, some to inspection; maritime and border take vessel calls, which this bench does not submit.
DISPATCH_SPLIT = (("customs", "maritime"), ("port", "inspection", "border"))
AGENCIES = tuple(agency for group in DISPATCH_SPLIT for agency in group)
SUBMITTERS = 2
DOWN = 10.0  # seconds the killed node stays down, at most (a quarter of the offered load, if shorter)
ANSWER_TOPICS = tuple(f"hub.declarations.domainmodel:Declaration.{name}"
                      for name in ("AgencyResponded", "InspectionRecorded"))


def run_cluster_e2e(args: argparse.Namespace) -> int:
    run = uuid.uuid4().hex[:8]
    latency_count = int(100 * args.latency_seconds)
    offered = int(args.offered * args.duration)
    documents = synthetic_goods(latency_count + 2 * offered + 2000, run)
    phases = (documents[latency_count:latency_count + offered], documents[latency_count + offered:-2000])
    with tempfile.TemporaryDirectory(prefix="tradehub-bench-e2e-cluster-") as directory, \
            required_postgres(postgres_server_url(args), "e2e") as target:
        with fresh_database(target[0]) as database:
            cluster = EmbeddedNatsCluster(Path(directory) / "nats")
            try:
                raw_insert = postgres_raw(database, "public")(
                    stored_rows(Declarations(IN_MEMORY), documents[-2000:]))
                publish_rate = asyncio.run(raw_publish(cluster.url, 5000, replicas=len(cluster.nodes)))
                settings = Settings(data_dir=Path(directory), database_url=database, broker_url=cluster.url)
                hub = build_hub(settings)  # the tables, before the workers start
                try:
                    with worker_processes(settings, Path(directory), _commands()) as check:
                        replicas = asyncio.run(_replicas(cluster.url))
                        latencies = dispatch_latency(hub, cluster.url, documents[:latency_count])
                        steady = _phase(settings, database, phases[0], args.offered, check)
                        loss = NodeLoss(cluster, at=args.duration / 4, down=min(DOWN, args.duration / 4))
                        killed = _phase(settings, database, phases[1], args.offered, check, loss)
                    checks = Checks.of(hub, database, cluster.url)
                finally:
                    hub.close()
            finally:
                cluster.stop()
    _report(args, raw_insert, publish_rate, replicas, latencies, steady, killed, loss)
    checks.report()
    return 0 if checks.passed else 1


def _commands() -> list[tuple[str, ...]]:
    dispatch = [("worker", "dispatch", *(f"--agency={agency}" for agency in group)) for group in DISPATCH_SPLIT]
    return [*dispatch, ("worker", "consume"), ("worker", "project"), ("agencies", "simulate")]


@dataclass
class Phase:
    released: int
    seconds: float
    lags: list[float]

    @property
    def rate(self) -> float:
        return self.released / self.seconds


def _phase(settings: Settings, database: str, documents: list[dict], offered: int, check: Callable[[], None],
           loss: NodeLoss | None = None) -> Phase:
    """Offer `documents` at `offered`/s, split over the submitting processes; with `loss`, lose a node meanwhile."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(SUBMITTERS + 1)
    submitters = [context.Process(target=_submit, args=(settings, documents[n::SUBMITTERS], offered / SUBMITTERS,
                                                        start), name=f"submitter-{n}") for n in range(SUBMITTERS)]
    for process in submitters:
        process.start()

    def submit() -> None:
        start.wait(timeout=120)  # every submitter has built its hub: all start at once, now
        if loss is not None:
            loss.start()
        for process in submitters:
            process.join()
        if any(process.exitcode for process in submitters):
            raise RuntimeError("a submitting process failed (its traceback is above)")

    try:
        with LagSampler(database) as lag:
            released, seconds = measure_released(database, len(documents), submit, check)
    finally:
        for process in submitters:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        if loss is not None:
            loss.join()
    return Phase(released, seconds, lag.seconds())


def _submit(settings: Settings, documents: list[dict], rate: float, start) -> None:
    """A submitting process: its own hub (its own connections), through the application, as an API worker."""
    hub = build_hub(settings)
    try:
        start.wait(timeout=900)  # the parent waits for the previous phase to drain before it joins
        paced(documents, rate, hub.declarations.submit)
    finally:
        hub.close()


class NodeLoss:
    """SIGKILL the node leading the outbound stream `at` seconds from `start`, and start it again `down` s later."""

    def __init__(self, cluster: EmbeddedNatsCluster, *, at: float, down: float) -> None:
        self.cluster = cluster
        self.at = at
        self.down = down
        self.node = ""
        self.ready_after = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="node-loss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"losing and restarting node {self.node or '?'} failed") from self.error

    def _run(self) -> None:
        try:
            time.sleep(self.at)
            self.node = asyncio.run(_leader(self.cluster.url, OUTBOUND_STREAM))
            index = self.cluster.index_of(self.node)
            self.cluster.kill(index)
            time.sleep(self.down)
            restarted = time.perf_counter()
            self.cluster.restart(index)
            self.ready_after = time.perf_counter() - restarted
        except BaseException as error:  # noqa: BLE001 - reported by join, in the bench's thread
            self.error = error

    def describe(self) -> str:
        return (f"node {self.node}, the outbound stream's leader, SIGKILLed at {self.at:.0f} s, started again "
                f"{self.down:.0f} s later, caught up {self.ready_after:.1f} s after that")


async def _connected(url: str) -> Client:
    """A client of the cluster: any node that answers (one refusing, being down, is tried past quietly)."""
    async def quiet(_error: Exception) -> None: ...

    client = Client()
    await client.connect(servers=broker_servers(url), connect_timeout=5, error_cb=quiet)
    return client


async def _leader(url: str, stream: str) -> str:
    client = await _connected(url)
    try:
        return (await client.jetstream().stream_info(stream)).cluster.leader
    finally:
        await client.close()


async def _replicas(url: str, timeout: float = 120) -> dict[str, int]:
    """Once the workers have made the hub's streams and every agency's consumers (theirs and the hub's): each
    stream's replicas, as the workers made it."""
    client = await _connected(url)
    jetstream = client.jetstream()
    consumers = [(stream, durable) for agency in AGENCIES for stream, durable in (
        (OUTBOUND_STREAM, agency_durable(agency)), (INBOUND_STREAM, inbound_consumer(agency).durable))]
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                for stream, durable in consumers:
                    await jetstream.consumer_info(stream, durable)
                return {name: (await jetstream.stream_info(name)).config.num_replicas
                        for name in (OUTBOUND_STREAM, INBOUND_STREAM, DEAD_STREAM)}
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not make the streams and consumers within {timeout:.0f} s "
                                       "(their logs are in the bench's directory)") from None
                await asyncio.sleep(0.2)
    finally:
        await client.close()


def _report(args: argparse.Namespace, raw_insert: float, publish_rate: float, replicas: dict[str, int],
            latencies: list[float], steady: Phase, killed: Phase, loss: NodeLoss) -> None:
    streams = ", ".join(f"{name} R{count}" for name, count in replicas.items())
    split = " | ".join(", ".join(group) for group in DISPATCH_SPLIT)
    print(f"e2e --cluster: PostgreSQL and a 3-node nats-server cluster on loopback ({streams}); "
          f"{SUBMITTERS} submitting processes through the application; dispatch in 2 processes ({split}); consume, "
          "the projections and enforcement, and the simulated agencies each their own process")
    print(f"raw single-row INSERT          {raw_insert:9.0f} rows/s")
    print(f"raw JetStream publish, R3      {publish_rate:9.0f} messages/s (100 acknowledgements in flight)")
    for label, phase in (("submitted -> released", steady), ("  ... a node lost midway", killed)):
        print(f"{label:<30} {phase.rate:9.1f} declarations/s   {phase.rate / raw_insert:6.1%} of raw INSERT   "
              f"({phase.released} in {phase.seconds:.1f} s, offered {args.offered}/s for {args.duration} s)")
    print(f"  node lost                    {loss.describe()}")
    print(f"submit -> dispatched at 100/s  p50 {percentile_ms(latencies, .5):.0f} ms   "
          f"p99 {percentile_ms(latencies, .99):.0f} ms   ({len(latencies)} declarations)")
    for label, phase in (("projection lag, throughput", steady), ("  ... a node lost midway", killed)):
        print(f"{label:<30} p50 {percentile_ms(phase.lags, .5):.0f} ms   p99 {percentile_ms(phase.lags, .99):.0f} ms"
              f"   max {percentile_ms(phase.lags, 1):.0f} ms   ({len(phase.lags)} samples, every "
              f"{LAG_SAMPLE * 1000:.0f} ms, {len(VIEW_NAMES)} views)")


@dataclass
class Checks:
    """What the run must end with, read from the log, the message record and the cluster's streams."""

    submitted: int
    released: int
    published: int  # outbound messages dispatch recorded as acknowledged by the broker
    outbound_missing: int  # recorded, not in the stream
    outbound_twice: int  # stored in the stream more than once under one message id
    agencies_pending: int  # outbound messages the agencies' consumers have not acknowledged
    answers: int  # distinct answers in the inbound stream
    answers_twice: int
    recorded_answers: int
    unapplied: int  # in the inbound stream, neither applied nor dead-lettered
    dead: int
    applied_twice: int  # (declaration, message id) pairs applied more than once
    hub_pending: int  # answers the hub's consumers have not acknowledged
    failures: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, hub, database: str, url: str) -> Checks:
        import psycopg

        outbound, inbound, dead, pending = asyncio.run(_stream_contents(url))
        with psycopg.connect(database, autocommit=True) as connection:
            submitted, released = connection.execute(
                "SELECT count(*) FILTER (WHERE originator_version = 1), count(*) FILTER (WHERE topic = %s)"
                " FROM declarations_events", (RELEASED_TOPIC,)).fetchone()
            recorded = {(direction, agency, message_id) for direction, agency, message_id in connection.execute(
                "SELECT direction, agency, message_id FROM agency_messages")}
            applied = Counter(_applied_answers(hub, connection))
        published = {(agency, ident) for direction, agency, ident in recorded if direction == "outbound"}
        answered = {(agency, ident) for direction, agency, ident in recorded if direction == "inbound"}
        in_outbound = Counter((message.agency, message.message_id) for message in outbound)
        in_inbound = Counter((message.agency, message.message_id) for message in inbound)
        dead_letters = {message.dead_of for message in dead}
        unapplied = {(message.agency, message.message_id) for message in inbound
                     if (message.agency, message.message_id) not in answered and message.sequence not in dead_letters}
        return cls(
            submitted=submitted, released=released, published=len(published),
            outbound_missing=len(published - set(in_outbound)),
            outbound_twice=sum(count - 1 for count in in_outbound.values()),
            agencies_pending=pending["agencies"], answers=len(in_inbound),
            answers_twice=sum(count - 1 for count in in_inbound.values()), recorded_answers=len(answered),
            unapplied=len(unapplied), dead=len(dead_letters),
            applied_twice=sum(count - 1 for count in applied.values()), hub_pending=pending["hub"])

    def __post_init__(self) -> None:
        failed = {
            f"{self.submitted - self.released} declaration(s) not released": self.released < self.submitted,
            f"{self.outbound_missing} published message(s) missing from the stream": self.outbound_missing,
            f"{self.outbound_twice} message(s) stored twice": self.outbound_twice,
            f"{self.agencies_pending} message(s) the agencies have not acknowledged": self.agencies_pending,
            f"{self.answers_twice} answer(s) stored twice": self.answers_twice,
            f"{self.unapplied} answer(s) neither applied nor dead-lettered": self.unapplied,
            f"{self.applied_twice} answer(s) applied twice": self.applied_twice,
            f"{self.hub_pending} answer(s) the hub has not acknowledged": self.hub_pending,
        }
        self.failures = [reason for reason, bad in failed.items() if bad]

    @property
    def passed(self) -> bool:
        return not self.failures

    def report(self) -> None:
        print(f"checks: released               {self.released} of {self.submitted} declarations")
        print(f"  hub -> agencies              {self.published} recorded as published: {self.outbound_missing} "
              f"missing from the stream, {self.outbound_twice} stored twice, {self.agencies_pending} unacknowledged "
              "by the agencies")
        print(f"  agencies -> hub              {self.answers} answers in the stream ({self.answers_twice} stored "
              f"twice): {self.recorded_answers} recorded as applied, {self.dead} dead-lettered, {self.unapplied} "
              f"neither; {self.applied_twice} applied twice; {self.hub_pending} unacknowledged by the hub")
        print("  " + ("passed" if self.passed else "FAILED: " + "; ".join(self.failures)))


def _applied_answers(hub, connection) -> list[tuple[str, str]]:
    """(declaration, message id) of every answer the log says was applied, decoded as the application does."""
    rows = connection.execute(
        "SELECT originator_id, originator_version, topic, state FROM declarations_events WHERE topic = ANY(%s)",
        (list(ANSWER_TOPICS),))
    mapper = hub.declarations.mapper
    return [(str(originator), mapper.to_domain_event(StoredEvent(originator, version, topic, bytes(state))).message_id)
            for originator, version, topic, state in rows]


async def _stream_contents(url: str) -> tuple[list[Stored], list[Stored], list[Stored], dict[str, int]]:
    """Every message in the outbound, inbound and dead-letter streams; and how many the agencies' and the hub's
    durable consumers have yet to acknowledge."""
    client = await _connected(url)
    try:
        jetstream = client.jetstream()
        contents = [await _stored(jetstream, stream) for stream in (OUTBOUND_STREAM, INBOUND_STREAM, DEAD_STREAM)]
        pending = {"agencies": 0, "hub": 0}
        for agency in AGENCIES:
            for side, stream, durable in (("agencies", OUTBOUND_STREAM, agency_durable(agency)),
                                          ("hub", INBOUND_STREAM, inbound_consumer(agency).durable)):
                info = await jetstream.consumer_info(stream, durable)
                pending[side] += info.num_pending + info.num_ack_pending
        return (*contents, pending)
    finally:
        await client.close()


class Stored(NamedTuple):
    """A message in one of the hub's streams, as its headers say."""

    agency: str
    message_id: str  # Nats-Msg-Id
    sequence: str  # in its stream
    dead_of: str  # a dead letter's: the inbound stream's sequence of the answer it holds


async def _stored(jetstream, stream: str) -> list[Stored]:
    """Every message of `stream`, headers only, through an ephemeral consumer."""
    total = (await jetstream.stream_info(stream)).state.messages
    found: list[Stored] = []
    if not total:
        return found
    subscription = await jetstream.pull_subscribe(
        "tradehub.>", stream=stream, config=ConsumerConfig(headers_only=True, ack_policy=AckPolicy.NONE))
    try:
        while len(found) < total:
            for message in await subscription.fetch(1000, timeout=5):
                headers = message.headers or {}
                found.append(Stored(message.subject.rsplit(".", 1)[-1], headers.get("Nats-Msg-Id", ""),
                                    str(message.metadata.sequence.stream),
                                    headers.get("Tradehub-Stream-Sequence", "")))
    finally:
        await subscription.unsubscribe()
    return found
