"""Runs followers over the hub's event log: catch up, then follow.

Each step reads the notifications after a follower's tracked position, applies
them and moves the position in the same transaction. Reading past the last
id seen never skips a transaction that commits later: on PostgreSQL the
recorder's table lock makes commit order follow notification order, and
SQLite has one writer. A follower wakes when the log grows: on PostgreSQL
it LISTENs for the NOTIFY each insert sends (and reads anyway every second,
should a notification be lost with a connection); SQLite has no
subscriptions, so there it polls. A follower that fails stops where it is and is
retried; nothing is skipped.

It is ours, not eventsourcing's `ProjectionRunner`, which lacks what the hub
needs (several followers per batch in one transaction, stale-write detection,
rebuilds, SQLite): docs/architecture.md, "The log's followers and
eventsourcing's own projection machinery".
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from hub.declarations import Declarations
from projections.database import Cursor, StaleTracking, ViewDatabase

log = logging.getLogger(__name__)
LISTEN_SAFETY_POLL = 1.0  # seconds: on PostgreSQL the log is read this often even if no NOTIFY came
REBUILD_BATCH = 20_000  # events per transaction while rebuilding: fewer commits, one read shared by every follower
# A follower that fails is tried again after a wait that doubles from the first to the ceiling (jittered), never
# every round: a batch that fails for good would otherwise burn a core rebuilding it 20 times a second.
FAILURE_BACKOFF = 0.1
FAILURE_CEILING = 30.0
RETRY_LOOK = 1.0  # seconds between looks for parked work that has come due (Retrying followers: dispatch)


def in_part(originator_id: UUID, part: int, parts: int) -> bool:
    """Whether an aggregate's events fall in `part` of `parts` (0-based): by its id, so each aggregate's events
    all fall in one part, in their order."""
    return originator_id.int % parts == part


class Follower(Protocol):
    name: str
    tables: Sequence[str]

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        """Write the effect of these (position, event) pairs inside the caller's transaction."""

    def forget(self) -> None:
        """Drop in-memory state after a rolled-back transaction."""


# Builds a rebuild's shadow views (the database, the followers, up to this head); the events each applied.
Fill = Callable[[ViewDatabase, Sequence["Follower"], int], dict[str, int]]


class Retrying(Protocol):
    """A follower with work of its own to try again, outside the log's order (dispatch's parked declarations)."""

    def retry(self, cursor: Cursor) -> int:
        """Try again what has come due, inside the caller's transaction; how many went through."""


def failure_delay(failures: int, draw=random.random) -> float:
    """Seconds before a follower that failed `failures` times in a row is stepped again."""
    return min(FAILURE_CEILING, FAILURE_BACKOFF * 2 ** min(failures - 1, 30)) * (0.5 + draw() / 2)


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


def _tables(follower: Follower) -> list[str]:
    """The tables a follower creates (its `tables` statements), which a rebuild empties."""
    return [match.group(1) for statement in follower.tables for match in [_CREATE_TABLE.match(statement)] if match]


