"""`tradehub serve`: the API, with projections, dispatch, consumers and (if asked) simulated agencies.

Each runs in a supervised child process, restarted if it dies and stopped
with `serve`; the broker is an embedded nats-server unless
TRADEHUB_BROKER_URL names one. How the parts scale out beside API replicas:
docs/architecture.md; the settings they read: docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys

import uvicorn

from messaging.embedded import EmbeddedNats
from tradehub.api.app import create_app
from tradehub.auth import resolve_secret
from tradehub.bootstrap import Settings, build_hub
from tradehub.web import install_pages
from tradehub.worker import Supervised


def app_from_environment():
    """The API with its pages, wired from the environment: uvicorn's factory in each worker process."""
    hub = build_hub(Settings.from_env())
    return install_pages(create_app(hub), hub)


def serve(settings: Settings, *, host: str, port: int, demo: bool, workers: int, access_log: bool,
          dispatching: bool = True, simulating: bool = False) -> int:
    """Run the API until stopped, with its supervised parts; exit status 0 once all are stopped."""
    secret = resolve_secret(settings.secret, settings.data_dir, demo=demo)
    settings = dataclasses.replace(settings, secret=secret)
    hub = build_hub(settings)
    store = "PostgreSQL" if settings.uses_postgres else f"SQLite at {settings.sqlite_path}"
    print(f"Trade hub on http://{host}:{port} ({store})", file=sys.stderr)
    if demo and not os.environ.get("TRADEHUB_SECRET"):
        print(f"local demo: tokens are signed with the secret in {settings.data_dir / 'secret'}; "
              "get one with: tradehub token issue --role admin", file=sys.stderr)
    broker = None
    if (dispatching or simulating) and not settings.broker_url:
        broker = EmbeddedNats(settings.data_dir / "nats")
        os.environ["TRADEHUB_BROKER_URL"] = broker.url  # for the workers, which read the environment
        print(f"NATS JetStream on {broker.url} (store in {settings.data_dir / 'nats'})", file=sys.stderr)
    parts = [Supervised("worker", "project")]
    if dispatching:
        parts += [Supervised("worker", "dispatch"), Supervised("worker", "consume")]
    if simulating:
        parts.append(Supervised("agencies", "simulate"))
    for part in parts:
        part.start()
    # uvicorn re-raises the SIGTERM it caught once it has shut down; exit through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Nothing in the hub uses the client's address, so X-Forwarded-* is not worth parsing per request.
    try:
        if workers > 1:
            # Worker processes rebuild the hub from the environment.
            os.environ["TRADEHUB_SECRET"] = secret
            uvicorn.run("tradehub.server:app_from_environment", factory=True, host=host, port=port,
                        workers=workers, access_log=access_log, log_level="info", proxy_headers=False)
        else:
            app = install_pages(create_app(hub), hub)
            uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info", proxy_headers=False)
    finally:
        for part in reversed(parts):
            part.stop()
        hub.close()
        if broker is not None:
            broker.stop()
    return 0
