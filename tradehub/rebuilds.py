"""`tradehub projections rebuild --processes N`: the shadow views built by N processes at once (docs/rebuilds.md).

A rebuild is blue/green whatever the number of processes (`Followers.rebuild`); this module only fills the
shadow faster, on PostgreSQL, where several processes may write one schema at once:

- Views whose rows and memory are each an aggregate's own are **partitioned** by aggregate id: process k
  gives them only the events of the aggregates in part k (`followers.runner.in_part`), and decodes no other.
  Each part tracks its own position (`<view>@k/N` in the shadow); when every part has reached the head, the
  view's position is set there and the parts' rows removed. Their rows never overlap, so the union of the
  parts is the view a single process writes; totals over declarations (statistics, the board's counts) are
  computed from those rows when read, so nothing needs merging.
- Views that join aggregates in the log's order (recognition of licences and documents across declarations,
  licence balances, enforcement's holds by subject) are **whole**: each is built by one of the processes,
  from the whole log, in turn.

Each process goes through the log once: its part of the partitioned views and its whole views share every
batch, read once and decoded once.

Every process reads the log up to the head the rebuild took at its start; the last catch-up and the swap
are the rebuilding process's own.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from followers.notifications import Notifications
from followers.runner import REBUILD_BATCH, Fill, Follower, Followers, in_part
from projections.access_log import AccessLog
from projections.database import PostgresViews, ViewDatabase
from projections.exchange import Exchange
from projections.retention import Retention
from projections.statistics import Statistics
from projections.status_board import StatusBoard
from tradehub.bootstrap import ConfigurationError, Settings, build_declarations, read_models

# Checked view by view: each one's rows are keyed by one aggregate, and its apply reads and writes only
# that aggregate's rows and memory.
PARTITIONED = frozenset({StatusBoard.name, Exchange.name, Statistics.name, Notifications.name, AccessLog.name,
                         Retention.name})


def parallel_fill(settings: Settings, schema: str, processes: int) -> Fill | None:
    """What fills a rebuild's shadow with `processes` processes; None for one (the rebuilding process does)."""
    if processes <= 1:
        return None
    if not settings.uses_postgres:
        raise ConfigurationError(f"--processes {processes} needs PostgreSQL (TRADEHUB_DATABASE_URL): SQLite takes "
                                 "one writer at a time, so a rebuild on it runs in one process")

    def fill(shadow: ViewDatabase, followers: Sequence[Follower], head: int) -> dict[str, int]:
        assert isinstance(shadow, PostgresViews) and shadow.shadow_of is not None
        names = [follower.name for follower in followers]
        jobs = [(settings, schema, shadow.schema, shadow.shadow_of, names, part, processes, head)
                for part in range(processes)]
        applied = dict.fromkeys(names, 0)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            for counts in pool.map(_fill_part, *zip(*jobs, strict=True)):
                for name, count in counts.items():
                    applied[name] += count
        _join_parts(shadow, [name for name in names if name in PARTITIONED], processes)
        return applied

    return fill


def _fill_part(settings: Settings, schema: str, shadow: str, live: str, names: Sequence[str], part: int,
               parts: int, head: int) -> dict[str, int]:
    """In a process of its own: part `part` of the partitioned views, and every `parts`-th whole view, in one
    pass over the log (each batch read once, and decoded once for all of them)."""
    declarations = build_declarations(settings, schema=schema)
    views = PostgresViews(settings.database_url, shadow, max_size=2, shadow_of=live)
    try:
        chosen = [follower for follower in read_models(declarations) if follower.name in names]
        whole = [follower for follower in chosen if follower.name not in PARTITIONED][part::parts]
        # With a whole view here every event is decoded anyway, and each part sifts its own from the batch;
        # without one, the runner decodes only this part's events.
        split = [_Part(follower, part, parts, sifts=bool(whole)) for follower in chosen
                 if follower.name in PARTITIONED]
        runner = Followers(declarations, views, [*split, *whole], batch=REBUILD_BATCH,
                           part=None if whole else (part, parts))
        counts = runner.fill(head)
        return {**{follower.name: counts[follower.name] for follower in whole},
                **{piece.follower.name: piece.applied for piece in split}}
    finally:
        views.close()
        declarations.close()


class _Part:
    """A view as one part of a parallel rebuild: the same rows, a position of the part's own, and a count of the
    events it was given. `sifts`: given every event, it keeps its part's (else the runner gives only those)."""

    def __init__(self, follower: Follower, part: int, parts: int, *, sifts: bool) -> None:
        self.follower = follower
        self.name = f"{follower.name}@{part}/{parts}"
        self.tables = follower.tables
        self.part, self.parts, self.sifts = part, parts, sifts
        self.applied = 0

    def apply(self, cursor: Any, events: Sequence[tuple[int, Any]]) -> None:
        if self.sifts:
            events = [(position, event) for position, event in events
                      if in_part(event.originator_id, self.part, self.parts)]
        self.follower.apply(cursor, events)
        self.applied += len(events)

    def forget(self) -> None:
        self.follower.forget()


def _join_parts(shadow: ViewDatabase, names: Sequence[str], parts: int) -> None:
    """Each partitioned view's position, once all its parts have reached the same one; the parts' removed."""
    with shadow.transaction() as cursor:
        for name in names:
            part_names = [f"{name}@{part}/{parts}" for part in range(parts)]
            cursor.execute(f"SELECT DISTINCT position FROM projection_tracking WHERE name IN "
                           f"({', '.join('?' for _ in part_names)})", part_names)
            positions = [position for (position,) in cursor.fetchall()]
            if not positions:
                continue  # an empty log: no part moved
            if len(positions) != 1:
                raise RuntimeError(f"the parts of {name} stopped at different positions: {sorted(positions)}")
            cursor.execute("INSERT INTO projection_tracking (name, position) VALUES (?, ?)", (name, positions[0]))
            cursor.execute(f"DELETE FROM projection_tracking WHERE name IN ({', '.join('?' for _ in part_names)})",
                           part_names)
