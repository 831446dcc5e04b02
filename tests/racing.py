"""Helpers for the tests that race callers against each other, in threads or in processes."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier


def race(count: int, action):
    """Run `action(n)` on `count` threads released at the same instant; outcomes (or errors) in order."""
    barrier = Barrier(count)

    def attempt(n: int):
        barrier.wait()
        try:
            return action(n)
        except Exception as error:  # noqa: BLE001 - the outcome under test
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
