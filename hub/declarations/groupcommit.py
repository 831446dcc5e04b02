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

import threading
from collections.abc import Callable, Sequence
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
            self._commit(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].wakeup.set()  # the oldest waiter leads the next batch
                else:
                    self._leading = False
            for write in batch:
                write.wakeup.set()

    def _commit(self, batch: list[_Write]) -> None:
        try:
            self._save(*(event for write in batch for event in write.events))
        except Exception as error:  # noqa: BLE001 - isolated and re-raised below
            if len(batch) == 1:
                batch[0].error = error
            else:
                for write in batch:
                    self._commit_alone(write)
        except BaseException as error:
            for write in batch:
                write.error = error
            raise
        finally:
            for write in batch:
                write.done = True

    def _commit_alone(self, write: _Write) -> None:
        try:
            self._save(*write.events)
        except Exception as error:  # noqa: BLE001 - handed to the writer that owns it
            write.error = error
