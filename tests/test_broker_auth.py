"""Authenticated, least-privilege broker access: who may connect, publish, pull and subscribe.

Every check runs against two real nats-servers: the embedded one `tradehub serve` starts
(messaging.embedded, identities generated into the data directory) and one started with the committed
production example, docs/examples/nats-server.conf, with generated keys put in. An agency is tried as
an attacker would: publishing as another, pulling another's consumer, listening on every inbox, making
consumers, deleting streams. RabbitMQ's per-agency users (`tradehub agencies provision`) are tried the
same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

import nats
import nkeys
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig

from hub.declarations import AGENCIES
from messaging.broker import (
    HUB,
    INBOUND_STREAM,
    OUTBOUND_STREAM,
    agency_durable,
    connect_options,
    ensure_streams,
    inbound_subject,
    inbox_prefix,
    outbound_subject,
)
from messaging.contract import durable_name as hub_durable
from messaging.credentials import (
    CredentialsError,
    Identities,
    agency_permissions,
    check_credentials_file,
    hub_permissions,
    permissions,
)
from messaging.embedded import BrokerUnavailable, EmbeddedNats, _answers, _free_port, nats_server_binary, stop_processes

from .conftest import IN_CI, SECRET

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "nats-server.conf"
REFUSED_WAIT = 0.5  # seconds a refused request is given before it counts as unanswered
PAIRS = list(permutations(AGENCIES, 2))


@dataclass
class Server:
    """A running nats-server with the hub's and the agencies' identities."""

    url: str
    identities: Identities
    stop: object
    log: Path


def _started(start):
    try:
        return start()
    except BrokerUnavailable as error:
        if IN_CI:
            pytest.fail(f"{error} (CI=true: broker tests must run)", pytrace=False)
        pytest.skip(str(error))


def example_config(identities: Identities, port: int, store: Path) -> str:
    """docs/examples/nats-server.conf with these keys, this port and this store."""
    text = EXAMPLE.read_text()
    for identity, key in identities.public_keys.items():
        text = text.replace(f"{identity.upper()}_PUBLIC_NKEY", key)
    system = nkeys.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)).public_key.decode()
    text = text.replace("SYSTEM_PUBLIC_NKEY", system)
    text = text.replace("listen: 127.0.0.1:4222", f"listen: 127.0.0.1:{port}")
    return text.replace('store_dir: "/var/lib/nats"', f'store_dir: "{store}"')


def start_example(directory: Path) -> Server:
    identities = Identities.ensure(directory / "keys")
    port = _free_port()
    config = directory / "nats-server.conf"
    config.write_text(example_config(identities, port, directory / "store"))
    log = directory / "nats.log"
    with log.open("ab") as output:
        process = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=output, stderr=output)
    deadline = time.monotonic() + 15
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_processes(process)
            raise BrokerUnavailable(f"the example nats-server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return Server(f"nats://127.0.0.1:{port}", identities, lambda: stop_processes(process), log)


def start_embedded(directory: Path) -> Server:
    server = EmbeddedNats.in_data_dir(directory)
    return Server(server.url, server.identities, server.stop, server.log)


@pytest.fixture(scope="module", params=["embedded", "example"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp(request.param)
    running = _started(lambda: (start_embedded if request.param == "embedded" else start_example)(directory))
    asyncio.run(_prepare(running))
    yield running
    running.stop()


async def _prepare(server: Server) -> None:
    """What the hub does when it starts: its streams, its consumers and every agency's."""
    hub = await Party.join(server, HUB)
    await ensure_streams(hub.js, AGENCIES)
    for agency in AGENCIES:
        await hub.js.pull_subscribe(inbound_subject(agency), durable=hub_durable(agency), stream=INBOUND_STREAM)
    assert not hub.violations(), hub.errors
    await hub.nc.close()


