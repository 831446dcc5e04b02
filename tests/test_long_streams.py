"""Long streams (docs/long-streams.md): declarations are read from snapshots taken every N versions, the snapshots
are erased with the people they name and upcast as events are, and the history stays bounded, on SQLite and
PostgreSQL. Timings are `tradehub bench long-stream`'s; here only what must hold."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import reduce
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.declarations import ERASED, Declaration, DeclarationError, Declarations, VersionConflict
from hub.declarations.snapshots import DEFAULT_INTERVAL, snapshot_interval
from tradehub.api.declarations import HISTORY_DOCUMENTS
from tradehub.bootstrap import Settings, build_declarations, persistence_env, personal_data_key

from . import samples
from .conftest import Api
from .test_personal_data import generated_people, person
from .test_web import Browser

Make = Callable[[int], Declarations]


@pytest.fixture
def snapshotting(store: tuple[Settings, str]) -> Iterator[Make]:
    """Declarations on the store, as the hub builds them but with a snapshot interval of the test's choosing; every
    one made shares the store (a second one is another process)."""
    settings, schema = store
    made: list[Declarations] = []

    def make(interval: int) -> Declarations:
        env = persistence_env(settings, schema) | {"PERSONAL_DATA_KEY": personal_data_key(settings),
                                                   "SNAPSHOT_INTERVAL": str(interval)}
        made.append(Declarations(env))
        return made[-1]

    yield make
    for app in made:
        if not app.closing.is_set():
            app.close()


def replayed(app: Declarations, ident: UUID, version: int | None = None) -> Declaration:
    """The declaration folded from its events alone, every one of them (no snapshot)."""
    return reduce(lambda aggregate, event: event.mutate(aggregate), app.events.get(ident, lte=version), None)


def state(declaration: Declaration) -> dict[str, Any]:
    return {key: value for key, value in vars(declaration).items() if key != "_pending_events"}


def snapshot_versions(app: Declarations, ident: UUID) -> list[int]:
    app.snapshotter.settle()
    return [snapshot.originator_version for snapshot in app.snapshots.get(ident)]


def answer(app: Declarations, ident: UUID, n: int, status: str = "received") -> Declaration:
    return app.record_response(ident, "border", f"border-{n}-{status}", status, "2026-12-01T09:00:00Z")


def amend(app: Declarations, ident: UUID, **changes: Any) -> Declaration:
    current = app.get(ident)
    document = {key: value for key, value in current.document.items()}
    return app.amend(ident, current.version, {**document, **changes})


# ---- the interval ---------------------------------------------------------------------------------------------

def test_the_hub_reads_from_snapshots_taken_every_20_versions_by_default(store: tuple[Settings, str]):
    settings, schema = store
    app = build_declarations(settings, schema=schema)
    try:
        assert app.snapshots is not None
        assert app.snapshotter.interval == DEFAULT_INTERVAL == 20
    finally:
        app.close()
    assert snapshot_interval({}) == 20 and snapshot_interval({"SNAPSHOT_INTERVAL": " 7 "}) == 7


@pytest.mark.parametrize("value", ["-1", "ten", "2.5", "1e3"])
def test_an_interval_that_is_no_whole_number_is_refused_naming_it(value: str):
    with pytest.raises(ValueError, match="SNAPSHOT_INTERVAL"):
        snapshot_interval({"SNAPSHOT_INTERVAL": value})


def test_a_snapshot_is_taken_at_each_multiple_of_the_interval_and_reads_start_from_the_latest(snapshotting: Make):
    app = snapshotting(3)
    ident = app.submit(samples.vessel_call("LONG-1")).declaration.id
    for n in range(3):
        amend(app, ident, voyage=f"V{n}")
        answer(app, ident, n)
    assert app.get(ident).version == 7
    assert snapshot_versions(app, ident) == [3, 6]
    read_after: list[Any] = []
    events_get = app.events.get
    app.events.get = lambda *args, **kwargs: read_after.append(kwargs.get("gt")) or events_get(*args, **kwargs)
    read = app.get(ident)
    assert read_after == [6]  # the events after the latest snapshot, and no others
    app.events.get = events_get
    assert state(read) == state(replayed(app, ident))
    assert app.snapshotter.taken == 2 and app.snapshotter.failed == 0


def test_an_interval_of_0_takes_none_and_other_aggregates_take_none_at_any_interval(snapshotting: Make):
    quiet, busy = snapshotting(0), snapshotting(1)
    first = quiet.submit(samples.vessel_call("LONG-QUIET")).declaration.id
    answer(quiet, first, 1)
    assert snapshot_versions(quiet, first) == []
    second = busy.submit(samples.vessel_call("LONG-BUSY")).declaration.id
    answer(busy, second, 1)
    alert = busy.raise_alert("vessel", "9321483", "a tip-off", "officer:maritime")
    busy.clear_alert(alert.id, "officer:maritime")
    assert snapshot_versions(busy, second) == [1, 2]
    assert snapshot_versions(busy, alert.id) == []


def test_a_snapshot_that_cannot_be_written_fails_no_command_and_the_next_one_is_taken(
        snapshotting: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    app = snapshotting(2)
    ident = app.submit(samples.vessel_call("LONG-FAIL")).declaration.id
    take_snapshot = app.take_snapshot

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("the snapshot table is gone")

    monkeypatch.setattr(app, "take_snapshot", broken)
    with caplog.at_level(logging.WARNING, logger="hub.declarations.snapshots"):
        assert amend(app, ident, voyage="V1").version == 2  # the command stands
        assert snapshot_versions(app, ident) == []
    assert app.snapshotter.failed == 1
    assert f"snapshot of declaration {ident} version 2 failed" in caplog.text
    monkeypatch.setattr(app, "take_snapshot", take_snapshot)
    answer(app, ident, 1)
    answer(app, ident, 2)
    assert snapshot_versions(app, ident) == [4]
    assert state(app.get(ident)) == state(replayed(app, ident))


def test_closing_waits_only_so_long_for_a_snapshot_stuck_on_a_locked_store(
        snapshotting: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """A worker told to stop must exit within its grace period though its snapshot waits on a lock another
    process holds; the declaration's commands are all stored, and the next process takes the next snapshot."""
    app = snapshotting(2)
    ident = app.submit(samples.vessel_call("LONG-STUCK")).declaration.id
    entered, release = threading.Event(), threading.Event()

    def stuck(*_: Any, **__: Any) -> None:
        entered.set()
        release.wait(30)

    monkeypatch.setattr(app, "take_snapshot", stuck)
    assert amend(app, ident, voyage="V1").version == 2
    assert entered.wait(10)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="hub.declarations.snapshots"):
        assert app.snapshotter.close(timeout=0.3) is False
    assert time.monotonic() - started < 5
    assert "still being written" in caplog.text
    release.set()
    assert app.snapshotter.settle(10)
    entered.clear()
    answer(app, ident, 1)
    answer(app, ident, 2)  # version 4 falls due, but a closed snapshotter takes no more
    assert app.snapshotter.settle(10) and not entered.is_set()
    assert app.get(ident).version == 4


