"""Blue/green rebuilds (docs/rebuilds.md): views built beside the live ones and swapped in, on SQLite and
PostgreSQL. What must hold, whatever runs meanwhile:

- B1 readers never see an empty or partly built view: every declaration the board showed before stays on it;
- B2 no view steps back: each live position after the swap is at least what it was before;
- B3 the views swapped in, once the live runner has read on, are exactly the views of a quiet rebuild:
  nothing applied twice, nothing skipped, whatever was submitted and applied while the shadow was built;
- B4 a rebuild that fails leaves the live views and positions as they were, and no shadow behind;
- B5 one rebuild at a time; a shadow left by one that died is cleared by the next.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followers.runner import _tables
from projections.database import PostgresViews, RebuildRunning
from projections.status_board import Filters, list_declarations
from tradehub import cli
from tradehub.bootstrap import VIEW_NAMES, ConfigurationError, Hub, Settings, build_hub
from tradehub.rebuilds import parallel_fill

from . import samples
from .conftest import SECRET


@pytest.fixture
def pair(store: tuple[Settings, str]) -> Iterator[tuple[Hub, Hub]]:
    """Two hubs on one store, as two processes: the first follows the live views, the second rebuilds them."""
    settings, schema = store
    made = [build_hub(Settings(settings.data_dir, settings.database_url, secret=SECRET), schema=schema)
            for _ in range(2)]
    yield made[0], made[1]
    for hub in made:
        hub.close()


def rows(hub: Hub) -> dict[str, list[tuple]]:
    """Every row of every view, sorted: what two builds of the same log must agree on."""
    return {table: sorted(hub.views.query(f"SELECT * FROM {table}"), key=repr)
            for follower in hub.runner.followers for table in _tables(follower)}


def references(hub: Hub) -> set[str]:
    items, _ = list_declarations(hub.views, Filters(), limit=500)
    return {item["reference"] for item in items}


def submit(hub: Hub, count: int, tag: str) -> None:
    for n in range(count):
        hub.declarations.submit(samples.goods(reference=f"RB-{tag}-{n}"))


def answer_all(hub: Hub) -> None:
    """Each routed agency's receipt, so that the views have more than submissions to follow."""
    for item in list_declarations(hub.views, Filters(), limit=500)[0]:
        for agency in hub.declarations.get(item["id"]).routed_agencies:
            hub.declarations.record_response(item["id"], agency, f"{agency}-{item['id']}", "received",
                                             "2026-12-01T09:00:00Z")


def shadow_left(hub: Hub) -> bool:
    views = hub.views
    if isinstance(views, PostgresViews):
        live = views.query("SELECT current_schema()")[0][0]
        return bool(views.query("SELECT 1 FROM pg_namespace WHERE nspname = ?", (f"{live}_rebuild",)))
    return views.path.with_name(f"{views.path.stem}-rebuild.sqlite").exists()


# ---- B1, B2, B3 under a live runner and live traffic ---------------------------------------------------------

@pytest.mark.slow
def test_readers_see_the_whole_board_throughout_a_rebuild_while_the_log_and_live_views_move(pair: tuple[Hub, Hub]):
    live, rebuilder = pair
    submit(live, 30, "before")
    live.runner.catch_up()
    answer_all(live)
    live.runner.catch_up()
    shown = references(live)
    assert len(shown) == 30
    live.runner.interval = 0.01
    live.runner.start()
    stop, seen_short, reads = threading.Event(), [], [0]

    def read() -> None:
        while not stop.is_set():
            now = references(live)
            reads[0] += 1
            if not shown <= now:
                seen_short.append(len(shown - now))

    def traffic() -> None:
        n = 0
        while not stop.is_set():
            live.declarations.submit(samples.goods(reference=f"RB-during-{n}"))
            n += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=read), threading.Thread(target=traffic)]
    for thread in threads:
        thread.start()
    try:
        before = {name: live.views.position(name) for name in VIEW_NAMES}
        applied = rebuilder.runner.rebuild()
        after = {name: live.views.position(name) for name in VIEW_NAMES}
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not seen_short, f"a reader saw the board short of {max(seen_short)} declaration(s)"  # B1
    assert reads[0] > 10
    assert all(after[name] >= before[name] for name in VIEW_NAMES), (before, after)  # B2
    assert set(applied) == set(VIEW_NAMES) and min(applied.values()) > 0
    live.runner.stop()
    live.runner.catch_up()  # the live runner reads on from the swapped-in position
    swapped = rows(live)
    rebuilder.runner.rebuild()  # now quietly
    assert rows(live) == swapped  # B3
    assert not shadow_left(live)


# ---- B2, B3 as a property: whatever happens between the shadow's build and the swap ---------------------------

Step = tuple[str, int]
steps = st.lists(st.tuples(st.sampled_from(["submit", "live", "answer"]), st.integers(1, 3)), max_size=6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=steps, during=steps)
def test_what_happens_while_the_shadow_is_built_is_in_the_views_once(pair: tuple[Hub, Hub], before: list[Step],
                                                                     during: list[Step]):
    live, rebuilder = pair
    tag = f"{time.monotonic_ns()}"

    def play(script: list[Step], where: str) -> None:
        for index, (kind, count) in enumerate(script):
            if kind == "submit":
                submit(live, count, f"{tag}-{where}-{index}")
            elif kind == "live":
                for _ in range(count):
                    live.runner.step(live.runner.followers[index % len(live.runner.followers)])
            else:
                live.runner.catch_up()
                answer_all(live)

    play(before, "before")
    swap = rebuilder.views.swap
    positions: dict[str, dict[str, int]] = {}

    def late_swap(shadow: Any, views: Any, catch_up: Any) -> dict[str, int]:
        play(during, "during")  # the shadow is built; the log and the live views move on before the swap
        positions["before"] = {name: live.views.position(name) for name in VIEW_NAMES}
        return swap(shadow, views, catch_up)

    rebuilder.views.swap = late_swap  # type: ignore[method-assign]
    try:
        rebuilder.runner.rebuild()
    finally:
        rebuilder.views.swap = swap  # type: ignore[method-assign]
    after = {name: live.views.position(name) for name in VIEW_NAMES}
    assert all(after[name] >= positions["before"][name] for name in VIEW_NAMES)  # B2
    live.runner.catch_up()
    swapped = rows(live)
    rebuilder.runner.rebuild()
    assert rows(live) == swapped  # B3


