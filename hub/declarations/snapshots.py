"""Snapshots of declarations with long streams, taken right after the save that makes one due.

A declaration is read from its stream: a vessel call of 4 MiB amended 200 times is 200 documents to decode
on every read, every answer and every amendment (docs/long-streams.md has the figures). With a snapshot store
(`IS_SNAPSHOTTING_ENABLED`, set by tradehub.bootstrap), eventsourcing's repository reads the latest snapshot
and only the events after it. `Application.save` would take the snapshots; the hub saves through group commit
(`Declarations.save_events`) instead, which hands each batch's events here.

A snapshot is due at every `interval` versions of a declaration (`SNAPSHOT_INTERVAL` in the application's
environment, `DECLARATIONS_SNAPSHOT_INTERVAL` in the process's; `DEFAULT_INTERVAL` if unset; 0 takes none).
It is taken on a thread of its own once the events are stored, never in their transaction: taking it reads
the declaration as of that version (its previous snapshot and up to `interval` events), and the thread that
commits for a whole group must not wait for that. So a snapshot never fails or delays a command. One that
fails is logged and counted (`failed`), and reads go on from the previous snapshot and a few more events
until the next one is written. Due snapshots are taken in the order they fell due, each at its version.

Snapshots go through the application's mapper, so the people a vessel call names are sealed under the
declaration's data key in snapshots as in events, and erasing the key erases them from both. A snapshot
holds the aggregate's state as of `Declaration.class_version`; one stored in an older version is upcast by
the aggregate's `upcast_vN_vN+1` as it is read (eventsourcing's `Snapshot.mutate`), as events are by theirs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Transcoding

from .domainmodel import Declaration

log = logging.getLogger(__name__)

# Every this many versions: a declaration's usual life (a submission, each routed agency's receipt and
# decision, gate-out, release: 8 to 15 events, a snapshot of which would cost as much storage as its document
# and save nothing) takes none, while a long stream is never read from more than one snapshot and 19 events.
DEFAULT_INTERVAL = 20
_MOST_WAITING = 10_000  # snapshots that may wait at once; beyond, a due one is skipped
CLOSE_WAIT = 5.0  # seconds `close` lets the snapshot being written finish


def snapshot_interval(env: Mapping[str, str] | Any) -> int:
    """The interval of the application's environment (`SNAPSHOT_INTERVAL`); ValueError naming it if it is no
    whole number of versions from 0 (none) up."""
    value = (env.get("SNAPSHOT_INTERVAL") or "").strip()
    if not value:
        return DEFAULT_INTERVAL
    if not value.isdigit():
        raise ValueError(f"SNAPSHOT_INTERVAL (DECLARATIONS_SNAPSHOT_INTERVAL in the environment) must be a whole "
                         f"number of versions (0: take no snapshots), got {value[:20]!r}")
    return int(value)


class SetAsList(Transcoding):
    """A set in a stored state (a snapshot's `applied_messages`), as a sorted list."""

    type = set
    name = "set"

    def encode(self, obj: set[Any]) -> list[Any]:
        return sorted(obj)

    def decode(self, data: list[Any]) -> set[Any]:
        return set(data)


class Snapshotter:
    """Takes the snapshots of an application's declarations as they fall due, on a thread of its own."""

    def __init__(self, app: Application, interval: int) -> None:
        self.app = app
        self.interval = interval if app.snapshots is not None else 0
        self.taken = 0
        self.failed = 0
        self._waiting: deque[tuple[UUID, int]] = deque()  # (declaration, version) of the due snapshots
        self._taking = False  # a thread is taking the waiting ones
        self._closed = False
        self._changed = threading.Condition()

    def due(self, events: Sequence[Any]) -> None:
        """After `events` are stored: queue the snapshot each declaration event at a multiple of the interval
        makes due."""
        if not self.interval:
            return
        found = [(event.originator_id, event.originator_version) for event in events
                 if event.originator_version % self.interval == 0 and isinstance(event, Declaration.Event)]
        if not found:
            return
        with self._changed:
            if self._closed:
                return
            for ident, version in found:
                if len(self._waiting) >= _MOST_WAITING:
                    self.failed += 1
                    log.warning("snapshot of declaration %s version %s skipped: %s snapshots are waiting",
                                ident, version, _MOST_WAITING)
                    continue
                self._waiting.append((ident, version))
            start, self._taking = not self._taking, True
        if start:
            threading.Thread(target=self._take_waiting, name="declaration-snapshots", daemon=True).start()

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every due snapshot is written (or has failed); False if `timeout` seconds passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._taking, timeout)

    def close(self, timeout: float = CLOSE_WAIT) -> bool:
        """Take no more: the waiting ones are dropped (the next due ones will be taken by the next process), the
        one being written is let finish for up to `timeout` seconds. False if it had not: a write waiting on a
        store that another process holds locked (SQLite waits up to 30 s) must not keep a stopping worker past
        its grace period; its transaction is rolled back with the process, and the snapshot is only a saving."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            finished = self._changed.wait_for(lambda: not self._taking, timeout)
        if not finished:
            log.warning("closing with a snapshot still being written after %s s; it is given up", timeout)
        return finished

    def _take_waiting(self) -> None:
        try:
            while True:
                with self._changed:
                    if not self._waiting:  # checked and given up under one lock: `due` starts the next thread
                        self._taking = False
                        self._changed.notify_all()
                        return
                    ident, version = self._waiting.popleft()
                self.take(ident, version)
        except BaseException:
            with self._changed:  # the thread dies (interpreter exit): nobody waits for it for ever
                self._taking = False
                self._changed.notify_all()
            raise

    def take(self, ident: UUID, version: int) -> bool:
        """Write the snapshot of the declaration at `version`; False (logged and counted) if it could not be."""
        try:
            self.app.take_snapshot(ident, version=version)
        except IntegrityError:
            return True  # there is one at that version already
        except Exception:  # noqa: BLE001 - a snapshot saves reads; its failure must never reach a command
            with self._changed:
                self.failed += 1
            log.warning("snapshot of declaration %s version %s failed; reads go on from the previous one",
                        ident, version, exc_info=True)
            return False
        with self._changed:
            self.taken += 1
        return True