def test_racing_commands_get_a_snapshot_at_every_multiple_each_equal_to_its_replay(snapshotting: Make):
    """Answers from many threads at once: group commit saves them in shared batches, the snapshot thread takes
    what they make due meanwhile, and every snapshot is the declaration as of its version."""
    app = snapshotting(2)
    ident = app.submit(samples.goods("LONG-RACE")).declaration.id
    agencies = sorted(app.get(ident).routed_agencies)

    def racing(n: int) -> None:
        for _ in range(10):  # as a client does when the hub's own retries ran out under the race
            try:
                app.record_response(ident, agencies[n % len(agencies)], f"race-{n}", "received",
                                    "2026-12-01T09:00:00Z")
                return
            except VersionConflict:
                continue

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(racing, range(24)))
    latest = app.get(ident).version
    assert latest == 25 and snapshot_versions(app, ident) == list(range(2, 25, 2))
    for snapshot in app.snapshots.get(ident):
        assert state(snapshot.mutate(None)) == state(replayed(app, ident, snapshot.originator_version))


# ---- replay from a snapshot equals replay from events ------------------------------------------------------------

ALERT = {"alert_id": "", "subject_kind": "vessel", "subject": "9321483", "reason": "a tip-off",
         "raised_by": "officer:maritime", "raised_at": "2026-12-01T08:00:00+00:00"}
