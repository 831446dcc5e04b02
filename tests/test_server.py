"""A real `tradehub serve` process, driven over HTTP and by the CLI clients (R1, R2 over HTTP)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import httpx
import pytest

from messaging.embedded import stop_processes
from tradehub.client import wait_until_healthy

from . import samples
from .conftest import SECRET
from .racing import free_port

pytestmark = pytest.mark.slow  # every test runs `tradehub` in processes of its own

WRITERS = 16


def tradehub(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradehub.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


class Server:
    """A real `tradehub serve`; its output goes to a file (a pipe nobody reads would stall it once full), which
    `output()` reads back for a failure's message."""

    def __init__(self, env: dict[str, str], port: int, *flags: str) -> None:
        self.env, self.url = env, f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tradehub.cli", "serve", "--port", str(port), *flags], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_until_healthy(self.url, lambda: self.process.poll() is None, timeout=30):
            self.stop()
            raise RuntimeError(f"serve did not start:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def token(self, *args: str) -> str:
        return tradehub("token", "issue", *args, env=self.env).stdout.strip()

    def stop(self) -> None:
        stop_processes(self.process)
        self.log.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("postgres, 2 workers", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """`serve` on each store; with two API processes the races cross processes, not just threads."""
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET=SECRET)
    env.pop("TRADEHUB_DATABASE_URL", None)
    env.pop("TRADEHUB_BROKER_URL", None)  # serve starts its own nats-server, as on a fresh machine
    if request.param.startswith("postgres"):
        env["TRADEHUB_DATABASE_URL"] = request.getfixturevalue("postgres_database")
    flags = ("--workers", "2") if request.param.endswith("2 workers") else ()
    running = Server(env, free_port(), *flags)
    yield running
    running.stop()


def race(count: int, action):
    barrier = Barrier(count)

    def attempt(n: int):
        barrier.wait()
        return action(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


@pytest.mark.broker
def test_r1_concurrent_identical_submissions_over_http(server: Server):
    headers = {"Authorization": f"Bearer {server.token('--role', 'admin')}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        responses = race(WRITERS, lambda n: client.post("/v1/declarations", json=samples.goods(
            customs_office="3701" if n % 4 == 3 else "3702")))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    winner = next(r for r in responses if r.status_code == 201).json()
    for response in responses:
        if response.status_code == 200:
            assert response.json()["id"] == winner["id"]
            assert response.json()["document"]["customs_office"] == winner["document"]["customs_office"]
        else:
            assert response.status_code in (201, 409)
    # Every submission with the winner's content succeeded; every other one was a conflict.
    same = [n for n in range(WRITERS) if ("3701" if n % 4 == 3 else "3702") == winner["document"]["customs_office"]]
    assert sorted(n for n, r in enumerate(responses) if r.status_code in (200, 201)) == same