class Followers:
    def __init__(self, app: Declarations, database: ViewDatabase, followers: Sequence[Follower],
                 *, batch: int = 500, interval: float = 0.05, part: tuple[int, int] | None = None) -> None:
        """`part` (k, n): the followers are given only the events of aggregates in part k of n (`in_part`),
        the others not even decoded; they still move through the whole log. For a parallel rebuild."""
        self.app = app
        self.part = part
        self.database = database
        self.followers = list(followers)
        self.batch = batch
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when the log may have grown, or on stop
        # Each follower's position as this runner last read or wrote it. Another runner moving it meanwhile
        # makes the next write stale (StaleTracking), and it is read again: never a skipped event.
        self._positions: dict[str, int] = {}
        self._decoded: OrderedDict[int, Any] = OrderedDict()  # followers read the same events: decode them once
        self._thread: threading.Thread | None = None
        self._backoff: dict[str, tuple[int, float]] = {}  # a failing follower: (failures in a row, next try at)
        self._next_look = 0.0  # when `follow` next looks for retries that have come due
        database.create([statement for follower in self.followers for statement in follower.tables])

    def step(self, follower: Follower, reads: dict[int, list[Any]] | None = None) -> int:
        """Apply the next batch of events to one follower; the number applied.

        `reads` shares what was read from the log between followers at the same position (in one round of
        `follow` they usually are: one query instead of one per follower).
        """
        try:
            return self.step_together([follower], {} if reads is None else reads)
        except StaleTracking:
            return 0  # another runner got there first; the next step reads again from its position

    def step_together(self, followers: Sequence[Follower], reads: dict[int, list[Any]]) -> int:
        """`step` for followers at the same position, in one transaction: one commit instead of one per follower.

        If any of them fails, all are rolled back (and forget), and the error is raised: the caller then
        steps them one by one, so that each reports its own trouble and none holds up the others.
        """
        start = self._position(followers[0])
        notifications = reads.get(start)
        if notifications is None:
            notifications = reads[start] = self.app.recorder.select_notifications(
                start=start, limit=self.batch, inclusive_of_start=False)
        if not notifications:
            return 0
        part = self.part
        events = [(n.id, self._event(n)) for n in notifications if part is None or in_part(n.originator_id, *part)]
        end = notifications[-1].id
        try:
            with self.database.transaction() as cursor:
                self.database.guard(cursor)
                for follower in followers:
                    follower.apply(cursor, events)
                    self.database.advance(cursor, follower.name, start, end)
        except BaseException:
            for follower in followers:
                self._positions.pop(follower.name, None)
                follower.forget()
            raise
        for follower in followers:
            self._positions[follower.name] = end
        return len(events)

    def _together(self, followers: Sequence[Follower], reads: dict[int, list[Any]], failing: set[str]) -> dict[str, int]:
        """Views at the same position stepped together: the events each applied.

        Those left out (a follower alone at its position, one that failed lately, or a group whose shared
        transaction failed) are for the caller to step one by one.
        """
        groups: dict[int, list[Follower]] = {}
        for follower in followers:
            if follower.name not in failing:
                groups.setdefault(self._position(follower), []).append(follower)
        applied: dict[str, int] = {}
        for group in groups.values():
            if len(group) > 1:
                try:
                    applied.update(dict.fromkeys((follower.name for follower in group), self.step_together(group, reads)))
                except Exception:  # noqa: BLE001 - each is stepped alone next, and reports its own error
                    log.debug("followers %s failed together; stepping them one by one",
                              [follower.name for follower in group])
        return applied

    def _event(self, notification: Any) -> Any:
        """The domain event of a notification, decoded once for all the followers of this runner."""
        event = self._decoded.get(notification.id)
        if event is None:
            event = self._decoded[notification.id] = self.app.mapper.to_domain_event(notification)
            if len(self._decoded) > 4 * self.batch:
                self._decoded.popitem(last=False)
        return event

    def catch_up(self) -> int:
        """Run every follower until it has seen the log as it stood when called."""
        head = self.app.recorder.max_notification_id() or 0
        total = 0
        for follower in self.followers:
            while self.database.position(follower.name) < head:
                applied = self.step(follower)
                if not applied:  # what this runner remembered is not where the view is: read it again
                    self._positions.pop(follower.name, None)
                total += applied
        return total

    def rebuild(self, names: Sequence[str] | None = None, *, fill: Fill | None = None) -> dict[str, int]:
        """Build the named followers' views (default: all) afresh from the whole log beside the live ones, then
        swap them in; the events each applied.

        Blue/green (docs/rebuilds.md): the live views keep serving, and keep following the log in whichever
        process runs them, until one transaction puts the new tables and positions in their place, the new
        views caught up to at least where the live ones were. A runner following the live views then finds
        its position moved (StaleTracking), forgets what it held and reads on from the new position: nothing
        is applied twice, nothing skipped. If the rebuild fails or is stopped, the live views are as they were.
        This runner's followers are the ones rebuilt, so it must not be following meanwhile.

        `fill` builds the shadow up to the log's head instead of this process (tradehub.rebuilds: over several
        processes); the swap's last catch-up is this process's, from the positions `fill` leaves.
        """
        known = {follower.name: follower for follower in self.followers}
        unknown = sorted(set(names or ()) - set(known))
        if unknown:
            raise ValueError(f"no view {', '.join(unknown)}; the views are {', '.join(known)}")
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("a runner that is following cannot rebuild its own views; rebuild from another")
        chosen = [known[name] for name in names] if names else self.followers
        for follower in chosen:
            follower.forget()
            self._positions.pop(follower.name, None)
        with self.database.rebuilding() as shadow:
            builder = Followers(self.app, shadow, chosen, batch=REBUILD_BATCH)
            head = self.app.recorder.max_notification_id() or 0
            applied = fill(shadow, chosen, head) if fill is not None else builder.fill(head)

            def catch_up(live: Mapping[str, int]) -> dict[str, int]:
                # The live views may have moved on while the shadow was built: the shadow goes at least as far,
                # so that no view is ever seen to step back.
                for name, count in builder.fill(max(live.values(), default=0)).items():
                    applied[name] += count
                return {follower.name: builder._position(follower) for follower in chosen}

            self.database.swap(shadow, {follower.name: _tables(follower) for follower in chosen}, catch_up)
        return applied

    def fill(self, head: int) -> dict[str, int]:
        """Step every follower until it has applied the log up to `head`, together, so that each batch is read
        and decoded once for all of them; the events each applied."""
        applied = dict.fromkeys((follower.name for follower in self.followers), 0)
        while behind := [follower for follower in self.followers if self._position(follower) < head]:
            reads: dict[int, list[Any]] = {}
            done = self._together(behind, reads, set())
            for follower in behind:
                applied[follower.name] += done[follower.name] if follower.name in done else self.step(follower, reads)
        return applied

    def _position(self, follower: Follower) -> int:
        """The follower's position as this runner last read or wrote it, read from the database the first time."""
        position = self._positions.get(follower.name)
        if position is None:
            position = self._positions[follower.name] = self.database.position(follower.name)
        return position

    def lag(self, head: int | None = None) -> dict[str, int]:
        """Events each follower is behind `head` (default: the log's last position)."""
        if head is None:
            head = self.app.recorder.max_notification_id() or 0
        return {follower.name: head - self.database.position(follower.name) for follower in self.followers}

    def start(self) -> None:
        """Follow the log on a thread of this process."""
        self._thread = threading.Thread(target=self.follow, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def retry(self) -> int:
        """Let each follower that has its own retries (dispatch's parked declarations) try what has come due."""
        total = 0
        for follower in self.followers:
            retry = getattr(follower, "retry", None)
            if retry is not None:
                with self.database.transaction() as cursor:
                    total += retry(cursor)
        return total

    def follow(self) -> None:
        """Catch up, then keep following until `stop()`."""
        # Loop at once only after a full batch; otherwise wait for the log to grow (PostgreSQL), or a beat
        # (SQLite). Events that come while a round runs are all taken by the next round.
        failing: set[str] = set()
        listening = isinstance(self.app.recorder, PostgresApplicationRecorder)
        if listening:
            threading.Thread(target=self._listen, name="projections-listen", daemon=True).start()
        while not self._stop.is_set():
            self._wake.clear()
            reads: dict[int, list[Any]] = {}
            done = self._together(self.followers, reads, failing)
            busy = max(done.values(), default=0) >= self.batch
            now = time.monotonic()
            for follower in self.followers:
                if follower.name in done or self._backoff.get(follower.name, (0, 0.0))[1] > now:
                    continue
                try:
                    busy |= self.step(follower, reads) >= self.batch
                    self._recovered(follower, failing)
                except Exception as error:  # noqa: BLE001 - reported on /healthz, retried after a wait
                    self._failed(follower, error, failing)
            if now >= self._next_look:
                self._next_look = now + RETRY_LOOK
                self._retry_due(failing)
            if not busy:
                self._wake.wait(LISTEN_SAFETY_POLL if listening else self.interval)

    def _retry_due(self, failing: set[str]) -> None:
        now = time.monotonic()
        for follower in self.followers:
            retry = getattr(follower, "retry", None)
            if retry is None or self._backoff.get(follower.name, (0, 0.0))[1] > now:
                continue
            try:
                with self.database.transaction() as cursor:
                    retry(cursor)
            except Exception as error:  # noqa: BLE001 - the broker is away, say: like a failed step
                self._failed(follower, error, failing)

    def _recovered(self, follower: Follower, failing: set[str]) -> None:
        self._backoff.pop(follower.name, None)
        if follower.name in failing:
            self.database.report_failure(follower.name, None)
            failing.discard(follower.name)
            log.info("follower %s runs again", follower.name)

    def _failed(self, follower: Follower, error: Exception, failing: set[str]) -> None:
        failures = self._backoff.get(follower.name, (0, 0.0))[0] + 1
        delay = failure_delay(failures)
        self._backoff[follower.name] = (failures, time.monotonic() + delay)
        if follower.name not in failing:
            log.exception("follower %s stopped at its position; retrying with back-off", follower.name)
            failing.add(follower.name)
        else:
            log.debug("follower %s failed again (%s in a row); next try in %.1f s", follower.name, failures, delay)
        try:
            self.database.report_failure(follower.name, repr(error))
        except Exception:  # noqa: BLE001 - the database itself may be what failed
            log.warning("cannot record the failure of follower %s", follower.name)

    def _listen(self) -> None:
        """Set `_wake` on each NOTIFY of the event table, on a connection of its own, until stopped."""
        recorder = self.app.recorder
        while not self._stop.is_set():
            try:
                with recorder.datastore.get_connection() as connection:
                    connection.execute(SQL("LISTEN {0}").format(Identifier(recorder.channel_name)))
                    connection.commit()
                    self._wake.set()  # anything committed before LISTEN took effect
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=LISTEN_SAFETY_POLL, stop_after=1):
                            self._wake.set()
            except Exception as error:  # noqa: BLE001 - the database went away: poll meanwhile, listen again
                log.warning("cannot listen for new events (%s); polling until it can", error)
                self._wake.set()
                self._stop.wait(1.0)