STEPS = st.lists(st.sampled_from(["amend", "receipt", "accept", "release", "reject", "hold", "lift", "inspect",
                                  "attach", "fail", "resume", "settle", "withdraw"]), min_size=1, max_size=24)


def _step(app: Declarations, ident: UUID, step: str, n: int) -> None:
    """One command of a random history; a command the declaration refuses in its state changes nothing."""
    agencies = sorted(app.get(ident).routed_agencies)
    agency = agencies[n % len(agencies)]
    commands: dict[str, Callable[[], Any]] = {
        "amend": lambda: amend(app, ident, voyage=f"V{n}"),
        "receipt": lambda: app.record_response(ident, agency, f"m{n}", "received", "2026-12-01T09:00:00Z"),
        "accept": lambda: app.record_response(ident, agency, f"m{n}", "accepted", "2026-12-01T09:00:00Z"),
        "release": lambda: app.record_response(ident, agency, f"m{n}", "released", "2026-12-01T09:00:00Z",
                                               code="OK"),
        "reject": lambda: app.record_response(ident, agency, f"m{n}", "rejected", "2026-12-01T09:00:00Z"),
        "hold": lambda: app.place_hold(ident, {**ALERT, "alert_id": f"alert-{n % 3}"}),
        "lift": lambda: app.lift_hold(ident, f"alert-{n % 3}"),
        "inspect": lambda: app.record_inspection(ident, agency, f"m{n}", "pass", "2026-12-01T09:00:00Z"),
        "attach": lambda: app.attach_document(ident, f"{n:064x}", f"doc-{n}.pdf", "application/pdf", 100 + n,
                                              "trader", "2026-12-01T09:00:00Z"),
        "fail": lambda: app.dispatch_failed(ident, agency, app.get(ident).version, "broker down",
                                            "2026-12-01T09:00:00Z"),
        "resume": lambda: app.dispatch_resumed(ident, agency),
        "settle": lambda: app.settle({ident: app.get(ident).version}),
        "withdraw": lambda: app.withdraw(ident, "changed plans"),
    }
    try:
        commands[step]()
    except (DeclarationError, ValueError):
        pass


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(interval=st.integers(1, 4), steps=STEPS, kind=st.sampled_from(["vessel_call", "goods"]))
def test_every_version_read_from_a_snapshot_equals_its_replay_from_events(snapshotting: Make, interval: int,
                                                                          steps: list[str], kind: str):
    app = snapshotting(interval)
    try:
        reference = f"LONG-{uuid.uuid4().hex[:12]}"  # each example a declaration of its own
        document = samples.vessel_call(reference) if kind == "vessel_call" else samples.goods(reference)
        ident = app.submit(document).declaration.id
        for n, step in enumerate(steps):
            _step(app, ident, step, n)
        latest = app.get(ident).version
        taken = snapshot_versions(app, ident)
        assert taken == [version for version in range(1, latest + 1) if version % interval == 0]
        assert app.snapshotter.failed == 0
        for version in range(1, latest + 1):
            assert state(app.repository.get(ident, version=version)) == state(replayed(app, ident, version))
        assert state(app.get(ident)) == state(replayed(app, ident))
    finally:
        app.close()  # each example's: a pool of connections apiece would exhaust PostgreSQL's


# ---- erasure ---------------------------------------------------------------------------------------------------

def _snapshot_rows(app: Declarations, store: tuple[Settings, str]) -> bytes:
    """Every row of the snapshot table, as stored (bytea as hex on PostgreSQL, where `_named` looks too)."""
    settings, schema = store
    if settings.uses_postgres:
        with psycopg.connect(settings.database_url) as connection:
            rows = connection.execute(f'SELECT t::text FROM "{schema}"."declarations_snapshots" t').fetchall()
        return "\n".join(row for (row,) in rows).encode()
    with app.snapshots.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT originator_id, originator_version, topic, state FROM stored_snapshots")
        return b"\n".join(b"%b %d %b %b" % (str(row[0]).encode(), row[1], row[2].encode(), row[3])
                          for row in cursor.fetchall())


