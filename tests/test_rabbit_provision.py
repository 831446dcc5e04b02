"""`tradehub agencies provision`: each agency's own RabbitMQ user, limited to its own queues.

Needs a RabbitMQ at TRADEHUB_TEST_RABBIT_URL and its rabbitmqctl on this host (required under CI=true,
as the other RabbitMQ tests; skipped with the reason elsewhere). The users it makes are deleted after.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from itertools import permutations
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.declarations import AGENCIES
from messaging.broker import inbound_subject, outbound_subject
from messaging.provision import Rabbitmqctl, grant
from messaging.rabbit import EXCHANGE, agency_user

from .conftest import IN_CI

pytestmark = [pytest.mark.broker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
RABBIT_URL = os.environ.get("TRADEHUB_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672/")
PAIRS = list(permutations(AGENCIES, 2))


def provision(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEHUB_")}
    env.update(TRADEHUB_DATA_DIR=str(data_dir), TRADEHUB_BROKER_URL=RABBIT_URL)
    return subprocess.run([sys.executable, "-m", "tradehub.cli", "agencies", "provision"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def as_user(agency: str, data_dir: Path) -> str:
    password = (data_dir / "broker" / f"{agency}.password").read_text().strip()
    parts = urlsplit(RABBIT_URL)
    return urlunsplit(parts._replace(netloc=f"{agency_user(agency)}:{quote(password, safe='')}@"
                                            f"{parts.netloc.rpartition('@')[2]}"))


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    problem = None
    if shutil.which("rabbitmqctl") is None:
        problem = "no rabbitmqctl on this host"
    else:
        try:
            Rabbitmqctl().users()
        except Exception as error:  # noqa: BLE001 - no node, no cookie, no rights
            problem = f"rabbitmqctl cannot reach RabbitMQ: {error}"
    if problem:
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: RabbitMQ tests must run)", pytrace=False)
        pytest.skip(problem)
    data_dir = tmp_path_factory.mktemp("provision")
    first = provision(data_dir)
    if first.returncode != 0 and "no broker answers" in first.stderr and not IN_CI:
        pytest.skip(first.stderr.strip())
    assert first.returncode == 0, first.stderr
    yield data_dir
    ctl = Rabbitmqctl()
    for agency in AGENCIES:
        ctl("delete_user", agency_user(agency))


def test_provision_makes_private_passwords_and_can_run_again(provisioned: Path):
    broker = provisioned / "broker"
    assert stat.S_IMODE(broker.stat().st_mode) == 0o700
    before = {agency: (broker / f"{agency}.password").read_bytes() for agency in AGENCIES}
    for agency in AGENCIES:
        assert stat.S_IMODE((broker / f"{agency}.password").stat().st_mode) == 0o600
    again = provision(provisioned)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(updated)") == len(AGENCIES)
    assert {agency: (broker / f"{agency}.password").read_bytes() for agency in AGENCIES} == before
    for password in before.values():
        assert password.decode().strip() not in again.stdout + again.stderr  # a path is printed, never it
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADEHUB_")}
    env.update(TRADEHUB_DATA_DIR=str(provisioned), TRADEHUB_BROKER_URL=RABBIT_URL)
    shown = subprocess.run([sys.executable, "-m", "tradehub.cli", "agencies", "credentials", "customs"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "tradehub-customs" in shown.stdout and str((broker / "customs.password").resolve()) in shown.stdout
    assert before["customs"].decode().strip() not in shown.stdout


async def _refused(url: str, attempt) -> bool:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            await attempt(channel)
        except ChannelAccessRefused:
            return True
    return False


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(PAIRS))
def test_an_agency_answers_and_reads_as_itself_only(provisioned: Path, pair: tuple[str, str]):
    agency, other = pair
    url = as_user(agency, provisioned)
    marker = f"hub message {uuid.uuid4()}".encode()

    async def scenario():
        # Its own: an answer through its exchange reaches its inbound queue; it reads its outbound queue.
        hub = await aio_pika.connect(RABBIT_URL, timeout=10)
        async with hub:
            channel = await hub.channel()
            exchange = await channel.get_exchange(EXCHANGE.name)
            await exchange.publish(aio_pika.Message(marker), routing_key=outbound_subject(agency))
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            answers = await channel.get_exchange(inbound_subject(agency), ensure=False)
            await answers.publish(aio_pika.Message(b"its answer"), routing_key="")
            queue = await channel.declare_queue(outbound_subject(agency), passive=True)
            seen = []
            while marker not in seen:
                message = await queue.get(timeout=10, fail=True)
                await message.ack()
                seen.append(message.body)

        def exchange(name):
            async def publish(channel):
                target = await channel.get_exchange(name, ensure=False)
                await target.publish(aio_pika.Message(b"forged"), routing_key=inbound_subject(other))
            return publish

        async def consume(name):
            async def read(channel):
                queue = await channel.declare_queue(name, passive=True)
                await queue.get(timeout=5, fail=False)
            return read

        async def delete(channel):
            await channel.queue_delete(outbound_subject(other))

        async def declare(channel):
            await channel.declare_queue(f"{agency}-own-{uuid.uuid4().hex}", durable=True)

        async def bind(channel):
            queue = await channel.declare_queue(inbound_subject(agency), passive=True)
            await queue.bind(EXCHANGE.name, routing_key=outbound_subject(other))

        attempts = {
            "publish as the other through its exchange": exchange(inbound_subject(other)),
            "publish through the hub's exchange": exchange(EXCHANGE.name),
            "publish through the default exchange": exchange(""),
            "read the other's messages": await consume(outbound_subject(other)),
            "read the other's answers": await consume(inbound_subject(other)),
            "read its own answers back": await consume(inbound_subject(agency)),
            "delete the other's queue": delete,
            "declare a queue": declare,
            "bind its queue to the other's messages": bind,
        }
        for what, attempt in attempts.items():
            assert await _refused(url, attempt), f"{agency} could {what}"

    asyncio.run(scenario())


def test_the_grant_names_its_own_queues_only():
    for agency in AGENCIES:
        rights = grant(agency)
        assert rights.configure == "^$"
        for other in AGENCIES:
            for name in (inbound_subject(other), outbound_subject(other), EXCHANGE.name, "amq.default", ""):
                assert bool(re.search(rights.write, name)) == (name == inbound_subject(agency))
                assert bool(re.search(rights.read, name)) == (name == outbound_subject(agency))


def test_the_simulated_agencies_start_as_their_own_users(provisioned: Path):
    """Each on its own connection, as its own user: it looks its queue and exchange up without declaring
    them (it may not), and consumes its queue."""
    from messaging.credentials import agency_credentials
    from simulators.runner import simulate

    credentials = agency_credentials(provisioned / "broker", AGENCIES, rabbit=True)

    async def scenario():
        stop, ready = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(simulate(RABBIT_URL, AGENCIES, stop, ready=ready.set, credentials=credentials))
        done, _ = await asyncio.wait({running, asyncio.create_task(ready.wait())}, timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), running.exception() if running in done else "not ready in 60 s"
        stop.set()
        await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
