"""The status board projection and its runner: exactly once, retried, never skipping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followers.runner import Followers
from projections import database
from projections.database import StaleTracking, rounds
from projections.status_board import Filters, StatusBoard, list_declarations
from tradehub.bootstrap import VIEW_NAMES, Hub, Settings, build_hub

from . import samples


def board(hub: Hub, **filters) -> dict[str, dict]:
    items, _ = list_declarations(hub.views, Filters(**filters), limit=500)
    return {item["reference"]: item for item in items}


def test_the_board_follows_every_kind_of_event(hub: Hub):
    app = hub.declarations
    goods = app.submit(samples.goods()).declaration.id
    call = app.submit(samples.vessel_call()).declaration.id
    app.record_response(goods, "customs", "c1", "released", "2026-12-01T09:00:00Z")
    app.record_response(goods, "port", "p1", "released", "2026-12-01T09:01:00Z")
    app.withdraw(call, "voyage cancelled")
    hub.runner.catch_up()
    assert board(hub)["TEST-GOODS-0001"]["status"] == "in_progress"  # every agency released: not yet settled
    assert hub.runner.catch_up() == 2 * len(hub.runner.followers)  # what the enforcement process recorded: gate-out
    # and the release
    rows = board(hub)
    assert rows["TEST-GOODS-0001"]["status"] == "released" and rows["TEST-GOODS-0001"]["released_at"]
    assert rows["TEST-GOODS-0001"]["version"] == app.get(goods).version
    assert rows["TEST-CALL-0001"]["status"] == "withdrawn"
    assert rows["TEST-CALL-0001"]["agencies"]["border"] == {"status": "pending"}
    assert hub.runner.lag() == dict.fromkeys(VIEW_NAMES, 0)


def test_an_amendment_reroutes_the_board_and_clears_release(hub: Hub):
    app = hub.declarations
    declaration = app.submit(samples.goods()).declaration
    app.amend(declaration.id, 1, samples.goods(containers=[]))
    hub.runner.catch_up()
    row = board(hub)["TEST-GOODS-0001"]
    assert list(row["agencies"]) == ["customs"]
    assert board(hub, agency="port") == {}
    assert board(hub, agency="customs").keys() == {"TEST-GOODS-0001"}


def test_two_runners_racing_apply_each_event_once(hub: Hub):
    for n in range(30):
        hub.declarations.submit(samples.goods(reference=f"RACE-{n}"))
    other = Followers(hub.declarations, hub.views, [StatusBoard(hub.declarations)], batch=7)
    hub.runner.batch = 5
    view, rival = hub.runner.followers[0], other.followers[0]
    # Both read position 0; the first to commit wins, the second must not apply again.
    start = hub.views.position("status_board")
    with hub.views.transaction() as cursor:
        hub.views.advance(cursor, "status_board", start, 3)
    with pytest.raises(StaleTracking):
        with hub.views.transaction() as cursor:
            hub.views.advance(cursor, "status_board", start, 5)
    with hub.views.transaction() as cursor:  # put it back for the real race below
        hub.views.advance(cursor, "status_board", 3, 0)
    while hub.runner.step(view) + other.step(rival):
        pass
    rows = board(hub)
    assert len(rows) == 30 and all(row["version"] == 1 for row in rows.values())
    assert hub.views.position("status_board") == hub.declarations.recorder.max_notification_id()


def test_a_failing_view_stops_where_it_is_and_resumes(hub: Hub, monkeypatch):
    hub.declarations.submit(samples.goods())
    view = hub.runner.followers[0]
    original = view.apply
    monkeypatch.setattr(view, "apply", lambda cursor, events: (_ for _ in ()).throw(RuntimeError("disk")))
    with pytest.raises(RuntimeError):
        hub.runner.step(view)
    assert hub.views.position("status_board") == 0 and board(hub) == {}
    monkeypatch.setattr(view, "apply", original)
    assert hub.runner.step(view) == 1
    assert board(hub).keys() == {"TEST-GOODS-0001"}


def test_the_follow_loop_reports_failures_for_healthz_and_clears_them(hub: Hub, monkeypatch):
    hub.declarations.submit(samples.goods())
    view = hub.runner.followers[0]
    original, calls = view.apply, []

    def flaky(cursor, events):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("lock timeout")
        return original(cursor, events)

    monkeypatch.setattr(view, "apply", flaky)
    hub.runner.interval = 0.01
    hub.runner.start()
    deadline = time.monotonic() + 10
    while hub.views.position("status_board") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    hub.runner.stop()
    assert board(hub).keys() == {"TEST-GOODS-0001"}
    assert hub.views.failures() == {}


def test_views_at_one_position_share_a_transaction_and_a_failing_one_holds_up_no_other(hub: Hub, monkeypatch):
    hub.declarations.submit(samples.goods())
    opened, transactions = [], []
    transaction, advance = hub.views.transaction, hub.views.advance

    def counted():
        opened.append(len(opened))
        return transaction()

    def seen(cursor, name, start, end):
        transactions.append(opened[-1])  # which transaction moved this view
        advance(cursor, name, start, end)

    monkeypatch.setattr(hub.views, "transaction", counted)
    monkeypatch.setattr(hub.views, "advance", seen)
    assert hub.runner.fill(hub.declarations.recorder.max_notification_id()) == dict.fromkeys(VIEW_NAMES, 1)
    assert len(transactions) == len(VIEW_NAMES) and len(set(transactions)) == 1  # every view, one transaction

    hub.declarations.submit(samples.goods(reference="TEST-GOODS-0002"))
    board_view = hub.runner.followers[0]
    monkeypatch.setattr(board_view, "apply", lambda cursor, events: (_ for _ in ()).throw(RuntimeError("disk")))
    hub.runner.interval = 0.01
    hub.runner.start()
    deadline = time.monotonic() + 10
    while not (hub.views.failures() and hub.runner.lag()["exchange"] == 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    hub.runner.stop()
    lag = hub.runner.lag()
    assert lag["status_board"] == 1 and all(lag[name] == 0 for name in VIEW_NAMES if name != "status_board")
    assert hub.views.failures().keys() == {"status_board"}
    assert board(hub).keys() == {"TEST-GOODS-0001"}


def test_a_follower_wakes_when_the_log_grows_on_postgresql_and_polls_on_sqlite(hub: Hub, monkeypatch):
    """On PostgreSQL the NOTIFY of an insert wakes it: the safety poll, made 60 s here, is not what it waits on."""
    import followers.runner

    if hub.settings.uses_postgres:
        monkeypatch.setattr(followers.runner, "LISTEN_SAFETY_POLL", 60.0)
    else:
        hub.runner.interval = 0.01
    hub.runner.start()
    try:
        time.sleep(1.0)  # caught up, idle, listening
        assert_a_submission_reaches_the_board(hub)
    finally:
        hub.runner.stop()


def assert_a_submission_reaches_the_board(hub: Hub) -> None:
    """Within 10 s: far less than the safety poll the tests set, far more than a wake-up takes."""
    hub.declarations.submit(samples.goods())
    deadline = time.monotonic() + 10
    while not board(hub) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert board(hub).keys() == {"TEST-GOODS-0001"}


@pytest.mark.postgres
@pytest.mark.slow
def test_a_follower_whose_listening_connection_is_cut_listens_again(postgres_url, postgres_schema, tmp_path,
                                                                   monkeypatch):
    import psycopg

    import followers.runner

    monkeypatch.setattr(followers.runner, "LISTEN_SAFETY_POLL", 60.0)
    hub = build_hub(Settings(data_dir=tmp_path, database_url=postgres_url), schema=postgres_schema)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        def listening() -> set[int]:
            return {pid for [pid] in connection.execute("SELECT pid FROM pg_stat_activity WHERE query = %s",
                                                        (f'LISTEN "{hub.declarations.recorder.channel_name}"',))}

        others = listening()
        hub.runner.start()
        try:
            time.sleep(1.0)
            [ours] = listening() - others
            connection.execute("SELECT pg_terminate_backend(%s)", (ours,))
            time.sleep(3.0)  # it notices, waits a second, listens again
            assert len(listening() - others) == 1
            assert_a_submission_reaches_the_board(hub)
        finally:
            hub.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_worker_process_follows_the_log_and_stops_on_sigterm(kind: str, tmp_path, request):
    url = request.getfixturevalue("postgres_database") if kind == "postgres" else ""
    hub = build_hub(Settings(data_dir=tmp_path, database_url=url))
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path), TRADEHUB_DATABASE_URL=url)
    worker = subprocess.Popen([sys.executable, "-m", "tradehub.cli", "worker", "project"], env=env)
    try:
        hub.declarations.submit(samples.goods())
        deadline = time.monotonic() + 20
        while not board(hub) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board(hub).keys() == {"TEST-GOODS-0001"}
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        hub.close()


class Counting:
    """A view that records how often each event is applied, to catch double application."""

    name = "counting"
    tables = ("CREATE TABLE IF NOT EXISTS counting_applied (position BIGINT NOT NULL)",)

    def apply(self, cursor, events) -> None:
        time.sleep(0.002)  # widen the window in which two runners overlap
        cursor.executemany("INSERT INTO counting_applied (position) VALUES (?)",
                           [(position,) for position, _ in events])

    def forget(self) -> None:
        pass


def test_runners_on_two_threads_apply_each_event_exactly_once(hub: Hub):
    import threading

    for n in range(60):
        hub.declarations.submit(samples.goods(reference=f"TWIN-{n}"))
    runners = [Followers(hub.declarations, hub.views, [Counting()], batch=batch) for batch in (4, 7)]
    head = hub.declarations.recorder.max_notification_id()

    def run(runner: Followers) -> None:
        while hub.views.position("counting") < head:
            runner.step(runner.followers[0])

    threads = [threading.Thread(target=run, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    applied = [row[0] for row in hub.views.query("SELECT position FROM counting_applied")]
    assert sorted(applied) == sorted(set(applied)) and len(applied) == 60


def test_catch_up_reaches_the_head_even_when_another_runner_interferes(hub: Hub):
    for n in range(12):
        hub.declarations.submit(samples.goods(reference=f"HEAD-{n}"))
    rival = Followers(hub.declarations, hub.views, [StatusBoard(hub.declarations)], batch=3)
    rival.step(rival.followers[0])
    hub.runner.batch = 5
    hub.runner.catch_up()
    assert hub.views.position("status_board") == hub.declarations.recorder.max_notification_id()


def test_rounds_put_no_key_twice_in_a_round_and_keep_each_keys_order():
    rows = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1), ("b", 2)]
    assert rounds(rows, key=lambda row: row[0]) == [[("a", 1), ("b", 1), ("c", 1)], [("a", 2), ("b", 2)], [("a", 3)]]
    assert rounds([], key=lambda row: row) == []


def test_a_bulk_statement_means_the_same_on_either_store(hub: Hub):
    """`{rows}` is one set on PostgreSQL and one row at a time on SQLite; NULLs, numbers and flags survive both."""
    with hub.views.transaction() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bulk_probe (k TEXT PRIMARY KEY, n INTEGER, x DOUBLE PRECISION,"
                       " t TEXT)")
        cursor.bulk("INSERT INTO bulk_probe (k, n, x, t) SELECT * FROM {rows} WHERE true ON CONFLICT (k) DO NOTHING",
                    "k text, n integer, x double precision, t text", [("a", 1, 0.5, None), ("b", 2, None, "é")])
        cursor.bulk("UPDATE bulk_probe SET t = CASE WHEN batch.flag THEN batch.t ELSE bulk_probe.t END FROM {rows}"
                    " WHERE bulk_probe.k = batch.k", "k text, flag boolean, t text",
                    [("a", True, "set"), ("b", False, "ignored")])
        cursor.bulk("INSERT INTO bulk_probe (k) SELECT * FROM {rows}", "k text", [])  # nothing to do, no statement
    assert hub.views.query("SELECT k, n, x, t FROM bulk_probe ORDER BY k") == [("a", 1, 0.5, "set"), ("b", 2, None, "é")]


@pytest.mark.parametrize("copy_rows", [1, 10_000], ids=["copied", "arrays"])
@given(rows=st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.none() | st.booleans(),
                               st.none() | st.floats(allow_nan=False, allow_infinity=False),
                               st.none() | st.text(alphabet=st.characters(exclude_categories=["Cs"],
                                                                           exclude_characters="\x00"))),
                     max_size=12, unique_by=lambda row: row[0]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bulk_rows_arrive_as_they_were_copied_or_as_arrays(hub: Hub, monkeypatch: pytest.MonkeyPatch,
                                                            copy_rows: int, rows: list[tuple]):
    """A rebuild's large batches go by COPY on PostgreSQL, live ones as arrays: the same rows either way, and
    the same columns loaded twice in one transaction (statistics' rounds do) holding only the second load."""
    monkeypatch.setattr(database, "COPY_ROWS", copy_rows)
    with hub.views.transaction() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bulk_copied (k BIGINT PRIMARY KEY, b BOOLEAN,"
                       " x DOUBLE PRECISION, t TEXT)")
        cursor.execute("DELETE FROM bulk_copied")
        columns = "k bigint, b boolean, x double precision, t text"
        cursor.bulk("INSERT INTO bulk_copied SELECT * FROM {rows}", columns, rows[: len(rows) // 2])
        cursor.bulk("INSERT INTO bulk_copied SELECT * FROM {rows}", columns, rows[len(rows) // 2:])
    stored = hub.views.query("SELECT k, b, x, t FROM bulk_copied ORDER BY k")
    assert stored == sorted((k, None if b is None else bool(b), x, t) for k, b, x, t in rows)