def _named(stored: bytes, values: list[str]) -> list[str]:
    return [value for value in values if value.encode() in stored or value.encode().hex().encode() in stored]


def test_erasure_erases_the_people_of_every_snapshot_taken_before_it_and_after(snapshotting: Make,
                                                                              store: tuple[Settings, str]):
    app = snapshotting(2)
    crew, passengers, secrets = generated_people(6, f"long-streams-{store[0].data_dir.name}")
    ident = app.submit(samples.vessel_call("LONG-ERASE", crew=crew, passengers=passengers)).declaration.id
    amend(app, ident, voyage="V1")
    answer(app, ident, 1)
    amend(app, ident, voyage="V2")
    assert snapshot_versions(app, ident) == [2, 4]
    assert _named(_snapshot_rows(app, store), secrets) == []  # sealed under the declaration's key
    assert [person["family_name"] for person in next(app.snapshots.get(ident, desc=True, limit=1))
            .state["document"]["crew"]] == [person["family_name"] for person in crew]

    declaration, recorded = app.erase_personal_data(ident, "admin dpo", "purpose served")
    assert recorded and declaration.version == 5
    answer(app, ident, 2)  # version 6: a snapshot after the erasure
    assert snapshot_versions(app, ident) == [2, 4, 6]
    assert app.snapshotter.take(ident, 3)  # one due before the erasure, written after it
    assert app.snapshotter.failed == 0

    other = snapshotting(0)  # another process: no copy of the key, nor of the erasure
    for reader in (app, other):
        for snapshot in reader.snapshots.get(ident):
            for people in ("crew", "passengers"):
                assert {value for person in snapshot.state["document"][people] for value in person.values()
                        if not isinstance(value, dict)} == {ERASED}, snapshot.originator_version
        for version in (2, 3, 4, 6):
            read = reader.repository.get(ident, version=version)
            assert {person["family_name"] for person in read.document["crew"]} == {ERASED}
        assert reader.get(ident).personal_data_erased["by"] == "admin dpo"
    assert _named(_snapshot_rows(app, store), secrets) == []


# ---- snapshots upcast like events --------------------------------------------------------------------------------

