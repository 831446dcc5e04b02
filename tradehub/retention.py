"""The retention policy at work: erase the personal data it has made due (docs/personal-data.md, "Retention").

`sweep` takes the declarations the retention view (projections/retention.py) finds due at a moment, under the
policy of TRADEHUB_PERSONAL_DATA_DAYS, and erases each through `Declarations.erase_personal_data`, as the
policy ("retention") and with the rule that made it due as the reason. It is what `tradehub personal-data
retention` runs once, and what `serve` runs every hour (`tradehub.worker.run_retention`).

Safe to run twice, and from two processes at once (two hubs' `serve` on one PostgreSQL): erasure is idempotent,
and a declaration erased by the other run counts as already erased here, recorded once. The view only
preselects: each declaration is read from the store before it is erased, and erased only if the view has seen
every event of it (its row's `version` is the declaration's), so a view that lags behind an amendment that
moved a departure, or a hold placed a moment ago, never erases early; such a declaration is deferred to the
next run. One declaration that fails is reported and the sweep goes on; a store that is unavailable stops it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from followers.runner import Followers
from hub.storage import StoreUnavailable
from projections import retention
from projections.retention import POLICY, Retained, Retention
from tradehub.bootstrap import Hub, Settings, build_hub

log = logging.getLogger("tradehub.retention")
EVERY = 3600.0  # seconds between the runs `serve` makes
RETRY = 60.0  # seconds before a run that failed as a whole (the store away) is tried again


@dataclass
class Report:
    """What a sweep did at `now` under a policy of `days` (nothing, with 0)."""

    days: int
    now: datetime
    dry_run: bool = False
    erased: list[Retained] = field(default_factory=list)  # erased by this run (a dry run: would be)
    already: list[Retained] = field(default_factory=list)  # erased meanwhile, by another run or by hand
    deferred: list[Retained] = field(default_factory=list)  # the view was behind the store: for the next run
    failed: list[tuple[Retained, str]] = field(default_factory=list)  # and why

    def line(self) -> str:
        verb = "would erase" if self.dry_run else "erased"
        return (f"retention ({self.days} days) at {self.now.isoformat(timespec='seconds')}: {verb} "
                f"{len(self.erased)}, already erased {len(self.already)}, deferred {len(self.deferred)}, "
                f"failed {len(self.failed)}")


def reason(row: Retained, days: int) -> str:
    """Why the policy erased it, as the `PersonalDataErased` event keeps it."""
    return f"retention: {days} days after its {row.served_by} on {(row.served_at or '')[:10]}"


def sweep(hub: Hub, days: int, *, now: datetime | None = None, dry_run: bool = False,
          stop: threading.Event | None = None) -> Report:
    """Erase every declaration's personal data due at `now` (default: this moment) under a policy of `days`.

    With `days` 0 the policy keeps everything: nothing is read or erased. `dry_run` reports what would be erased
    and erases nothing. `stop`, once set, ends the sweep after the declaration at hand (a worker told to stop
    while it works through a backlog); the rest are the next run's.
    """
    report = Report(days, now or datetime.now(UTC), dry_run)
    if days <= 0:
        return report
    view = Followers(hub.declarations, hub.views, [Retention()])
    view.catch_up()
    after: tuple[str, str] | None = None
    while page := retention.due(hub.views, days=days, now=report.now, after=after):
        for row in page:
            if stop is not None and stop.is_set():
                return report
            _erase(hub, view, row, report)
        last = page[-1]
        after = (last.served_at or "", last.declaration_id)
    return report


def _erase(hub: Hub, view: Followers, row: Retained, report: Report) -> None:
    ident = row.declaration_id
    try:
        declaration = hub.declarations.get(ident)
        if declaration.personal_data_erased is not None:
            report.already.append(row)
            return
        if declaration.version != row.version:  # events the view had not seen: see them, and decide again
            view.catch_up()
            seen = retention.row(hub.views, ident)
            if seen is None or seen.version != declaration.version or not seen.due(report.days, report.now):
                report.deferred.append(row)
                return
            row = seen
        if report.dry_run:
            report.erased.append(row)
            return
        _, recorded = hub.declarations.erase_personal_data(ident, by=POLICY, reason=reason(row, report.days))
        (report.erased if recorded else report.already).append(row)
    except StoreUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - reported with the declaration; the others are still erased
        log.warning("retention: declaration %s not erased: %s", ident, error)
        report.failed.append((row, f"{type(error).__name__}: {error}"))


def run_once(settings: Settings, *, dry_run: bool) -> int:
    """`tradehub personal-data retention`: one sweep now, each declaration on a line, then the counts. Exit 1 if
    any failed (they are tried again by the next run), else 0."""
    if settings.personal_data_days <= 0:
        print("TRADEHUB_PERSONAL_DATA_DAYS is 0: personal data is kept until erased by hand; nothing to do")
        return 0
    hub = build_hub(settings)
    try:
        report = sweep(hub, settings.personal_data_days, dry_run=dry_run)
    finally:
        hub.close()
    verb = "would erase" if dry_run else "erased"
    for label, rows in ((verb, report.erased), ("already erased", report.already),
                        ("deferred", report.deferred)):
        for row in rows:
            print(f"{label:15} {row.declaration_id} {row.reference} ({row.served_by} {row.served_at})")
    for row, error in report.failed:
        print(f"{'failed':15} {row.declaration_id} {row.reference}: {error}")
    print(report.line())
    return 1 if report.failed else 0
