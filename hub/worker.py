"""`tradehub worker project|dispatch`, and the supervisor `serve` uses to keep them running.

Projections run in their own process: they then use the machine's other
core instead of competing with the API for one interpreter lock, and the
same command scales out beside API replicas on PostgreSQL (SPEC §9).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from hub.bootstrap import ConfigurationError, Settings, build_hub

log = logging.getLogger("tradehub.worker")
PARENT_ENV = "TRADEHUB_SUPERVISOR_PID"


def run_projections(settings: Settings) -> int:
    """Follow the log into every view until SIGTERM or SIGINT (or, when supervised, the parent dies)."""
    hub = build_hub(settings)
    if os.environ.get(PARENT_ENV):
        # Beside the API on one machine, views may lag a little; requests should not wait.
        os.nice(5)
    signal.signal(signal.SIGTERM, lambda *_: hub.runner.stop())
    signal.signal(signal.SIGINT, lambda *_: hub.runner.stop())
    parent = os.environ.get(PARENT_ENV)
    if parent:
        threading.Thread(target=_stop_when_orphaned, args=(int(parent), hub.runner.stop),
                         name="orphan-watch", daemon=True).start()
    try:
        hub.runner.follow()
    finally:
        hub.close()
    return 0


def run_dispatch(settings: Settings, agencies: Sequence[str]) -> int:
    """Dispatch each agency's messages to the broker until SIGTERM or SIGINT (or the parent dies)."""
    from messaging.broker import JetStreamPublisher
    from messaging.dispatch import AgencyDispatch
    from projections.runner import ProjectionRunner

    if not settings.broker_url:
        raise ConfigurationError("worker dispatch needs TRADEHUB_BROKER_URL (serve sets it for its own workers)")
    hub = build_hub(settings)
    if os.environ.get(PARENT_ENV):
        os.nice(5)  # beside the API on one machine, as the projections: requests come first
    publisher = JetStreamPublisher(settings.broker_url)
    runner = ProjectionRunner(hub.declarations, hub.views,
                              [AgencyDispatch(hub.declarations, agency, publisher) for agency in agencies])
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    parent = os.environ.get(PARENT_ENV)
    if parent:
        threading.Thread(target=_stop_when_orphaned, args=(int(parent), runner.stop),
                         name="orphan-watch", daemon=True).start()
    try:
        runner.follow()
    finally:
        publisher.close()
        hub.close()
    return 0


def _stop_when_orphaned(parent: int, stop: Callable[[], None]) -> None:
    """A supervised worker outlives a killed parent otherwise (kill -9 runs no clean-up)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    log.warning("parent %s is gone; stopping", parent)
    stop()


class Supervised:
    """A child `tradehub` process, restarted if it dies, stopped with its parent."""

    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, "-m", "hub.cli", *args]
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._keep_running, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _keep_running(self) -> None:
        while not self._stopping.is_set():
            self._process = subprocess.Popen(self.args, env={**os.environ, PARENT_ENV: str(os.getpid())})
            code = self._process.wait()
            if not self._stopping.is_set():
                log.error("%s exited with %s; restarting it", " ".join(self.args[3:]), code)
                self._stopping.wait(1)

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.join(timeout=10)
