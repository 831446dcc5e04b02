"""The whole flow over a real nats-server, with every part its own process, on SQLite and PostgreSQL.

`tradehub worker dispatch`, `tradehub worker consume` and `tradehub agencies
simulate` run as child processes against one embedded nats-server. The tests
submit declarations, then kill processes with SIGKILL (R3), stop the broker
(R4), deliver answers twice (R5) and send poison and hostile answers (R6), and
check that every routed agency got every message, that nothing was applied
twice and that refusals went to the dead letters with their reasons.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree
from nats.aio.client import Client

from adapters.signing import DSIG
from followers.inbox import Inbox
from messaging.broker import DEAD_STREAM, INBOUND_STREAM, OUTBOUND_STREAM, ensure_streams, inbound_subject
from messaging.consumers import consume
from messaging.embedded import BrokerUnavailable, EmbeddedNats, stop_processes
from messaging.outcomes import POISON
from projections.messages import recorded_messages
from simulators.agencies import Keys
from tradehub.bootstrap import Hub, Settings, build_hub

from .conftest import IN_CI, SECRET
from .messaging import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("goods-import.json", "goods-export.json", "vessel-arrival.json")
TIMEOUT = 90  # seconds for a flow to settle: far beyond what it takes, well inside the CI budget


class Flow:
    """A hub store, a nats-server and the hub's processes around them."""

    def __init__(self, settings: Settings, nats: EmbeddedNats | None = None, store: Path | None = None) -> None:
        self.settings = settings
        self.nats = nats
        self.store = store
        self.hub: Hub = build_hub(settings)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = settings.data_dir / "logs"
        self.logs.mkdir(exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEHUB_")}
        env.update(TRADEHUB_DATA_DIR=str(self.settings.data_dir), TRADEHUB_SECRET=SECRET,
                   TRADEHUB_BROKER_URL=self.nats.url if self.nats else self.settings.broker_url)
        if self.settings.database_url:
            env["TRADEHUB_DATABASE_URL"] = self.settings.database_url
        return env

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "tradehub.cli", *args], cwd=ROOT, env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        """Every part a release needs: dispatch, the consumers of answers, the enforcement process (which
        settles gate-out and releases) and the simulated agencies."""
        self.start("dispatch", "worker", "dispatch")
        self.start("consume", "worker", "consume")
        self.start("project", "worker", "project")
        self.start("simulate", "agencies", "simulate")

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        """SIGTERM: every part finishes what it holds and exits, well before it would be killed."""
        running = {name: process for name, process in self.processes.items() if process.poll() is None}
        stop_processes(*running.values(), timeout=15)
        self.processes.clear()
        # -SIGTERM: stopped while still starting, before it installed its handler (and held nothing).
        unclean = {name: process.returncode for name, process in running.items()
                   if process.returncode not in (0, -signal.SIGTERM)}
        assert not unclean, f"did not exit cleanly on SIGTERM: {unclean}\n{self.tail_logs()}"

    def stop_broker(self) -> None:
        self.nats.stop()

    def start_broker(self) -> None:
        """Again on the same port and store, as a restarted server would be."""
        self.nats = EmbeddedNats(self.store, port=self.nats.port)

    def submit(self, count: int = 1) -> list[str]:
        """The three examples, `count` times over with fresh references."""
        ids = []
        for round_ in range(count):
            for name in NAMES:
                document = json.loads((EXAMPLES / name).read_text())
                if round_:
                    document = copy.deepcopy(document)
                    document["reference"] = f"{document['reference']}-{round_}"
                ids.append(str(self.hub.declarations.submit(document).declaration.id))
        return ids

    def wait_released(self, ids: list[str]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            statuses = {ident: self.hub.declarations.get(ident).status for ident in ids}
            if all(status == "released" for status in statuses.values()):
                return
            time.sleep(0.25)
        raise AssertionError(f"not all released: {Counter(statuses.values())}\n{self.tail_logs()}")

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        """`wait_for`, failing with the processes' logs."""
        try:
            wait_for(condition)
        except AssertionError:
            raise AssertionError(f"{what}: not in {TIMEOUT} s\n{self.tail_logs()}") from None

    def tail_logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in self.logs.iterdir())

    def close(self) -> None:
        try:
            self.stop_all()
        finally:
            self.hub.close()


