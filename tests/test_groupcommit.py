"""Group commit: concurrent writers share transactions, and a failing write fails alone."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.declarations.groupcommit import GroupCommit


class Store:
    """A fake store: each save is one transaction; events starting with 'bad' fail it."""

    def __init__(self, delay: float = 0.01) -> None:
        self.transactions: list[tuple[str, ...]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def save(self, *events: str) -> None:
        time.sleep(self.delay)
        if any(event.startswith("bad") for event in events):
            raise ValueError("integrity")
        with self.lock:
            self.transactions.append(events)


def test_a_lone_writer_commits_alone_without_waiting():
    store = Store(delay=0)
    GroupCommit(store.save).save(["a1", "a2"])
    assert store.transactions == [("a1", "a2")]


def test_concurrent_writers_share_transactions():
    store = Store()
    group = GroupCommit(store.save)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: group.save([f"e{n}"]), range(200)))
    committed = [event for transaction in store.transactions for event in transaction]
    assert sorted(committed) == sorted(f"e{n}" for n in range(200))
    assert len(store.transactions) < 100  # batched, not one transaction per write


def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_commits():
    store = Store()
    group = GroupCommit(store.save)

    def write(n: int) -> str:
        try:
            group.save([f"bad{n}" if n % 10 == 0 else f"e{n}"])
        except ValueError:
            return "failed"
        return "saved"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(write, range(100)))
    assert [n for n, o in enumerate(outcomes) if o == "failed"] == list(range(0, 100, 10))
    committed = {event for transaction in store.transactions for event in transaction}
    assert committed == {f"e{n}" for n in range(100) if n % 10}


def test_the_batch_size_is_bounded():
    store = Store()
    group = GroupCommit(store.save, max_batch=5)
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda n: group.save([f"e{n}"]), range(60)))
    assert max(len(t) for t in store.transactions) <= 5
    assert sum(len(t) for t in store.transactions) == 60


def test_an_interrupt_reaches_every_writer_of_the_batch():
    def save(*events: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GroupCommit(save).save(["e"])
