"""Runs views over the hub's event log: catch up, then follow.

Each step reads the notifications after a view's tracked position, applies
them and moves the position in the same transaction. Reading past the last
id seen never skips a transaction that commits later: on PostgreSQL the
recorder's table lock makes commit order follow notification order, and
SQLite has one writer. A follower wakes when the log grows: on PostgreSQL
it LISTENs for the NOTIFY each insert sends (and reads anyway every second,
should a notification be lost with a connection); SQLite has no
subscriptions, so there it polls. A view that fails stops where it is and is
retried; nothing is skipped.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from hub.declarations import Declarations

from .database import Cursor, StaleTracking, ViewDatabase

log = logging.getLogger(__name__)
LISTEN_SAFETY_POLL = 1.0  # seconds: on PostgreSQL the log is read this often even if no NOTIFY came
REBUILD_BATCH = 20_000  # events per transaction while rebuilding: fewer commits, one read shared by every view


class View(Protocol):
    name: str
    tables: Sequence[str]

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        """Write the effect of these (position, event) pairs inside the caller's transaction."""

    def forget(self) -> None:
        """Drop in-memory state after a rolled-back transaction."""


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


def _tables(view: View) -> list[str]:
    """The tables a view creates (its `tables` statements), which a rebuild empties."""
    return [match.group(1) for statement in view.tables for match in [_CREATE_TABLE.match(statement)] if match]


