"""Bounds on a request's head, over real sockets: size, field count, and the time to send it.

Most tests run uvicorn with the hub's protocol in a thread (its head timeout shortened); the last runs the
issue's scenario against a real `tradehub serve`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tradehub import http_limits
from tradehub.api.app import create_app
from tradehub.bootstrap import Settings, build_hub
from tradehub.http_limits import MAX_HEAD_BYTES, MAX_HEADER_FIELDS, LimitedHttpToolsProtocol
from tradehub.web import install_pages

from .conftest import SECRET

SHORT_TIMEOUT = 1.0


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """The hub's app behind uvicorn with the hub's protocol, on a thread; its head timeout is SHORT_TIMEOUT."""
    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT", SHORT_TIMEOUT)
    hub = build_hub(Settings(data_dir=tmp_path, secret=SECRET))
    config = uvicorn.Config(install_pages(create_app(hub), hub), host="127.0.0.1", port=0, lifespan="off",
                            http=LimitedHttpToolsProtocol, log_level="error", timeout_keep_alive=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)
    hub.close()


def request(address: tuple[str, int], head: bytes, timeout: float = 5) -> bytes:
    """Send a head, read the whole answer (the server closes, or answers with a Content-Length)."""
    with socket.create_connection(address, timeout=timeout) as connection:
        connection.sendall(head)
        return read_answer(connection)


def read_answer(connection: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        if length and len(body) >= int(length[0]):
            return received


def get(fields: list[bytes]) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: hub\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


def test_a_head_within_the_limits_is_served(served: tuple[str, int]):
    # 98 fields more (100 with Host and one long one), the whole head just under MAX_HEAD_BYTES.
    fields = [b"X-F%d: %s" % (n, b"v" * 100) for n in range(MAX_HEADER_FIELDS - 2)]
    fields.append(b"X-Long: " + b"a" * (MAX_HEAD_BYTES - len(get(fields)) - 200))
    assert len(get(fields)) < MAX_HEAD_BYTES
    assert request(served, get(fields)).startswith(b"HTTP/1.1 200")


def test_a_head_over_the_size_limit_gets_431_and_the_connection_is_closed(served: tuple[str, int]):
    answer = request(served, get([b"X-Long: " + b"a" * MAX_HEAD_BYTES]))
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"application/problem+json" in answer and b"headers-too-large" in answer


def test_more_header_fields_than_the_limit_get_431(served: tuple[str, int]):
    answer = request(served, get([b"X-F%d: 1" % n for n in range(MAX_HEADER_FIELDS)]))  # with Host, one too many
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_16_mb_header_is_refused_long_before_it_is_read(served: tuple[str, int]):
    """The issue's case: one 16 MB header got 200. Now the server answers 431 and closes once the head passes the
    limit; the client cannot even send it all (the kernel's buffers aside)."""
    sent = 0
    refused = False
    with socket.create_connection(served, timeout=5) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Huge: ")
        chunk = b"a" * 65536
        try:
            while sent < 16 * 1024 * 1024:
                connection.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            refused = True
        answer = read_answer(connection) if not refused else b""
    assert refused or answer.startswith(b"HTTP/1.1 431"), (sent, answer[:80])
    assert sent < 16 * 1024 * 1024


def test_half_open_and_slow_heads_are_closed_after_the_timeout_and_others_are_served(served: tuple[str, int]):
    silent = [socket.create_connection(served, timeout=10) for _ in range(100)]
    dripping = [socket.create_connection(served, timeout=10) for _ in range(100)]
    for connection in dripping:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
    started = time.monotonic()
    # A byte now and then does not reset the clock: the whole head must come within the timeout.
    while time.monotonic() - started < SHORT_TIMEOUT * 0.8:
        for connection in dripping:
            connection.sendall(b"a")
        assert request(served, get([])).startswith(b"HTTP/1.1 200")  # a normal client meanwhile
        time.sleep(0.1)
    answers = [read_answer(connection) for connection in silent + dripping]
    elapsed = time.monotonic() - started
    for connection in silent + dripping:
        connection.close()
    assert elapsed < SHORT_TIMEOUT + 3, elapsed
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), {answer[:20] for answer in answers}


def test_a_kept_alive_connection_serves_request_after_request_and_times_out_a_slow_next_head(
        served: tuple[str, int]):
    with socket.create_connection(served, timeout=5) as connection:
        for _ in range(3):
            connection.sendall(get([]))
            assert read_answer(connection).startswith(b"HTTP/1.1 200")
            time.sleep(SHORT_TIMEOUT * 0.6)  # idle between requests: the keep-alive timeout's business, longer
        connection.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        assert read_answer(connection).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < SHORT_TIMEOUT + 1


def test_a_request_with_a_body_is_not_timed_by_the_head_clock(served: tuple[str, int]):
    """The clock stops when the head is complete; the body's pace is not the head timeout's business."""
    body = b'{"reason": "x"}'
    with socket.create_connection(served, timeout=5) as connection:
        connection.sendall(b"POST /v1/declarations HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body))
        time.sleep(SHORT_TIMEOUT * 1.5)
        connection.sendall(body)
        assert read_answer(connection).startswith(b"HTTP/1.1 401")  # no token: the API's answer, not 408


@pytest.mark.slow
def test_serve_refuses_a_huge_header_and_closes_200_half_open_connections(tmp_path: Path):
    """The issue's scenario against a real `tradehub serve`, with its own timeout (http_limits.HEAD_TIMEOUT)."""
    from .test_server import Server, free_port

    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET=SECRET)
    env.pop("TRADEHUB_DATABASE_URL", None)
    env.pop("TRADEHUB_BROKER_URL", None)
    server = Server(env, free_port(), "--no-dispatch")
    address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    try:
        half_open = [socket.create_connection(address, timeout=http_limits.HEAD_TIMEOUT + 10) for _ in range(200)]
        started = time.monotonic()
        assert request(address, get([b"X-Long: " + b"a" * (64 * 1024)])).startswith(b"HTTP/1.1 431")
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        answers = [read_answer(connection) for connection in half_open]
        elapsed = time.monotonic() - started
        for connection in half_open:
            connection.close()
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers)
        assert elapsed < http_limits.HEAD_TIMEOUT + 5, elapsed
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