def started_nats(store: Path) -> EmbeddedNats:
    """A nats-server on `store`; where none can start, the test is skipped (failed under CI)."""
    try:
        return EmbeddedNats(store)
    except BrokerUnavailable as error:
        if IN_CI:
            pytest.fail(f"{error} (CI=true: broker tests must run)", pytrace=False)
        pytest.skip(str(error))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def flow(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flow]:
    database_url = request.getfixturevalue("postgres_database") if request.param == "postgres" else ""
    store = tmp_path / "jetstream"
    nats = started_nats(store)
    running = Flow(Settings(data_dir=tmp_path, database_url=database_url, secret=SECRET, broker_url=nats.url),
                   nats, store)
    yield running
    running.close()
    running.nats.stop()


def broker_call(url: str, work: Callable[[Client], object]):
    async def run():
        client = Client()
        await client.connect(url)
        try:
            return await work(client)
        finally:
            await client.close()
    return asyncio.run(run())


def stream_messages(url: str, stream: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Every message a stream holds: (subject, headers, body)."""
    async def read(client: Client):
        jetstream = client.jetstream()
        info = await jetstream.stream_info(stream)
        found = []
        if not info.state.messages:
            return found
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await jetstream.get_msg(stream, sequence)
            found.append((message.subject, dict(message.headers or {}), message.data))
        return found
    return broker_call(url, read)


def publish(url: str, subject: str, body: bytes, message_id: str) -> bool:
    """Publish to the inbound stream as an agency would; whether the broker stored it anew."""
    async def send(client: Client):
        ack = await client.jetstream().publish(subject, body, stream=INBOUND_STREAM,
                                                headers={"Nats-Msg-Id": message_id})
        return not ack.duplicate
    return broker_call(url, send)


def assert_nothing_lost_or_doubled(flow: Flow, ids: list[str]) -> None:
    """Every routed agency has every message of every version, once; no answer applied twice."""
    outbound = stream_messages(flow.nats.url, OUTBOUND_STREAM)
    stored = Counter(headers["Nats-Msg-Id"] for _, headers, _ in outbound)
    assert max(stored.values()) == 1, "a message stored twice"
    for ident in ids:
        sent = assert_each_answer_applied_once(flow, ident)
        assert all(stored[message_id] == 1 for _, message_id in sent), "a recorded message never reached the broker"


def assert_each_answer_applied_once(flow: Flow, ident: str) -> set[tuple[str, str]]:
    """Every routed agency was sent messages and none of its answers was applied twice; the messages sent."""
    declaration = flow.hub.declarations.get(ident)
    recorded = recorded_messages(flow.hub.views, ident)
    sent = {(row["agency"], row["message_id"]) for row in recorded if row["direction"] == "outbound"}
    assert {agency for agency, _ in sent} == set(declaration.routed_agencies)
    applied = [event["message_id"] for event in flow.hub.declarations.history(ident) if "message_id" in event]
    assert len(applied) == len(set(applied)), f"an answer applied twice to {ident}"
    return sent


@pytest.mark.broker
@pytest.mark.slow
def test_the_examples_go_from_submitted_to_released_with_every_message_listed(flow: Flow):
    ids = flow.submit()
    flow.start_all()
    flow.wait_released(ids)
    assert_nothing_lost_or_doubled(flow, ids)
    goods_import = recorded_messages(flow.hub.views, ids[0])
    port = [(row["direction"], row["type"]) for row in goods_import if row["agency"] == "port"]
    assert ("outbound", "release-notice") in port and ("inbound", "reply REL") in port
    inbound = {row["agency"] for row in goods_import if row["direction"] == "inbound"}
    assert inbound == {"customs", "inspection", "port"}
    assert stream_messages(flow.nats.url, DEAD_STREAM) == []


@pytest.mark.broker
@pytest.mark.slow
def test_the_shrimp_import_is_inspected_once_and_recognised_and_an_alert_holds_a_later_declaration(flow: Flow):
    app = flow.hub.declarations
    [shrimps] = [ident for ident, name in zip(flow.submit(), NAMES, strict=True) if name == "goods-import.json"]
    flow.start_all()
    flow.wait_released([shrimps])
    assert [inspection["agency"] for inspection in app.get(shrimps).inspections] == ["inspection"]
    customs = [row["type"] for row in recorded_messages(flow.hub.views, shrimps) if row["agency"] == "customs"]
    # Customs answers 05 and waits; it releases (08) only once the inspection result is recognised.
    assert "reply 05" in customs and customs.index("recognition-notice") < customs.index("reply 08")

    document = json.loads((EXAMPLES / "goods-import.json").read_text())
    container = document["containers"][-1]
    alert = app.raise_alert("container", container, "seal tampered at origin", "officer:customs")
    later = dict(document, reference="XM-IMP-LATER-1", containers=[container])
    held = str(app.submit(later).declaration.id)
    flow.wait(lambda: app.get(held).status == "held" and all(
        app.get(held).agencies[agency]["status"] == "released" for agency in ("customs", "inspection")),
        "the later declaration held, customs and inspection having released it")
    time.sleep(1)  # what dispatch would send the port for those releases, it has sent by now
    assert app.get(held).agencies["port"]["status"] != "released"  # the goods stay in the port (I1)
    assert "release-notice" not in [row["type"] for row in recorded_messages(flow.hub.views, held)]
    flow.wait(lambda: {row["agency"] for row in recorded_messages(flow.hub.views, held)
                       if row["type"] == "alert-notice"} == set(app.get(held).routed_agencies),
              "every routed agency told of the alert")
    app.clear_alert(alert.id, "officer:customs")
    flow.wait_released([held])  # a release notice, once the hold is lifted, and the port's release
    port = [row["type"] for row in recorded_messages(flow.hub.views, held) if row["agency"] == "port"]
    assert port.count("release-notice") == 1 and "reply REL" in port
    told = {row["agency"] for row in recorded_messages(flow.hub.views, held) if row["type"] == "alert-cleared-notice"}
    assert told <= set(app.get(held).routed_agencies)
    assert stream_messages(flow.nats.url, DEAD_STREAM) == []


@pytest.mark.broker
@pytest.mark.slow
def test_r3_processes_killed_at_several_points_lose_and_double_nothing(flow: Flow):
    ids = flow.submit(count=6)
    flow.start("simulate", "agencies", "simulate")
    for pause in (0.8, 1.5, 2.5):  # killed at different points: starting up, publishing, applying, settling
        flow.start("dispatch", "worker", "dispatch")
        flow.start("consume", "worker", "consume")
        flow.start("project", "worker", "project")
        time.sleep(pause)
        flow.kill("dispatch")
        time.sleep(pause / 3)
        flow.kill("consume")
        flow.kill("project")
    flow.kill("simulate")
    flow.start_all()
    flow.wait_released(ids)
    assert_nothing_lost_or_doubled(flow, ids)


@pytest.mark.broker
@pytest.mark.slow
def test_r4_the_broker_down_for_seconds_mid_flow_then_the_backlog_drains(flow: Flow):
    ids = flow.submit(count=4)
    flow.start_all()
    # Mid-flow: answers moving. Some parts may still be making their subscriptions; they must ride out the stop.
    flow.wait(lambda: stream_messages(flow.nats.url, INBOUND_STREAM), "answers moving")
    flow.stop_broker()
    ids += flow.submit(count=1)  # declarations keep coming: the log is the hub's, not the broker's
    time.sleep(3.0)
    flow.start_broker()
    flow.wait_released(ids)
    assert_nothing_lost_or_doubled(flow, ids)


@pytest.mark.parametrize("subscribing", ["pull consumers", "faststream subscribers"])
@pytest.mark.broker
@pytest.mark.slow
def test_a_worker_whose_broker_goes_away_while_it_subscribes_subscribes_once_it_is_back(tmp_path: Path,
                                                                                        subscribing: str):
    """Subscribing is a request per consumer; a broker lost in between is waited for, not a crash."""
    from faststream.nats import JStream, PullSub

    from messaging.broker import connect, consume_batches, nats_broker, run_until
    from messaging.contract import inbound_consumer

    store = tmp_path / "jetstream"
    nats = started_nats(store)
    broker_call(nats.url, lambda client: ensure_streams(client.jetstream()))
    ready, stop = threading.Event(), threading.Event()
    received: list[bytes] = []

    async def work() -> None:
        broker = nats_broker(nats.url, connect_timeout=10)
        if subscribing == "faststream subscribers":
            @broker.subscriber(inbound_subject("port"), stream=JStream(INBOUND_STREAM, declare=False),
                               durable="tradehub-in-port", pull_sub=PullSub(batch_size=1, timeout=1.0))
            async def take(message: bytes) -> None:
                received.append(message)

        async def take_batch(messages) -> None:
            for message in messages:
                received.append(message.data)
                await message.ack()

        await connect(broker, nats.url)
        nats.stop()  # connected, and gone before the subscription is asked for
        if subscribing == "faststream subscribers":
            await run_until(broker, stop, ready.set)
        else:
            await consume_batches(broker, [(inbound_consumer("port"), take_batch)], stop, batch=8, ready=ready.set)

    worker = threading.Thread(target=lambda: asyncio.run(work()))
    worker.start()
    try:
        time.sleep(2.0)
        assert not ready.is_set()
        nats = EmbeddedNats(store, port=nats.port)
        assert ready.wait(TIMEOUT), "never subscribed after the broker came back"
        publish(nats.url, inbound_subject("port"), b"<after/>", "after-1")
        wait_for(lambda: received == [b"<after/>"])
    finally:
        stop.set()
        worker.join(timeout=15)
        nats.stop()
    assert not worker.is_alive()


@pytest.mark.broker
@pytest.mark.slow
def test_a_worker_stopped_while_its_broker_is_away_exits_cleanly(tmp_path: Path):
    """Its connection is reconnecting, so it cannot be drained: it is closed as it is, without an error."""
    from messaging.broker import connect, consume_batches, nats_broker
    from messaging.contract import inbound_consumer

    nats = started_nats(tmp_path / "jetstream")
    broker_call(nats.url, lambda client: ensure_streams(client.jetstream()))
    ready, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def nothing(messages) -> None: ...

    async def work() -> None:
        broker = nats_broker(nats.url, connect_timeout=10)
        await connect(broker, nats.url)
        await consume_batches(broker, [(inbound_consumer("port"), nothing)], stop, batch=8, ready=ready.set)

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as error:  # noqa: BLE001 - what the test is about
            failures.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert ready.wait(TIMEOUT)
        nats.stop()
        time.sleep(1.0)  # the client has noticed, and is reconnecting
    finally:
        stop.set()
        worker.join(timeout=15)
    assert not worker.is_alive() and failures == []


@pytest.mark.broker
@pytest.mark.slow
def test_r5_an_answer_delivered_twice_is_applied_once_even_beyond_the_duplicate_window(flow: Flow):
    ids = flow.submit()
    flow.start_all()
    flow.wait_released(ids)
    flow.stop_all()
    ident = ids[1]  # goods-export
    [receipt] = [row for row in recorded_messages(flow.hub.views, ident)
                 if row["direction"] == "inbound" and row["agency"] == "customs" and row["type"] == "reply 02"]
    version = flow.hub.declarations.get(ident).version
    body = receipt["body"].encode()
    # Inside the window the broker drops the repeat; a new id stands for one outside it, stored again.
    assert publish(flow.nats.url, inbound_subject("customs"), body, receipt["message_id"]) is False
    assert publish(flow.nats.url, inbound_subject("customs"), body, "resent-after-window") is True
    flow.start("consume", "worker", "consume")
    flow.wait(lambda: consumer_pending(flow.nats.url, "customs") == 0, "customs answers consumed")
    assert flow.hub.declarations.get(ident).version == version
    rows = [row for row in recorded_messages(flow.hub.views, ident) if row["message_id"] == receipt["message_id"]]
    assert len(rows) == 1
    assert stream_messages(flow.nats.url, DEAD_STREAM) == []


HOSTILE = {
    "doctype": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
               b"<r>&b;</r>",
    "not-well-formed": b"<MetaData><unclosed></MetaData>",
    "unexpected-root": b'<Replies xmlns="urn:tradehub:port:1"/>',
    "xinclude": b'<MetaData xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></MetaData>',
    "schema-invalid": b'<MetaData xmlns="urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"/>',
}
GATE_REFUSALS = {"doctype", "not-well-formed", "xinclude"}
# Too large never reaches the hub over NATS: the server refuses payloads over its max_payload (1 MiB),
# which is also the gate's limit (test_xml_gate.py covers the gate's own refusal).


@pytest.mark.broker
@pytest.mark.slow
def test_r6_poison_and_hostile_answers_go_to_dead_letters_with_their_reason(flow: Flow):
    ids = flow.submit()
    flow.start_all()
    flow.wait_released(ids)
    flow.stop_all()
    before = {ident: flow.hub.declarations.get(ident).version for ident in ids}
    records = len(flow.hub.views.query("SELECT message_id FROM agency_messages"))
    keys = Keys.load(flow.settings.keys_dir, ["customs", "inspection"])  # the simulated agencies' own keys
    # The gate's refusals come before the signature is looked at; past the gate, an unsigned answer is refused
    # as such, and a signed one for what it says.
    hostile = {code: body for code, body in HOSTILE.items() if code in GATE_REFUSALS}
    hostile |= {code: keys.signers["customs"].sign(body) for code, body in HOSTILE.items()
                if code not in GATE_REFUSALS}
    hostile["unsigned"] = HOSTILE["schema-invalid"]
    for code, body in hostile.items():
        publish(flow.nats.url, inbound_subject("customs"), body, f"hostile-{code}")
    # A valid inspection answer about goods-export, which is not routed to inspection: once as the agency
    # signed it, changed after (bad-signature), once signed again by inspection (not-routed).
    [decision] = [row for row in recorded_messages(flow.hub.views, ids[0])
                  if row["direction"] == "inbound" and row["agency"] == "inspection"][:1]
    forged = decision["body"].replace(ids[0], ids[1]).encode()
    publish(flow.nats.url, inbound_subject("inspection"), forged, "forged-after-signing")
    unsigned = etree.fromstring(decision["body"].encode())
    unsigned.remove(unsigned.find(f"{{{DSIG}}}Signature"))
    resigned = keys.signers["inspection"].sign(etree.tostring(unsigned).replace(ids[0].encode(), ids[1].encode()))
    publish(flow.nats.url, inbound_subject("inspection"), resigned, "forged-not-routed")
    flow.start("consume", "worker", "consume")
    flow.wait(lambda: len(stream_messages(flow.nats.url, DEAD_STREAM)) == len(hostile) + 2, "every refusal dead")
    dead = {headers["Tradehub-Dead-Code"]: (subject, headers) for subject, headers, _ in
            stream_messages(flow.nats.url, DEAD_STREAM)}
    assert set(dead) == {*hostile, "not-routed", "bad-signature"}
    assert dead["not-routed"][0] == dead["bad-signature"][0] == "tradehub.dead.inspection"
    assert all(headers["Tradehub-Dead-Reason"] for _, headers in dead.values())
    assert {ident: flow.hub.declarations.get(ident).version for ident in ids} == before
    assert len(flow.hub.views.query("SELECT message_id FROM agency_messages")) == records
    flow.wait(lambda: consumer_pending(flow.nats.url, "customs") == 0, "refusals settled")  # never redelivered


@pytest.mark.broker
@pytest.mark.slow
def test_r6_a_message_the_hub_keeps_failing_on_is_dead_lettered_as_poison(flow: Flow):
    class Failing(Inbox):
        def receive_many(self, agency: str, bodies):
            raise RuntimeError("the store went away")

    broker_call(flow.nats.url, lambda client: ensure_streams(client.jetstream()))
    publish(flow.nats.url, inbound_subject("port"), b"<anything/>", "poison-1")
    stop = threading.Event()
    worker = threading.Thread(target=lambda: asyncio.run(consume(
        flow.nats.url, Failing(flow.hub.declarations, flow.hub.views), ["port"], stop, retry_delay=0.1)))
    worker.start()
    try:
        wait_for(lambda: len(stream_messages(flow.nats.url, DEAD_STREAM)) == 1)
    finally:
        stop.set()
        worker.join(timeout=15)
    [(subject, headers, body)] = stream_messages(flow.nats.url, DEAD_STREAM)
    assert (subject, headers["Tradehub-Dead-Code"], body) == ("tradehub.dead.port", POISON, b"<anything/>")
    assert "the store went away" in headers["Tradehub-Dead-Reason"]
    assert headers["Tradehub-Deliveries"] == "5"


def consumer_pending(url: str, agency: str) -> int:
    """Messages the hub's consumer for `agency` has not yet acknowledged or terminated."""
    async def info(client: Client):
        consumer = await client.jetstream().consumer_info(INBOUND_STREAM, f"tradehub-in-{agency}")
        return consumer.num_pending + consumer.num_ack_pending
    return broker_call(url, info)


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - not there yet (a consumer not created, say)
            pass
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_the_committed_asyncapi_document_is_current():
    from messaging.contract import document_text
    from tradehub.cli import CONTRACT_VERSION

    assert (ROOT / "asyncapi.json").read_text() == document_text(CONTRACT_VERSION), (
        "the broker contract changed: regenerate with `tradehub asyncapi > asyncapi.json`")


def test_the_asyncapi_document_names_every_agencys_subjects_and_the_dead_letters():
    channels = json.loads((ROOT / "asyncapi.json").read_text())["channels"]
    addresses = {channel["address"] for channel in channels.values()}
    from hub.declarations import AGENCIES

    assert addresses == {f"tradehub.{direction}.{agency}" for agency in AGENCIES for direction in ("out", "in", "dead")}