# ---- B4, B5 ----------------------------------------------------------------------------------------------------

def test_a_rebuild_that_fails_leaves_the_live_views_as_they_were(pair: tuple[Hub, Hub],
                                                                 monkeypatch: pytest.MonkeyPatch):
    live, rebuilder = pair
    submit(live, 5, "fail")
    live.runner.catch_up()
    before, positions = rows(live), {name: live.views.position(name) for name in VIEW_NAMES}
    statistics = next(follower for follower in rebuilder.runner.followers if follower.name == "statistics")
    monkeypatch.setattr(statistics, "apply", lambda cursor, events: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError, match="disk full"):
        rebuilder.runner.rebuild()
    assert rows(live) == before
    assert {name: live.views.position(name) for name in VIEW_NAMES} == positions
    assert not shadow_left(live)


def test_one_rebuild_at_a_time_and_a_dead_one_s_shadow_is_cleared(pair: tuple[Hub, Hub]):
    live, rebuilder = pair
    submit(live, 3, "one")
    with live.views.rebuilding():
        with pytest.raises(RebuildRunning, match="another rebuild"):
            rebuilder.runner.rebuild()
    leave_a_stale_shadow(live)  # as a rebuild killed mid-way would
    assert shadow_left(live)
    assert rebuilder.runner.rebuild()["status_board"] > 0
    assert len(references(live)) == 3
    assert not shadow_left(live)


def leave_a_stale_shadow(hub: Hub) -> None:
    """A shadow schema or file holding a table of another shape, with a row in it."""
    views = hub.views
    if isinstance(views, PostgresViews):
        live = views.query("SELECT current_schema()")[0][0]
        with views.transaction() as cursor:
            cursor.execute(f'CREATE SCHEMA "{live}_rebuild"')
            cursor.execute(f'CREATE TABLE "{live}_rebuild".board_declarations (junk TEXT)')
            cursor.execute(f"INSERT INTO \"{live}_rebuild\".board_declarations VALUES ('stale')")
        return
    with sqlite3.connect(views.path.with_name(f"{views.path.stem}-rebuild.sqlite")) as connection:
        connection.execute("CREATE TABLE board_declarations (junk TEXT)")
        connection.execute("INSERT INTO board_declarations VALUES ('stale')")


def test_the_command_refuses_a_second_rebuild_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("TRADEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRADEHUB_SECRET", SECRET)
    live = build_hub(Settings(tmp_path, secret=SECRET))
    try:
        submit(live, 2, "cli")
        with live.views.rebuilding():
            assert cli.main(["projections", "rebuild"]) == 2
        assert capsys.readouterr().err.startswith("tradehub: another rebuild of the views in ")
        assert cli.main(["projections", "rebuild", "--view", "status_board"]) == 0
        assert "rebuilt 1 view(s)" in capsys.readouterr().out
        assert len(references(live)) == 2
    finally:
        live.close()


# ---- several processes -----------------------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.slow
def test_a_rebuild_by_two_processes_gives_every_row_one_process_gives(postgres_url: str, postgres_schema: str,
                                                                       tmp_path: Path):
    settings = Settings(tmp_path, postgres_url, secret=SECRET)
    hub = build_hub(settings, schema=postgres_schema)
    try:
        submit(hub, 12, "parallel")
        for n in range(4):
            hub.declarations.submit(samples.vessel_call(reference=f"RB-CALL-{n}"))
        hub.runner.catch_up()
        answer_all(hub)
        hub.runner.catch_up()
        samples.settle(hub.declarations, *(item["id"] for item in list_declarations(hub.views, Filters(), limit=500)[0]))
        hub.runner.catch_up()
        alone = hub.runner.rebuild()
        expected = rows(hub)
        assert sum(len(table) for table in expected.values()) > 50
        together = hub.runner.rebuild(fill=parallel_fill(settings, postgres_schema, 2))
        assert together == alone  # each view applied every event once, over its parts
        assert rows(hub) == expected
        # Partitioned views alone: each process decodes only its part's events.
        split = hub.runner.rebuild(["status_board", "statistics"], fill=parallel_fill(settings, postgres_schema, 2))
        assert split == {name: alone[name] for name in ("status_board", "statistics")}
        assert rows(hub) == expected
        assert {name for (name,) in hub.views.query("SELECT name FROM projection_tracking")} >= set(VIEW_NAMES)
        assert not hub.views.query("SELECT name FROM projection_tracking WHERE name LIKE ?", ("%@%",))
        assert not shadow_left(hub)
    finally:
        hub.close()


def test_several_processes_need_postgresql_and_say_so(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="--processes 2 needs PostgreSQL"):
        parallel_fill(Settings(tmp_path), "", 2)
    assert parallel_fill(Settings(tmp_path), "", 1) is None
