"""`tradehub worker project|dispatch|consume|webhooks`, `tradehub agencies simulate`, and the supervisor `serve` uses to keep them running.

Projections run in their own process: they then use the machine's other
core instead of competing with the API for one interpreter lock, and the
same command scales out beside API replicas on PostgreSQL (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from messaging.broker import uses_rabbitmq
from messaging.consumers import consume, publisher_for
from messaging.credentials import CredentialsError, agency_credentials, check_credentials_file
from messaging.embedded import stop_processes
from tradehub.bootstrap import ConfigurationError, Settings, build_dispatch, build_hub, build_inbox, build_webhooks
from tradehub.retention import RETRY, sweep

log = logging.getLogger("tradehub.worker")
PARENT_ENV = "TRADEHUB_SUPERVISOR_PID"
# How much each worker lowers its CPU priority, for when parts share a machine (as under `serve`). The
# API is not lowered: requests come first. Then the projections and dispatch: the messages agencies wait
# for, and the views officers read. Then applying answers, which wait durably in the broker meanwhile.
# The simulated agencies stand in for other parties' systems and yield to the hub's own work as much.
NICENESS = {"project": 5, "dispatch": 5, "webhooks": 5, "consume": 10, "simulate": 10, "retention": 10}


def run_projections(settings: Settings) -> int:
    """Follow the log into every view until SIGTERM or SIGINT (or, when supervised, the parent dies)."""
    hub = build_hub(settings)
    _stop_on_signals(hub.runner.stop, niceness=NICENESS["project"])
    try:
        hub.runner.follow()
    finally:
        hub.close()
    return 0


def run_dispatch(settings: Settings, agencies: Sequence[str]) -> int:
    """Dispatch each agency's messages to the broker until SIGTERM or SIGINT (or the parent dies)."""
    url = _broker_url(settings, "dispatch")
    hub = build_hub(settings)
    publisher = publisher_for(url, credentials=_hub_credentials(settings), agencies=agencies)
    runner = build_dispatch(hub, agencies, publisher)
    _stop_on_signals(runner.stop, niceness=NICENESS["dispatch"])
    try:
        runner.follow()
    finally:
        publisher.close()
        hub.close()
    return 0


def run_webhooks(settings: Settings) -> int:
    """Turn notifications into webhook deliveries and send them until SIGTERM or SIGINT (or the parent dies).

    The follower runs on a thread, the sender on this one; stopping lets the attempts under way finish (each
    has its deadline, TRADEHUB_WEBHOOK_TIMEOUT).
    """
    hub = build_hub(settings)
    runner, sender = build_webhooks(hub)
    stop = threading.Event()

    def stopping() -> None:
        stop.set()
        runner.stop()

    _stop_on_signals(stopping, niceness=NICENESS["webhooks"])
    runner.start()
    try:
        asyncio.run(sender.run(stop))
    finally:
        runner.stop()
        hub.close()
    return 0


def run_consumers(settings: Settings, agencies: Sequence[str]) -> int:
    """Apply each agency's answers from the broker until SIGTERM or SIGINT (or the parent dies)."""
    url = _broker_url(settings, "consume")
    credentials = _hub_credentials(settings)
    hub = build_hub(settings)
    stop = threading.Event()
    _stop_on_signals(stop.set, niceness=NICENESS["consume"])
    try:
        asyncio.run(consume(url, build_inbox(hub), agencies, stop, credentials=credentials,
                            ready=lambda: log.info("consuming answers from %s", ", ".join(agencies))))
    finally:
        hub.close()
    return 0


def run_retention(settings: Settings, every: float) -> int:
    """Erase the personal data the retention policy makes due, now and every `every` seconds, until SIGTERM or
    SIGINT (or the parent dies). A run that fails as a whole (the store away) is tried again within a minute."""
    days = settings.personal_data_days
    if days <= 0:
        log.info("TRADEHUB_PERSONAL_DATA_DAYS is 0: personal data is kept; no retention runs")
        return 0
    hub = build_hub(settings)
    stop = threading.Event()
    _stop_on_signals(stop.set, niceness=NICENESS["retention"])
    try:
        while not stop.is_set():
            wait = every
            try:
                report = sweep(hub, days, stop=stop)
                log.info(report.line())
            except Exception:  # noqa: BLE001 - logged; the next run tries again
                log.exception("retention run failed; trying again in %.0f s", min(every, RETRY))
                wait = min(every, RETRY)
            stop.wait(wait)
    finally:
        hub.close()
    return 0