@pytest.mark.broker
def test_r2_concurrent_amendments_over_http_exactly_one_wins(server: Server):
    headers = {"Authorization": f"Bearer {server.token('--role', 'trader', '--party', samples.TRADER_A)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        declaration_id = client.post("/v1/declarations", json=samples.goods()).json()["id"]
        responses = race(WRITERS, lambda n: client.post(
            f"/v1/declarations/{declaration_id}/amendments",
            json={"expected_version": 1, "declaration": samples.goods(customs_office=f"38{n:02d}")}))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * (WRITERS - 1), statuses
        stored = client.get(f"/v1/declarations/{declaration_id}").json()
    winner = next(r for r in responses if r.status_code == 200).json()
    assert stored["version"] == 2
    assert stored["document"]["customs_office"] == winner["document"]["customs_office"]


@pytest.mark.broker
def test_serve_dispatches_each_routed_agency_its_messages(server: Server):
    headers = {"Authorization": f"Bearer {server.token('--role', 'admin')}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        declaration_id = client.post("/v1/declarations", json=samples.goods()).json()["id"]
        deadline, sent = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            sent = sorted(message["agency"] + "-" + message["type"]
                          for message in client.get(f"/v1/declarations/{declaration_id}/messages").json()["messages"])
            if len(sent) == 2:
                break
            time.sleep(0.2)
    assert sent == ["customs-declaration", "port-cargo-notice"]


@pytest.mark.broker
def test_cli_submit_status_and_history_against_the_server(server: Server, tmp_path: Path):
    files = []
    for name, document in (("a.json", samples.goods()), ("b.json", samples.goods(reference="SECOND")),
                           ("bad.json", samples.goods(reference="THIRD", items=[]))):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(document))
    (tmp_path / "broken.json").write_text("{")
    files.append(tmp_path / "broken.json")
    env = dict(server.env, TRADEHUB_URL=server.url,
               TRADEHUB_TOKEN=server.token("--role", "trader", "--party", samples.TRADER_A))
    first = tradehub("submit", *map(str, files), env=env)
    assert first.returncode == 1
    assert "2 accepted, 0 repeated, 2 rejected" in first.stdout
    assert f"{tmp_path / 'bad.json'}:   $.items: must not be empty" in first.stdout
    assert f"{tmp_path / 'broken.json'}: 400 Malformed JSON" in first.stdout
    again = tradehub("submit", *map(str, files[:2]), env=env)
    assert again.returncode == 0 and "0 accepted, 2 repeated, 0 rejected" in again.stdout
    declaration_id = httpx.post(f"{server.url}/v1/declarations", json=samples.goods(reference="SECOND"),
                                headers={"Authorization": f"Bearer {env['TRADEHUB_TOKEN']}"}).json()["id"]
    status = tradehub("status", declaration_id, env=env)
    assert status.returncode == 0
    assert "status SUBMITTED" in status.stdout and re.search(r"^customs +pending +every goods$", status.stdout, re.M)
    history = tradehub("history", declaration_id, env=env)
    assert history.returncode == 0 and "Submitted" in history.stdout
    missing = tradehub("status", "00000000-0000-0000-0000-000000000000", env=env)
    assert missing.returncode == 2 and "404" in missing.stderr


def test_cli_without_a_token_or_a_server_says_so(tmp_path: Path):
    env = dict(os.environ, TRADEHUB_URL=f"http://127.0.0.1:{free_port()}", TRADEHUB_TOKEN="t")
    result = tradehub("status", "x", env=env)
    assert result.returncode == 2 and "cannot reach" in result.stderr
    env.pop("TRADEHUB_TOKEN")
    result = tradehub("status", "x", env=env)
    assert result.returncode == 2 and "no token" in result.stderr


@pytest.mark.broker
def test_serve_refuses_a_weak_secret_unless_told_it_is_a_demo(tmp_path: Path):
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET="changeme")
    env.pop("TRADEHUB_DATABASE_URL", None)
    refused = tradehub("serve", "--port", str(free_port()), env=env, timeout=30)
    assert refused.returncode == 2 and "too weak" in refused.stderr and "Traceback" not in refused.stderr
    env.pop("TRADEHUB_SECRET")
    refused = tradehub("serve", "--port", str(free_port()), env=env, timeout=30)
    assert refused.returncode == 2 and "TRADEHUB_SECRET is not set" in refused.stderr
    demo = Server(dict(env), free_port(), "--demo")
    try:
        assert (tmp_path / "var" / "secret").exists()
        token = demo.token("--role", "admin")
        assert httpx.get(f"{demo.url}/v1/declarations", headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 200
    finally:
        demo.stop()


def _projection_worker(parent: int) -> int | None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
                command = cmdline.read()
        except OSError:
            continue
        if ppid == parent and b"worker\0project" in command:
            return int(pid)
    return None


@pytest.mark.broker
def test_serve_restarts_a_killed_projection_worker_and_the_board_catches_up(server: Server):
    import signal

    headers = {"Authorization": f"Bearer {server.token('--role', 'admin')}"}
    first = _projection_worker(server.process.pid)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    declaration_id = httpx.post(f"{server.url}/v1/declarations", json=samples.goods(),
                                headers=headers).json()["id"]
    deadline = time.monotonic() + 30
    listed: list[str] = []
    while time.monotonic() < deadline and declaration_id not in listed:
        time.sleep(0.2)
        listed = [item["id"] for item in httpx.get(f"{server.url}/v1/declarations", headers=headers
                                                   ).json()["items"]]
    assert declaration_id in listed
    second = _projection_worker(server.process.pid)
    assert second is not None and second != first


def test_serve_with_an_unreachable_database_says_so(tmp_path: Path):
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET=SECRET,
               TRADEHUB_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    result = tradehub("serve", "--port", str(free_port()), env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("tradehub: the store is unavailable")
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_busy_port_before_starting_anything(tmp_path: Path):
    """A second `serve` on a port in use must not start a second nats-server on the same store: it checks the
    port first, and says which."""
    import socket

    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET=SECRET)
    env.pop("TRADEHUB_BROKER_URL", None)
    env.pop("TRADEHUB_DATABASE_URL", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = tradehub("serve", "--port", str(port), env=env, timeout=30)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in refused.stderr
    assert not (tmp_path / "var").exists()  # no store, no nats-server, no keys: nothing was started