@dataclass
class Party:
    """A client connected as one identity, keeping every error the server sends it."""

    identity: str
    nc: nats.NATS
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def join(cls, server: Server, identity: str) -> Party:
        errors: list[str] = []

        async def keep(error: Exception) -> None:
            errors.append(str(error))

        nc = await nats.connect(server.url, nkeys_seed=str(server.identities.seed(identity)),
                                inbox_prefix=inbox_prefix(identity), error_cb=keep, allow_reconnect=False,
                                connect_timeout=5)
        return cls(identity, nc, errors)

    @property
    def js(self):
        return self.nc.jetstream(timeout=REFUSED_WAIT)

    def violations(self) -> list[str]:
        return [error for error in self.errors if "permissions violation" in error.lower()]

    async def publish_refused(self, subject: str) -> bool:
        """Publish on `subject`; whether the server refused it (its -ERR comes before the flush's PONG)."""
        before = len(self.violations())
        await self.nc.publish(subject, b"probe")
        await self.nc.flush(timeout=5)
        await asyncio.sleep(0.01)
        return any(f'publish to "{subject.lower()}"' in error.lower() for error in self.violations()[before:])

    async def subscribe_refused(self, subject: str):
        """Subscribe to `subject`: whether it was refused, and the subscription (to see it receives nothing)."""
        before = len(self.violations())
        subscription = await self.nc.subscribe(subject)
        await self.nc.flush(timeout=5)
        await asyncio.sleep(0.01)
        refused = any(f'subscription to "{subject.lower()}"' in error.lower()
                      for error in self.violations()[before:])
        return refused, subscription


async def border_pulls_one(server: EmbeddedNats) -> bytes:
    """What border pulls first from its consumer on `server` (restarted on a kept store), as itself."""
    border = await Party.join(Server(server.url, server.identities, server.stop, server.log), "border")
    pulled = await border.js.pull_subscribe_bind(durable=agency_durable("border"), stream=OUTBOUND_STREAM)
    [message] = await pulled.fetch(1, timeout=5)
    await border.nc.close()
    return message.data