def run_simulators(settings: Settings, agencies: Sequence[str]) -> int:
    """Answer the hub as the simulated agencies until SIGTERM or SIGINT (or the parent dies)."""
    from simulators.agencies import Keys
    from simulators.runner import simulate

    url = _broker_url(settings, "agencies simulate")
    credentials = _agency_credentials(settings, agencies)
    keys = Keys.from_environment(agencies)  # the agencies' signing keys, registered with the hub
    stop = threading.Event()
    _stop_on_signals(stop.set, niceness=NICENESS["simulate"])
    asyncio.run(simulate(url, agencies, stop, credentials=credentials, keys=keys,
                         ready=lambda: log.info("simulating %s on %s", ", ".join(agencies), url)))
    return 0


def _broker_url(settings: Settings, command: str) -> str:
    if not settings.broker_url:
        raise ConfigurationError(f"{command} needs TRADEHUB_BROKER_URL (serve sets it for its own workers)")
    return settings.broker_url


def _hub_credentials(settings: Settings) -> Path | None:
    """The hub's NATS identity (TRADEHUB_BROKER_CREDENTIALS), checked before anything connects; on RabbitMQ
    the URL carries the user."""
    if not settings.broker_credentials or uses_rabbitmq(settings.broker_url):
        return None
    path = Path(settings.broker_credentials)
    try:
        check_credentials_file(path, "TRADEHUB_BROKER_CREDENTIALS")
    except CredentialsError as error:
        raise ConfigurationError(str(error)) from None
    return path


def _agency_credentials(settings: Settings, agencies: Sequence[str]) -> dict[str, Path] | None:
    """Each simulated agency's own identity, from the directory TRADEHUB_AGENCY_CREDENTIALS names; None: the
    simulators connect as the URL says (an open NATS, or RabbitMQ's user)."""
    if not settings.agency_credentials:
        return None
    try:
        return agency_credentials(Path(settings.agency_credentials), agencies, rabbit=uses_rabbitmq(settings.broker_url))
    except CredentialsError as error:
        raise ConfigurationError(f"TRADEHUB_AGENCY_CREDENTIALS: {error}") from None


def _stop_on_signals(stop: Callable[[], None], *, niceness: int) -> None:
    """SIGTERM and SIGINT stop the worker; so does, when supervised, its parent's death.

    The worker also lowers its CPU priority by `niceness` (NICENESS), whether supervised or not.
    """
    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGINT, lambda *_: stop())
    os.nice(niceness)
    parent = os.environ.get(PARENT_ENV)
    if parent:
        threading.Thread(target=_stop_when_orphaned, args=(int(parent), stop),
                         name="orphan-watch", daemon=True).start()


def _stop_when_orphaned(parent: int, stop: Callable[[], None]) -> None:
    """A supervised worker outlives a killed parent otherwise (kill -9 runs no clean-up)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    log.warning("parent %s is gone; stopping", parent)
    stop()


class Supervised:
    """A child `tradehub` process, restarted if it dies, stopped with its parent."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "tradehub.cli", *args]
        self.env = dict(env or {})  # beside the parent's environment: what this part alone is given
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._keep_running, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _keep_running(self) -> None:
        while not self._stopping.is_set():
            self._process = subprocess.Popen(self.args, env={**os.environ, **self.env, PARENT_ENV: str(os.getpid())})
            code = self._process.wait()
            if not self._stopping.is_set():
                log.error("%s exited with %s; restarting it", " ".join(self.args[3:]), code)
                self._stopping.wait(1)

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None:
            stop_processes(self._process)
        self._thread.join(timeout=10)