class ProjectionRunner:
    def __init__(self, app: Declarations, database: ViewDatabase, views: Sequence[View],
                 *, batch: int = 500, interval: float = 0.05) -> None:
        self.app = app
        self.database = database
        self.views = list(views)
        self.batch = batch
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when the log may have grown, or on stop
        # Each view's position as this runner last read or wrote it. Another runner moving it meanwhile
        # makes the next write stale (StaleTracking), and it is read again: never a skipped event.
        self._positions: dict[str, int] = {}
        self._decoded: OrderedDict[int, Any] = OrderedDict()  # views read the same events: decode them once
        self._thread: threading.Thread | None = None
        database.create([statement for view in self.views for statement in view.tables])

    def step(self, view: View, reads: dict[int, list[Any]] | None = None) -> int:
        """Apply the next batch of events to one view; the number applied.

        `reads` shares what was read from the log between views at the same position (in one round of
        `follow` they usually are: one query instead of one per view).
        """
        try:
            return self.step_together([view], {} if reads is None else reads)
        except StaleTracking:
            return 0  # another runner got there first; the next step reads again from its position

    def step_together(self, views: Sequence[View], reads: dict[int, list[Any]]) -> int:
        """`step` for views at the same position, in one transaction: one commit instead of one per view.

        If any of them fails, all are rolled back (and forget), and the error is raised: the caller then
        steps them one by one, so that each reports its own trouble and none holds up the others.
        """
        start = self._position(views[0])
        notifications = reads.get(start)
        if notifications is None:
            notifications = reads[start] = self.app.recorder.select_notifications(
                start=start, limit=self.batch, inclusive_of_start=False)
        if not notifications:
            return 0
        events = [(n.id, self._event(n)) for n in notifications]
        end = notifications[-1].id
        try:
            with self.database.transaction() as cursor:
                for view in views:
                    view.apply(cursor, events)
                    self.database.advance(cursor, view.name, start, end)
        except BaseException:
            for view in views:
                self._positions.pop(view.name, None)
                view.forget()
            raise
        for view in views:
            self._positions[view.name] = end
        return len(events)

    def _together(self, views: Sequence[View], reads: dict[int, list[Any]], failing: set[str]) -> dict[str, int]:
        """Views at the same position stepped together: the events each applied.

        Those left out (a view alone at its position, one that failed lately, or a group whose shared
        transaction failed) are for the caller to step one by one.
        """
        groups: dict[int, list[View]] = {}
        for view in views:
            if view.name not in failing:
                groups.setdefault(self._position(view), []).append(view)
        applied: dict[str, int] = {}
        for group in groups.values():
            if len(group) > 1:
                try:
                    applied.update(dict.fromkeys((view.name for view in group), self.step_together(group, reads)))
                except Exception:  # noqa: BLE001 - each is stepped alone next, and reports its own error
                    log.debug("views %s failed together; stepping them one by one", [view.name for view in group])
        return applied

    def _event(self, notification: Any) -> Any:
        """The domain event of a notification, decoded once for all the views of this runner."""
        event = self._decoded.get(notification.id)
        if event is None:
            event = self._decoded[notification.id] = self.app.mapper.to_domain_event(notification)
            if len(self._decoded) > 4 * self.batch:
                self._decoded.popitem(last=False)
        return event

    def catch_up(self) -> int:
        """Run every view until it has seen the log as it stood when called."""
        head = self.app.recorder.max_notification_id() or 0
        total = 0
        for view in self.views:
            while self.database.position(view.name) < head:
                total += self.step(view)
        return total

    def rebuild(self, names: Sequence[str] | None = None) -> dict[str, int]:
        """Empty the named views (default: all) and apply the whole log to them again; events applied each.

        Each view's rows and position are reset in one transaction, so a runner following meanwhile finds
        its position stale and reads again from the start: nothing is applied twice.
        """
        known = {view.name: view for view in self.views}
        unknown = sorted(set(names or ()) - set(known))
        if unknown:
            raise ValueError(f"no view {', '.join(unknown)}; the views are {', '.join(known)}")
        chosen = [known[name] for name in names] if names else self.views
        for view in chosen:
            with self.database.transaction() as cursor:
                for table in _tables(view):
                    cursor.execute(f"DELETE FROM {table}")
                cursor.execute("UPDATE projection_tracking SET position = 0 WHERE name = ?", (view.name,))
            view.forget()
            self._positions.pop(view.name, None)
        # The views go through the log together, so that each batch is read and decoded once for all of them.
        head = self.app.recorder.max_notification_id() or 0
        applied = dict.fromkeys((view.name for view in chosen), 0)
        batch, self.batch = self.batch, max(self.batch, REBUILD_BATCH)
        try:
            while behind := [view for view in chosen if self._position(view) < head]:
                reads: dict[int, list[Any]] = {}
                done = self._together(behind, reads, set())
                for view in behind:
                    applied[view.name] += done[view.name] if view.name in done else self.step(view, reads)
        finally:
            self.batch = batch
        return applied

    def _position(self, view: View) -> int:
        """The view's position as this runner last read or wrote it, read from the database the first time."""
        position = self._positions.get(view.name)
        if position is None:
            position = self._positions[view.name] = self.database.position(view.name)
        return position

    def lag(self, head: int | None = None) -> dict[str, int]:
        """Events each view is behind `head` (default: the log's last position)."""
        if head is None:
            head = self.app.recorder.max_notification_id() or 0
        return {view.name: head - self.database.position(view.name) for view in self.views}

    def start(self) -> None:
        """Follow the log on a thread of this process."""
        self._thread = threading.Thread(target=self.follow, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

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
            done = self._together(self.views, reads, failing)
            busy = max(done.values(), default=0) >= self.batch
            for view in self.views:
                if view.name in done:
                    continue
                try:
                    busy |= self.step(view, reads) >= self.batch
                    if view.name in failing:
                        self.database.report_failure(view.name, None)
                        failing.discard(view.name)
                        log.info("view %s runs again", view.name)
                except Exception as error:  # noqa: BLE001 - reported on /healthz, retried
                    if view.name not in failing:
                        log.exception("view %s stopped at its position; retrying", view.name)
                        failing.add(view.name)
                    try:
                        self.database.report_failure(view.name, repr(error))
                    except Exception:  # noqa: BLE001 - the database itself may be what failed
                        log.warning("cannot record the failure of view %s", view.name)
            if not busy:
                self._wake.wait(LISTEN_SAFETY_POLL if listening else self.interval)

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