def run(coroutine):
    return asyncio.run(coroutine)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` the rest."""
    pattern_tokens, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(pattern_tokens)


# ---- who may connect --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_anonymous_clients_and_unknown_keys_are_refused(server: Server, tmp_path: Path):
    async def scenario():
        with pytest.raises(Exception, match="Authorization Violation"):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        stranger = tmp_path / "stranger.nk"
        stranger.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        with pytest.raises(Exception, match="Authorization Violation"):
            await nats.connect(server.url, nkeys_seed=str(stranger), allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=3)

    run(scenario())


# ---- speaking as another agency ---------------------------------------------------------------------------

@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(PAIRS))
def test_an_agency_cannot_publish_as_another(server: Server, pair: tuple[str, str]):
    speaker, victim = pair
    forged = f"forged-{uuid.uuid4()}".encode()

    async def scenario():
        party = await Party.join(server, speaker)
        hub = await Party.join(server, HUB)
        try:
            assert await party.publish_refused(inbound_subject(victim))
            with pytest.raises(NatsTimeout):  # through JetStream: never stored, so never acknowledged
                await party.js.publish(inbound_subject(victim), forged, timeout=REFUSED_WAIT)
            ack = await party.js.publish(inbound_subject(speaker), b"its own answer")  # its own: stored
            assert ack.stream == INBOUND_STREAM
            # The hub's consumer of the victim's answers never sees the forged one.
            pulled = await hub.js.pull_subscribe_bind(durable=hub_durable(victim), stream=INBOUND_STREAM)
            try:
                messages = await pulled.fetch(1000, timeout=0.3)
            except TimeoutError:  # nats-py raises its own or asyncio's, depending on where the wait ends
                messages = []
            assert forged not in [message.data for message in messages]
            for message in messages:
                await message.ack()
            assert not hub.violations(), hub.errors
        finally:
            await party.nc.close()
            await hub.nc.close()

    run(scenario())


# ---- reading another agency's messages --------------------------------------------------------------------

@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(PAIRS))
def test_an_agency_reads_only_its_own_messages(server: Server, pair: tuple[str, str]):
    """Not by subscribing to the victim's subject or to anyone's inbox, not by pulling its consumer: the
    victim, pulling, gets its message, and the attacker's subscriptions stay empty."""
    reader, victim = pair
    secret = f"crew list {uuid.uuid4()}".encode()

    async def scenario():
        hub = await Party.join(server, HUB)
        attacker = await Party.join(server, reader)
        owner = await Party.join(server, victim)
        try:
            listening = []
            for subject in (">", "_INBOX.>", f"{inbox_prefix(victim)}.>", outbound_subject(victim), "tradehub.>",
                            f"{inbox_prefix(HUB)}.>", "$JS.>"):
                refused, subscription = await attacker.subscribe_refused(subject)
                assert refused, f"{reader} may subscribe to {subject}"
                listening.append(subscription)
            await hub.js.publish(outbound_subject(victim), secret, headers={"Nats-Msg-Id": secret.decode()})
            # Pulling the victim's consumer, or asking about it, is refused.
            pull = f"$JS.API.CONSUMER.MSG.NEXT.{OUTBOUND_STREAM}.{agency_durable(victim)}"
            assert await attacker.publish_refused(pull)
            assert await attacker.publish_refused(f"$JS.API.CONSUMER.INFO.{OUTBOUND_STREAM}.{agency_durable(victim)}")
            with pytest.raises(NatsTimeout):
                await attacker.nc.request(pull, b'{"batch": 10}', timeout=REFUSED_WAIT)
            # Its own consumer holds none of the victim's messages.
            own = await attacker.js.pull_subscribe_bind(durable=agency_durable(reader), stream=OUTBOUND_STREAM)
            try:
                mine = [message.data for message in await own.fetch(1000, timeout=0.3)]
            except TimeoutError:  # nats-py raises its own or asyncio's, depending on where the wait ends
                mine = []
            assert secret not in mine
            # The victim pulls it, into its own inbox, while the attacker listens on every inbox.
            theirs = await owner.js.pull_subscribe_bind(durable=agency_durable(victim), stream=OUTBOUND_STREAM)
            delivered = []
            deadline = asyncio.get_running_loop().time() + 20  # a loaded machine may take more than one fetch
            while secret not in delivered:
                try:
                    batch = await theirs.fetch(1000, timeout=2)
                except TimeoutError:  # nats-py's or asyncio's
                    assert asyncio.get_running_loop().time() < deadline, f"{victim} never got its message"
                    continue
                for message in batch:
                    await message.ack()
                delivered += [message.data for message in batch]
            await asyncio.sleep(0.1)
            for subscription in listening:
                assert subscription.pending_msgs == 0 and subscription.delivered == 0
            assert not owner.violations() and not hub.violations(), (owner.errors, hub.errors)
        finally:
            for party in (hub, attacker, owner):
                await party.nc.close()

    run(scenario())


@pytest.mark.slow
@pytest.mark.parametrize("agency", AGENCIES)
def test_an_agency_cannot_make_consumers_or_touch_the_streams(server: Server, agency: str):
    async def scenario():
        party = await Party.join(server, agency)
        try:
            js = party.js
            other = next(name for name in AGENCIES if name != agency)
            attempts = [
                js.add_consumer(OUTBOUND_STREAM, ConsumerConfig(filter_subject=outbound_subject(other))),
                js.add_consumer(OUTBOUND_STREAM, ConsumerConfig(durable_name=f"{agency}-own",
                                                                filter_subject=outbound_subject(agency))),
                js.delete_stream(OUTBOUND_STREAM), js.purge_stream(INBOUND_STREAM),
                js.stream_info(OUTBOUND_STREAM), js.get_msg(OUTBOUND_STREAM, 1),
                js.delete_consumer(OUTBOUND_STREAM, agency_durable(other)),
                js.add_stream(name="SHADOW", subjects=[outbound_subject(other)]),
            ]
            for attempt in attempts:
                with pytest.raises(NatsTimeout):
                    await attempt
            assert len(party.violations()) >= len(attempts)
        finally:
            await party.nc.close()
        hub = await Party.join(server, HUB)  # still there, untouched
        try:
            await ensure_streams(hub.js, AGENCIES)
            assert not hub.violations(), hub.errors
        finally:
            await hub.nc.close()

    run(scenario())


SUBJECT_TOKENS = st.sampled_from(["tradehub", "in", "out", "dead", "$JS", "API", "ACK", "CONSUMER", "STREAM",
                                  "MSG", "NEXT", "INFO", "CREATE", "DELETE", "PURGE", OUTBOUND_STREAM,
                                  INBOUND_STREAM, *AGENCIES, *(agency_durable(name) for name in AGENCIES),
                                  "_INBOX", "x", "1"])


def interesting_subjects(agency: str) -> list[str]:
    """Every subject another party uses, and the JetStream API around the agency's own."""
    subjects = [*hub_permissions().publish]
    for other in AGENCIES:
        subjects += [subject.replace(">", "1.1.1.1.1.1") for subject in agency_permissions(other).publish]
    return [*subjects, f"$JS.API.CONSUMER.DELETE.{OUTBOUND_STREAM}.{agency_durable(agency)}",
            f"$JS.API.STREAM.PURGE.{OUTBOUND_STREAM}", "$JS.API.INFO", "_INBOX.x", f"{inbox_prefix(agency)}.x",
            # a forged reply: a PubAck or API answer the hub (or another agency) would take as the server's
            *(f"{inbox_prefix(other)}.abc.1" for other in (HUB, *AGENCIES))]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_an_agency_may_publish_exactly_its_own_subjects(server: Server, data: st.DataObject):
    """For any agency and any subject, the server refuses the publish unless the agency's permissions name it."""
    agency = data.draw(st.sampled_from(AGENCIES))
    subjects = data.draw(st.lists(st.one_of(st.sampled_from(interesting_subjects(agency)),
                                            st.lists(SUBJECT_TOKENS, min_size=1, max_size=7).map(".".join)),
                                  min_size=1, max_size=8))
    allowed = agency_permissions(agency).publish

    async def scenario():
        party = await Party.join(server, agency)
        try:
            for subject in subjects:
                if subject == inbound_subject(agency) or subject.startswith("$JS.ACK."):
                    may = any(matches(pattern, subject) for pattern in allowed)
                    if may:  # a real publish there would be a stored answer, or an ack: checked elsewhere
                        continue
                may = any(matches(pattern, subject) for pattern in allowed)
                assert await party.publish_refused(subject) is not may, f"{agency} publishing on {subject}"
        finally:
            await party.nc.close()

    run(scenario())


def test_a_creds_file_or_a_seed_file_is_passed_as_such():
    assert connect_options("customs", Path("customs.creds")) == {"inbox_prefix": "_INBOX_customs",
                                                                 "user_credentials": "customs.creds"}
    assert connect_options(HUB, Path("hub.nk")) == {"inbox_prefix": "_INBOX_hub", "nkeys_seed": "hub.nk"}
    assert connect_options("simulators", None) == {"inbox_prefix": "_INBOX_simulators"}


def test_the_example_grants_what_the_embedded_server_grants():
    """docs/examples/nats-server.conf lists, per party, the very subjects messaging.credentials grants."""
    text = EXAMPLE.read_text()
    for identity in (HUB, *AGENCIES):
        block = re.search(rf"^{identity.upper()}_PERMISSIONS = {{(.*?)^}}", text, re.S | re.M)
        assert block, f"no {identity.upper()}_PERMISSIONS in {EXAMPLE.name}"
        publish, subscribe = re.search(r"publish: \{allow: \[(.*?)\]\}.*subscribe: \{allow: \[(.*?)\]\}",
                                       block.group(1), re.S).groups()
        granted = permissions(identity)
        assert re.findall(r'"([^"]+)"', publish) == list(granted.publish)
        assert re.findall(r'"([^"]+)"', subscribe) == list(granted.subscribe)


# ---- the embedded server's files --------------------------------------------------------------------------

def test_identities_are_private_files_kept_across_starts(tmp_path: Path):
    first = _started(lambda: EmbeddedNats.in_data_dir(tmp_path))
    keys, url = dict(first.identities.public_keys), first.url
    first.stop()
    broker = tmp_path / "broker"
    assert stat.S_IMODE(broker.stat().st_mode) == 0o700
    for path in broker.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for identity in (HUB, *AGENCIES):
        assert (broker / f"{identity}.nk").read_bytes().startswith(b"SU")
    config = (broker / "nats-server.conf").read_text()
    for identity in (HUB, *AGENCIES):  # public keys only, never a seed
        assert first.identities.public_keys[identity] in config
        assert (broker / f"{identity}.nk").read_text().strip() not in config
    assert f"max_payload: {16 * 1024 * 1024}" in config
    (broker / "border.nk").unlink()  # one lost: made again, the others kept
    second = _started(lambda: EmbeddedNats.in_data_dir(tmp_path))
    try:
        assert second.url == url  # the same port, free again: agencies keep their URL
        assert {k: v for k, v in second.identities.public_keys.items() if k != "border"} == \
            {k: v for k, v in keys.items() if k != "border"}
        assert second.identities.public_keys["border"] != keys["border"]
    finally:
        second.stop()


def test_a_seed_others_can_read_or_that_is_no_seed_is_refused(tmp_path: Path):
    identities = Identities.ensure(tmp_path / "broker")
    seed = identities.seed("customs")
    check_credentials_file(seed, "x")
    seed.chmod(0o644)
    with pytest.raises(CredentialsError, match="readable by other users"):
        check_credentials_file(seed, "TRADEHUB_BROKER_CREDENTIALS")
    junk = tmp_path / "junk.nk"
    junk.write_bytes(b"not a seed")
    junk.chmod(0o600)
    with pytest.raises(CredentialsError, match="no valid nkey seed"):
        check_credentials_file(junk, "TRADEHUB_BROKER_CREDENTIALS")
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    with pytest.raises(CredentialsError, match="open to other users"):
        Identities.ensure(tmp_path / "open")


def test_a_worker_with_unusable_credentials_stops_with_one_line(tmp_path: Path):
    seed = tmp_path / "hub.nk"
    seed.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    seed.chmod(0o644)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEHUB_")}
    env.update(TRADEHUB_DATA_DIR=str(tmp_path), TRADEHUB_BROKER_URL="nats://127.0.0.1:1",
               TRADEHUB_BROKER_CREDENTIALS=str(seed), TRADEHUB_SECRET=SECRET)
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "worker", "dispatch"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "TRADEHUB_BROKER_CREDENTIALS" in result.stderr and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


def test_credentials_command_prints_what_an_agency_needs(tmp_path: Path):
    server = _started(lambda: EmbeddedNats.in_data_dir(tmp_path))
    server.stop()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEHUB_")}
    env.update(TRADEHUB_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "agencies", "credentials", "customs"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert server.url in out and str((tmp_path / "broker" / "customs.nk").resolve()) in out
    assert "_INBOX_customs" in out and "tradehub-out-customs" in out and "tradehub.in.customs" in out
    assert server.identities.public_keys["customs"] in out
    assert (tmp_path / "broker" / "customs.nk").read_text().strip() not in out  # the path, never the seed
    empty = subprocess.run([sys.executable, "-m", "tradehub.cli", "agencies", "credentials", "customs"], cwd=ROOT,
                           env=dict(env, TRADEHUB_DATA_DIR=str(tmp_path / "none")), capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 2 and "tradehub serve" in empty.stderr and "Traceback" not in empty.stderr


# ---- encryption at rest -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cipher_key", ["", "a key for the hub's events"])
def test_the_store_is_encrypted_under_the_cipher_key(tmp_path: Path, cipher_key: str):
    marker = f"PASSENGER ZEBEDEE {uuid.uuid4().hex}".encode()
    server = _started(lambda: EmbeddedNats.in_data_dir(tmp_path, cipher_key=cipher_key))
    running = Server(server.url, server.identities, server.stop, server.log)

    async def publish():
        hub = await Party.join(running, HUB)
        await ensure_streams(hub.js, AGENCIES)
        await hub.js.publish(outbound_subject("border"), marker, headers={"Nats-Msg-Id": "crew-1"})
        await hub.nc.close()

    try:
        run(publish())
    finally:
        server.stop()
    found = [path for path in tmp_path.rglob("*") if path.is_file() and marker in path.read_bytes()]
    if cipher_key:
        assert found == []
        assert cipher_key.encode() not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    else:
        assert found  # the control: without a key, the store is readable (and the test can see it)
    if cipher_key:  # restarted with the key, the store opens and keeps its message
        again = _started(lambda: EmbeddedNats.in_data_dir(tmp_path, cipher_key=cipher_key))
        try:
            assert run(border_pulls_one(again)) == marker
        finally:
            again.stop()


# ---- the whole flow, each party as itself -----------------------------------------------------------------

@pytest.mark.slow
def test_the_hub_and_the_simulated_agencies_each_connect_as_themselves(tmp_path: Path):
    """Dispatch, consumers, projections and simulators as separate processes, the hub with its seed and each
    simulated agency with its own: everything is released, and the server refused nothing they asked."""
    from tradehub.bootstrap import Settings

    from .test_broker_flow import Flow

    class AuthenticatedFlow(Flow):
        @property
        def env(self) -> dict[str, str]:
            broker = self.settings.data_dir / "broker"
            return {**super().env, "TRADEHUB_BROKER_CREDENTIALS": str(broker / "hub.nk"),
                    "TRADEHUB_AGENCY_CREDENTIALS": str(broker)}

    nats_server = _started(lambda: EmbeddedNats.in_data_dir(tmp_path))
    flow = AuthenticatedFlow(Settings(data_dir=tmp_path, secret=SECRET, broker_url=nats_server.url), nats_server,
                             tmp_path / "nats")
    try:
        flow.start_all()
        flow.wait_released(flow.submit(2))
    finally:
        flow.close()
        nats_server.stop()
    log = nats_server.log.read_text()
    assert "Violation" not in log, log[-3000:]  # "Publish Violation", "Subscription Violation"
    assert "Authorization Violation" not in log and "authentication error" not in log, log[-3000:]


def test_a_store_encrypted_later_keeps_its_messages_and_refuses_another_key(tmp_path: Path):
    """A plaintext store given a key is encrypted on start, messages kept; a changed or dropped key is refused
    at once (nats-server would otherwise start without the streams it cannot read, and the hub would make
    empty ones in their place)."""
    from messaging.embedded import store_key

    marker = f"CREW MEMBER QUILLON {uuid.uuid4().hex}".encode()

    async def publish(server: EmbeddedNats) -> None:
        hub = await Party.join(Server(server.url, server.identities, server.stop, server.log), HUB)
        await ensure_streams(hub.js, AGENCIES)
        await hub.js.publish(outbound_subject("border"), marker, headers={"Nats-Msg-Id": "crew-2"})
        await hub.nc.close()

    plain = _started(lambda: EmbeddedNats.in_data_dir(tmp_path))
    try:
        run(publish(plain))
    finally:
        plain.stop()
    key = "the hub's cipher key"
    keyed = EmbeddedNats.in_data_dir(tmp_path, cipher_key=key)
    keyed.stop()
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    everything = b"".join(path.read_bytes() for path in files)
    assert marker not in everything
    assert key.encode() not in everything and store_key(key).encode() not in everything
    for wrong in ("another key", ""):
        with pytest.raises(BrokerUnavailable, match="TRADEHUB_CIPHER_KEY"):
            EmbeddedNats.in_data_dir(tmp_path, cipher_key=wrong)
    again = EmbeddedNats.in_data_dir(tmp_path, cipher_key=key)
    try:
        assert run(border_pulls_one(again)) == marker
    finally:
        again.stop()