def test_a_snapshot_stored_in_the_first_state_format_reads_as_today_s_declaration(snapshotting: Make,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    """A snapshot of `Declaration` version 1 (before data keys: no `data_key`, no `personal_data_erased`, no
    `class_version`, its people as they came) goes through `Declaration.upcast_v1_v2` as it is read, and the
    events after it are applied on top, as eventsourcing upcasts events through theirs."""
    app = snapshotting(0)  # the hub takes none: the test stores the one that is read
    ident = app.submit(samples.vessel_call("LONG-V1")).declaration.id
    amend(app, ident, voyage="V1")
    answer(app, ident, 1)
    amend(app, ident, voyage="V2")
    old = {key: value for key, value in Declaration.Snapshot.take(app.repository.get(ident, version=2)).state.items()
           if key not in ("data_key", "personal_data_erased", "class_version")}
    stored = app.mapper.transcoder.encode({"timestamp": datetime.now(UTC), "topic": get_topic(Declaration),
                                           "state": old})
    app.snapshots.recorder.insert_events([StoredEvent(originator_id=ident, originator_version=2,
                                                      topic=get_topic(Declaration.Snapshot), state=stored)])
    upcast = Declaration.upcast_v1_v2
    upcasts: list[dict[str, Any]] = []
    monkeypatch.setattr(Declaration, "upcast_v1_v2", staticmethod(lambda state: upcasts.append(state) or upcast(state)))

    read, expected = snapshotting(0).get(ident), replayed(app, ident)
    assert len(upcasts) == 1 and "data_key" not in orjson.loads(stored)["state"]
    assert read.data_key == "" and read.personal_data_erased is None
    assert (read.version, read.status, read.document) == (4, expected.status, expected.document)
    assert state(read) == {**state(expected), "data_key": ""}

    monkeypatch.delattr(Declaration, "upcast_v1_v2")  # without its upcaster, the old snapshot cannot be read
    with pytest.raises(AttributeError, match="upcast_v1_v2"):
        snapshotting(0).get(ident)


# ---- the history, bounded --------------------------------------------------------------------------------------

def _long_call(hub: Any, reference: str, amendments: int, people: int = 100) -> str:
    """A vessel call naming `people` passengers, amended `amendments` times, with a border receipt every other."""
    passengers = [person(f"FAMILY{n:04d}", f"Given{n:04d}", f"P{n:08d}", "1970-01-01") for n in range(people)]
    ident = hub.declarations.submit(samples.vessel_call(reference, passengers=passengers)).declaration.id
    for n in range(amendments):
        amend(hub.declarations, ident, voyage=f"V{n}")
        if n % 2:
            answer(hub.declarations, ident, n)
    return str(ident)


@pytest.mark.parametrize("who", [{"role": "trader", "party": samples.SHIPPING_AGENT}, {"role": "admin"},
                                 {"role": "officer", "agency": "border"}, {"role": "officer", "agency": "port"}])
def test_the_history_lists_every_event_with_the_documents_of_the_latest_two(api: Api, who: dict[str, str]):
    ident = _long_call(api.hub, "LONG-HISTORY", 6)
    headers = api.as_(**who)
    events = api.client.get(f"/v1/declarations/{ident}/history", headers=headers).json()["events"]
    current = api.client.get(f"/v1/declarations/{ident}", headers=headers).json()
    assert [event["version"] for event in events] == list(range(1, current["version"] + 1))
    carrying = [event for event in events if event["type"] in ("Submitted", "Amended")]
    assert len(carrying) == 7 and all(event["content_hash"] for event in carrying)
    assert [event["version"] for event in carrying if "document" in event] == \
        [event["version"] for event in carrying[-HISTORY_DOCUMENTS:]]
    assert carrying[-1]["document"] == current["document"]
    assert carrying[-2]["document"]["voyage"] == "V4"


def test_the_history_answers_no_more_however_often_a_declaration_is_amended(api: Api):
    short, long = _long_call(api.hub, "LONG-SHORT", 2, 300), _long_call(api.hub, "LONG-LONG", 30, 300)
    headers = api.as_("admin")
    sizes = {ident: len(api.client.get(f"/v1/declarations/{ident}/history", headers=headers).content)
             for ident in (short, long)}
    document = len(orjson.dumps(api.hub.declarations.get(long).document))
    assert sizes[long] - sizes[short] < document  # 28 more amendments, 14 more answers: their lines alone


def test_the_page_shows_the_current_document_and_no_other_version_s(api: Api):
    browser = Browser(api.hub).sign_in("admin")
    ident = _long_call(api.hub, "LONG-PAGE", 3)
    amend(api.hub.declarations, UUID(ident), voyage="LATEST-VOYAGE")
    page = browser.get(f"/declarations/{ident}")
    assert page.status_code == 200 and "LATEST-VOYAGE" in page.text
    assert not [voyage for voyage in ("041E", "V0", "V1", "V2") if f"&#34;{voyage}&#34;" in page.text
                or f'"{voyage}"' in page.text]


# ---- the bench ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_long_stream_bench_reports_every_figure_against_a_fresh_declaration():
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "long-stream", "--amendments", "5",
                             "--rounds", "1", "--snapshot-interval", "2", "--only", "sqlite"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^sqlite: 8 events; 4 snapshots \(latest at version 8\)", result.stdout, re.MULTILINE)
    for figure in ("replay (declarations.get)", "next answer (record_response)", "inbox read (get_many)",
                   "GET /v1/declarations/{id}/history", "GET /declarations/{id} (page)"):
        assert re.search(rf"^{re.escape(figure)}\s+\d+ ms\s+\d+ ms\s+[\d.]+x", result.stdout, re.MULTILINE), figure
