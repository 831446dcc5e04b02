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
            write.wakeup.wait()  # each writer is woken exactly once, never the whole crowd
        if not write.done:
            self._lead()
        if write.error is not None:
            raise write.error

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
    """Save a batch in one transaction; if that fails, save each write alone to isolate the fault."""
    try:
        save(*(event for write in batch for event in write.events))
    except Exception as error:  # noqa: BLE001 - isolated and re-raised to its writer
        if len(batch) == 1:
            batch[0].error = error
        else:
            for write in batch:
                try:
                    save(*write.events)
                except Exception as alone:  # noqa: BLE001 - handed to the writer that owns it
                    write.error = alone
    except BaseException as error:
        for write in batch:
            write.error = error
        raise
    finally:
        for write in batch:
            write.done = True


class AsyncGroupCommit:
    """Group commit for one event loop: writes queue on the loop, one thread saves each batch.

    Requests cross to a thread once per batch instead of once each, and while a
    batch commits the next one gathers.
    """

    def __init__(self, save: SaveEvents, max_batch: int = 500) -> None:
        self._save = save
        self._max_batch = max_batch
        self._pending: list[tuple[_Write, asyncio.Future[None]]] = []
        self._committing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-commit")

    async def save(self, events: Sequence[Any]) -> None:
        loop = asyncio.get_running_loop()
        write, done = _Write(events), loop.create_future()
        self._pending.append((write, done))
        if not self._committing:
            self._next(loop)
        await done
        if write.error is not None:
            raise write.error

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending[: self._max_batch]
        del self._pending[: len(batch)]
        self._committing = True
        saving = loop.run_in_executor(self._executor, commit, self._save, [write for write, _ in batch])
        saving.add_done_callback(lambda outcome: self._finished(loop, batch, outcome))

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[_Write, asyncio.Future[None]]],
                  outcome: asyncio.Future[None]) -> None:
        failure = None if outcome.cancelled() else outcome.exception()
        for _, done in batch:
            if not done.done():
                done.set_exception(failure) if failure else done.set_result(None)
        self._committing = False
        if self._pending:
            self._next(loop)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
