"""`tradehub serve`: the API, with projections, webhooks, dispatch, consumers, retention, and simulated agencies.

Each runs in a supervised child process, restarted if it dies and stopped
with `serve`; the broker is an embedded nats-server unless
TRADEHUB_BROKER_URL names one. How the parts scale out beside API replicas:
docs/architecture.md; the settings they read: docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import socket
import sys
from typing import Any

import uvicorn

from adapters.keyring import hub_signer, register_simulated
from hub.declarations import AGENCIES
from messaging.broker import HUB
from messaging.embedded import EmbeddedNats
from tradehub.api.app import create_app
from tradehub.auth import resolve_secret
from tradehub.bootstrap import ConfigurationError, Settings, build_hub, keep_private
from tradehub.retention import EVERY as RETENTION_EVERY
from tradehub.web import install_pages
from tradehub.worker import Supervised

# Nothing in the hub uses the client's address, so X-Forwarded-* is not worth parsing per request. The HTTP
# protocol is uvicorn's httptools one with bounds on each request's head (tradehub/http_limits.py).
UVICORN_OPTIONS: dict[str, Any] = {
    "proxy_headers": False,
    "http": "tradehub.http_limits:LimitedHttpToolsProtocol",
    "timeout_keep_alive": 5,
}


def app_from_environment():
    """The API with its pages, wired from the environment: uvicorn's factory in each worker process."""
    hub = build_hub(Settings.from_env())
    return install_pages(create_app(hub), hub)


def check_free(host: str, port: int) -> None:
    """`ConfigurationError` naming the port unless this process could listen on it now. Binding (with
    SO_REUSEADDR, as uvicorn does) rather than connecting: it also refuses an address this host does not have."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigurationError(f"--host {host}: {error.strerror}") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise ConfigurationError(
                        f"port {port} on {host} is already in use (another tradehub serve?): stop what listens "
                        "there, or pass --port with a free one") from None
                raise ConfigurationError(f"cannot listen on {host} port {port}: {error.strerror}") from None


def serve(settings: Settings, *, host: str, port: int, demo: bool, workers: int, access_log: bool,
          dispatching: bool = True, simulating: bool = False) -> int:
    """Run the API until stopped, with its supervised parts; exit status 0 once all are stopped."""
    check_free(host, port)  # before anything starts: a second serve must not start a second nats-server
    keep_private(settings.data_dir)  # before anything is written; the parts and nats-server inherit the umask
    secret = resolve_secret(settings.secret, settings.data_dir, demo=demo)
    settings = dataclasses.replace(settings, secret=secret)
    hub = build_hub(settings)
    store = "PostgreSQL" if settings.uses_postgres else f"SQLite at {settings.sqlite_path}"
    print(f"Trade hub on http://{host}:{port} ({store})", file=sys.stderr)
    if demo and not os.environ.get("TRADEHUB_SECRET"):
        print(f"local demo: tokens are signed with the secret in {settings.data_dir / 'secret'}; "
              "get one with: tradehub token issue --role admin", file=sys.stderr)
    broker = None
    simulators: dict[str, str] = {}  # what the simulated agencies alone are given
    if (dispatching or simulating) and not settings.broker_url:
        broker = EmbeddedNats.in_data_dir(settings.data_dir, cipher_key=settings.cipher_key)
        # For the workers, which read the environment: the URL, and who they are on it.
        os.environ["TRADEHUB_BROKER_URL"] = broker.url
        os.environ["TRADEHUB_BROKER_CREDENTIALS"] = str(broker.identities.seed(HUB))
        simulators["TRADEHUB_AGENCY_CREDENTIALS"] = str(broker.identities.directory)
        print(f"NATS JetStream on {broker.url} (store in {settings.data_dir / 'nats'}; identities in "
              f"{broker.identities.directory}: tradehub agencies credentials AGENCY)", file=sys.stderr)
    if dispatching or simulating:
        # The signing keys exist before any part starts (docs/signing.md): the hub's, and with the simulators
        # theirs, registered for their agencies, so their first answers are not refused as unregistered.
        hub_signer(settings.keys_dir)
        if simulating:
            register_simulated(settings.keys_dir, AGENCIES)
        print(f"signing keys and the agencies' certificates in {settings.keys_dir}: tradehub keys list",
              file=sys.stderr)
    parts = [Supervised("worker", "project"), Supervised("worker", "webhooks")]
    if dispatching:
        parts += [Supervised("worker", "dispatch"), Supervised("worker", "consume")]
    if simulating:
        parts.append(Supervised("agencies", "simulate", env=simulators))
    if settings.personal_data_days:  # the retention policy (docs/personal-data.md): none with 0, keep
        parts.append(Supervised("personal-data", "retention", "--every", f"{RETENTION_EVERY:g}"))
    for part in parts:
        part.start()
    # uvicorn re-raises the SIGTERM it caught once it has shut down; exit through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if workers > 1:
            # Worker processes rebuild the hub from the environment.
            os.environ["TRADEHUB_SECRET"] = secret
            uvicorn.run("tradehub.server:app_from_environment", factory=True, host=host, port=port,
                        workers=workers, access_log=access_log, log_level="info", **UVICORN_OPTIONS)
        else:
            app = install_pages(create_app(hub), hub)
            uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info", **UVICORN_OPTIONS)
    finally:
        for part in reversed(parts):
            part.stop()
        hub.close()
        if broker is not None:
            broker.stop()
    return 0
