"""Group commit: concurrent writers share transactions, and a failing write fails alone."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.declarations.groupcommit import AsyncGroupCommit, GroupCommit, _Write, commit


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


def test_an_interrupt_while_isolating_a_fault_leaves_no_write_falsely_saved():
    saved: list[str] = []

    def save(*events: str) -> None:
        if len(events) > 1:
            raise ValueError("one of these is a duplicate")
        if events == ("b",):
            raise SystemExit
        saved.extend(events)

    batch = [_Write([name]) for name in "abc"]
    with pytest.raises(SystemExit):
        commit(save, batch)
    assert saved == ["a"]
    assert [(w.done, type(w.error).__name__) for w in batch] == [
        (True, "NoneType"), (True, "SystemExit"), (True, "SystemExit")]


def test_an_interrupted_follower_does_not_stall_later_writers():
    saved: list[str] = []
    gate = threading.Event()

    def save(*events: str) -> None:
        if "slow" in events:
            gate.wait(10)
        saved.extend(events)

    group = GroupCommit(save)
    leader = threading.Thread(target=group.save, args=(["slow"],))
    leader.start()
    time.sleep(0.1)
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        group.save(["interrupted"])  # the main thread follows the leader, and is interrupted
    gate.set()
    leader.join(10)
    late = threading.Thread(target=group.save, args=(["late"],), daemon=True)
    late.start()
    late.join(5)
    assert not late.is_alive()
    assert saved == ["slow", "late"]


def test_async_group_commit_serves_several_event_loops():
    store = Store(delay=0.005)
    group = AsyncGroupCommit(store.save)

    async def writes(loop_number: int) -> None:
        await asyncio.gather(*(group.save([f"l{loop_number}-{n}"]) for n in range(20)))

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: asyncio.run(writes(n)), range(4)))
    finally:
        group.close()
    committed = sorted(event for transaction in store.transactions for event in transaction)
    assert committed == sorted(f"l{loop}-{n}" for loop in range(4) for n in range(20))
    assert len(store.transactions) < 80


def test_async_group_commit_isolates_a_failing_write():
    store = Store(delay=0)
    group = AsyncGroupCommit(store.save)

    async def writes() -> list[str]:
        outcomes = await asyncio.gather(*(group.save([f"bad{n}" if n == 3 else f"e{n}"]) for n in range(10)),
                                        return_exceptions=True)
        return [type(o).__name__ for o in outcomes]

    try:
        outcomes = asyncio.run(writes())
    finally:
        group.close()
    assert outcomes == ["NoneType"] * 3 + ["ValueError"] + ["NoneType"] * 6
