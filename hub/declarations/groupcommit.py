"""Group commit: concurrent writers share one transaction.

A PostgreSQL save in eventsourcing takes a table lock and a commit; done once
per declaration it caps ingest at a fraction of the database's rate. Here the
first writer to arrive becomes the leader, takes every write queued so far and
saves them together; the others wait for its result. No timer is involved,
so a lone writer is never delayed.

If the shared save fails (one declaration already exists, say), each write in
the batch is saved again on its own, so only the write at fault sees the
error and the others still commit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SaveEvents = Callable[..., Any]


class _Write:
    __slots__ = ("events", "done", "error", "wakeup")

    def __init__(self, events: Sequence[Any]) -> None:
        self.events = events
        self.done = False
        self.error: BaseException | None = None
        self.wakeup = threading.Event()  # set once: when done, or when made the next leader


class GroupCommit:
    def __init__(self, save: SaveEvents, max_batch: int = 500) -> None:
        self._save = save
        self._max_batch = max_batch
        self._queue: list[_Write] = []
        self._leading = False
        self._lock = threading.Lock()

    def save(self, events: Sequence[Any]) -> None:
        """Save these events atomically, sharing the transaction with concurrent callers."""
        write = _Write(events)
        with self._lock:
            self._queue.append(write)
            follow = self._leading
            self._leading = True
        if follow:
            try:
                write.wakeup.wait()  # each writer is woken exactly once, never the whole crowd
            except BaseException:
                self._withdraw(write)  # interrupted (Ctrl-C): leave no orphan behind in the queue
                raise
        if not write.done:
            self._lead()
        if write.error is not None:
            raise write.error

    def _withdraw(self, write: _Write) -> None:
        with self._lock:
            if write not in self._queue:
                return  # already taken into a batch; its leader settles it
            self._queue.remove(write)
            if write.wakeup.is_set():  # it had just been made the next leader: pass that on
                if self._queue:
                    self._queue[0].wakeup.set()
                else:
                    self._leading = False

    def _lead(self) -> None:
        """Commit the queue's head batch (which holds the leader's own write), then hand over."""
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
        try:
            commit(self._save, batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].wakeup.set()  # the oldest waiter leads the next batch
                else:
                    self._leading = False
            for write in batch:
                write.wakeup.set()


def commit(save: SaveEvents, batch: list[_Write]) -> None:
    """Save a batch in one transaction; if that fails, save each write alone to isolate the fault.

    Every write leaves settled: saved, or with its own error. An interrupt on the way is
    the error of every write not yet settled, and is raised again.
    """
    try:
        try:
            save(*(event for write in batch for event in write.events))
        except Exception as error:  # noqa: BLE001 - isolated and handed to its writer
            if len(batch) == 1:
                batch[0].error = error
            else:
                for write in batch:
                    try:
                        save(*write.events)
                    except Exception as alone:  # noqa: BLE001 - handed to the writer that owns it
                        write.error = alone
                    write.done = True
    except BaseException as error:
        for write in batch:
            if not write.done:
                write.error = error
        raise
    finally:
        for write in batch:
            write.done = True


class AsyncGroupCommit:
    """Group commit for event loops: writes queue up, one thread saves batch after batch.

    Requests cross to that thread once per batch instead of once each, and while
    a batch commits the next one gathers. Each write's future is resolved on its
    own loop, so several loops may share one committer.
    """

    def __init__(self, save: SaveEvents, max_batch: int = 500) -> None:
        self._save = save
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[tuple[_Write, asyncio.Future[None]]] = []
        self._draining = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")

    async def save(self, events: Sequence[Any]) -> None:
        write, settled = _Write(events), asyncio.get_running_loop().create_future()
        with self._lock:
            self._pending.append((write, settled))
            start, self._draining = not self._draining, True
        if start:
            self._executor.submit(self._drain)
        await settled
        if write.error is not None:
            raise write.error

    def _drain(self) -> None:
        """On the commit thread: save batches until nothing is pending."""
        while True:
            with self._lock:
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
                if not batch:
                    self._draining = False
                    return
            try:
                commit(self._save, [write for write, _ in batch])
            except BaseException:  # noqa: BLE001 - already handed to every write of the batch
                pass
            for _, settled in batch:
                try:
                    settled.get_loop().call_soon_threadsafe(_settle, settled)
                except RuntimeError:
                    pass  # that loop has closed: nobody is waiting any more

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _settle(settled: asyncio.Future[None]) -> None:
    if not settled.done():
        settled.set_result(None)
