"""Events that evolve (docs/events.md): every era of the golden event log still reads with today's code.

tests/fixtures/golden-events/<era>/ holds the log tests/golden_events.py wrote with the code of that era, as
each store kept it. Here, on both stores:

- each era's rows go into a fresh store as they were stored, and every event is read back with today's mapper
  and replayed into its aggregate. Each event, once upcast, must have exactly the fields its class declares
  today: a field added, renamed or removed without a `class_version` bump and an `upcast_vN_vN+1` fails here;
- every event class today's code can store, at its current class version, is in some era: a new class or
  version comes with a new era;
- the views rebuilt from each era's log equal those of a fresh run of the same scenario with today's code.
  Nothing is normalised: the scenario is deterministic (its clock, derived ids, inputs frozen in the era). The
  one thing that differs between two runs, the licences' signatures (a key made per data directory, and
  ECDSA's random nonce), is in no view.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from hub.declarations import Declaration
from tradehub.bootstrap import Hub, Settings, build_hub

from . import golden_events as golden

ERA_FILES = ("README.md", "inputs.json", "routing.toml", *(f"{store}.jsonl" for store in golden.STORES))
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


# ---- helpers ----------------------------------------------------------------------------------------------------

def era_rows(era: str, store: str) -> list[dict[str, Any]]:
    return golden.read_rows(golden.FIXTURES / era / f"{store}.jsonl")


def store_kind(settings: Settings) -> str:
    return "postgres" if settings.uses_postgres else "sqlite"


def hub_on(settings: Settings, schema: str, era: str) -> Hub:
    """A hub on the given store, routing by the era's frozen rules (the recognition view reads them too)."""
    frozen = golden.settings_for(store_kind(settings), settings.data_dir, golden.FIXTURES / era / "routing.toml",
                                 settings.database_url)
    return build_hub(frozen, schema=schema)


def load(wired: Hub, rows: list[dict[str, Any]]) -> None:
    """The era's rows into the store's event table, as stored, in their order, with the data keys they introduce;
    their notification ids come back as they were."""
    wired.declarations.recorder.insert_events(golden.stored_events(rows))
    assert [row["notification_id"] for row in golden.rows(wired)] == [row["notification_id"] for row in rows]


def declared_fields(event_class: type) -> set[str]:
    """The fields of an event class as eventsourcing makes them (each event class is a frozen dataclass): the
    annotations of every class of its MRO, its class variables aside. They include what eventsourcing adds
    (originator_id, originator_version, timestamp; originator_topic on created events)."""
    return {name for klass in event_class.__mro__ for name, annotation in vars(klass).get("__annotations__", {}).items()
            if not _class_variable(annotation)}


def _class_variable(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return typing.get_origin(annotation) is typing.ClassVar or annotation is typing.ClassVar


def problems(wired: Hub) -> list[str]:
    """Whatever in the store's log today's code cannot read as it declares: each event read back with today's
    mapper must carry exactly its class's fields, and fold into its aggregate; each aggregate must then come
    back from the repository at its last version."""
    app = wired.declarations
    found: list[str] = []
    folded: dict[UUID, Any] = {}
    for row in golden.rows(wired):
        where = f"#{row['notification_id']} {row['topic']}"
        stored = StoredEvent(originator_id=UUID(row["originator_id"]), originator_version=row["originator_version"],
                             topic=row["topic"], state=base64.b64decode(row["state"]))
        try:
            event = app.mapper.to_domain_event(stored)
        except Exception as error:  # noqa: BLE001 - every event that fails to read is reported
            found.append(f"{where}: does not read: {error!r}")
            continue
        declared, carried = declared_fields(type(event)), set(vars(event))
        if carried != declared:
            version = golden.class_version(type(event))
            found.append(f"{where}: carries {sorted(carried - declared)} that its class does not declare, and lacks "
                         f"{sorted(declared - carried)} that it does: an event's fields change only with a "
                         f"class_version bump and an upcaster (class_version {version} reads stored versions "
                         f"through upcast_v1_v2 ... upcast_v{version - 1}_v{version})")
        try:
            folded[event.originator_id] = event.mutate(folded.get(event.originator_id))
        except Exception as error:  # noqa: BLE001
            found.append(f"{where}: does not replay: {error!r}")
    for ident, aggregate in folded.items():
        try:
            version = app.repository.get(ident).version
        except Exception as error:  # noqa: BLE001
            found.append(f"aggregate {ident}: the repository does not give it: {error!r}")
            continue
        if aggregate is None or version != aggregate.version:
            found.append(f"aggregate {ident}: the repository gives version {version}, the log folds to "
                         f"{getattr(aggregate, 'version', None)}")
    return found


def views(wired: Hub) -> dict[str, list[tuple]]:
    """Every row of every read model (`read_models`, what `projections rebuild` rebuilds), sorted."""
    tables = [match.group(1) for follower in wired.runner.followers for statement in follower.tables
              for match in [_TABLE.match(statement)] if match]
    return {table: sorted((tuple(row) for row in wired.views.query(f"SELECT * FROM {table}")), key=repr)
            for table in tables}


@pytest.fixture
def fresh_store(store: tuple[Settings, str], tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """A second empty store of the same kind as `store`."""
    settings, _ = store
    if not settings.uses_postgres:
        yield Settings(data_dir=tmp_path / "fresh"), ""
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    yield Settings(data_dir=tmp_path / "fresh", database_url=settings.database_url), schema
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def loaded(store: tuple[Settings, str], request: pytest.FixtureRequest) -> Iterator[Hub]:
    """A hub on a fresh store holding the era's log (the test's `era` parameter)."""
    settings, schema = store
    era = request.getfixturevalue("era")
    wired = hub_on(settings, schema, era)
    load(wired, era_rows(era, store_kind(settings)))
    yield wired
    wired.close()


# ---- the eras on disk ------------------------------------------------------------------------------------------------

def test_the_eras_on_disk_are_the_eras_the_generator_knows_each_complete():
    on_disk = sorted(path.name for path in golden.FIXTURES.iterdir() if path.is_dir())
    assert on_disk == sorted(golden.ERAS), "each era of tests/golden_events.py ERAS has a folder, and no other"
    for era in golden.ERAS:
        assert sorted(path.name for path in (golden.FIXTURES / era).iterdir()) == sorted(ERA_FILES), era
        for store in golden.STORES:
            rows = era_rows(era, store)
            assert [row["notification_id"] for row in rows] == list(range(1, len(rows) + 1)), (era, store)
    assert sum(path.stat().st_size for path in golden.FIXTURES.rglob("*") if path.is_file()) < 1_000_000


def test_every_event_class_today_is_recorded_at_its_class_version_in_an_era():
    """A new event class, or a new class version of one, comes with a new era (docs/events.md)."""
    recorded = [row for era in golden.ERAS for store in golden.STORES for row in era_rows(era, store)]
    assert golden.missing(recorded) == [], (
        "no golden era records these; add an era: python -m tests.golden_events --era vN --out "
        "tests/fixtures/golden-events/vN --postgres URL (docs/events.md)")


# ---- reading every era with today's code -------------------------------------------------------------------------

@pytest.mark.parametrize("era", golden.ERAS)
def test_every_era_reads_and_replays_with_todays_events(loaded: Hub, era: str):
    assert problems(loaded) == []
    assert len(golden.rows(loaded)) == len(era_rows(era, "sqlite"))


def _people(document: dict[str, Any]) -> dict[str, Any]:
    return {people: document.get(people) for people in ("crew", "passengers")}


@pytest.mark.parametrize("era", golden.ERAS)
def test_the_people_each_era_stored_read_back_as_given_unless_erased(loaded: Hub, era: str):
    """A vessel call's crew and passengers, stored in the clear (v1) or sealed under its data key (v2 on, wrapped
    by the golden master key), read back from the era's log as the scenario gave them; an erased call's do not."""
    given: dict[str, list[dict[str, Any]]] = {}
    for document in json.loads((golden.FIXTURES / era / "inputs.json").read_text("utf-8"))["documents"].values():
        if "crew" in document:
            given.setdefault(document["reference"], []).append(_people(document))
    app = loaded.declarations
    rows = golden.rows(loaded)
    erased = {row["originator_id"] for row in rows if row["topic"].endswith(".PersonalDataErased")}
    read = 0
    for notification in app.recorder.select_notifications(start=1, limit=len(rows)):
        document = getattr(app.mapper.to_domain_event(notification), "document", None)
        if not isinstance(document, dict) or "crew" not in document:
            continue
        read += 1
        shown, gone = _people(document) in given[document["reference"]], str(notification.originator_id) in erased
        assert shown != gone, f"#{notification.id} {document['reference']}: " + (
            "erased, yet its people read back" if gone else "its people do not read back as the scenario gave them")
    assert read >= 3


def _guarded(tmp_path: Path) -> list[str]:
    """The guard's verdict on the first era's SQLite log."""
    era = golden.ERAS[0]
    wired = hub_on(Settings(data_dir=tmp_path), "", era)
    try:
        load(wired, era_rows(era, "sqlite"))
        return problems(wired)
    finally:
        wired.close()


def _declaring(event_class: type, field: str) -> type:
    """The class of `event_class`'s MRO whose own annotations declare `field`."""
    return next(klass for klass in event_class.__mro__ if field in vars(klass).get("__annotations__", {}))


@pytest.mark.parametrize("change", ["added", "removed", "renamed"])
def test_the_guard_fails_when_an_event_changes_its_fields_without_an_upcaster(tmp_path: Path, monkeypatch, change):
    """What someone would do to `Withdrawn` in a hurry: the guard names the event and the field."""
    annotations = vars(_declaring(Declaration.Withdrawn, "reason"))["__annotations__"]
    if change in ("added", "renamed"):
        monkeypatch.setitem(annotations, "withdrawn_by", "str")
    if change in ("removed", "renamed"):
        monkeypatch.delitem(annotations, "reason")
    found = _guarded(tmp_path)
    assert found and all("Declaration.Withdrawn" in problem for problem in found), found
    if change != "removed":
        assert all("lacks ['withdrawn_by']" in problem for problem in found), found
    if change != "added":
        assert all("carries ['reason']" in problem for problem in found), found


def test_the_guard_passes_the_same_change_made_with_a_class_version_and_an_upcaster(tmp_path: Path, monkeypatch):
    annotations = vars(_declaring(Declaration.Withdrawn, "reason"))["__annotations__"]
    monkeypatch.setitem(annotations, "withdrawn_by", "str")
    monkeypatch.setattr(Declaration.Withdrawn, "class_version", 2, raising=False)
    monkeypatch.setattr(Declaration.Withdrawn, "upcast_v1_v2",
                        staticmethod(lambda state: state.update(withdrawn_by="")), raising=False)
    assert _guarded(tmp_path) == []


def test_declared_fields_are_the_fields_eventsourcing_makes_of_each_event_class():
    """The guard's idea of an event's fields is eventsourcing's own (its dataclass fields)."""
    for event_class in golden.event_classes():
        assert declared_fields(event_class) == {field.name for field in dataclasses.fields(event_class)}, event_class


# ---- the views -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("era", golden.ERAS)
def test_the_views_rebuilt_from_each_era_equal_a_fresh_run(loaded: Hub, fresh_store: tuple[Settings, str], era: str):
    head = loaded.declarations.recorder.max_notification_id()
    loaded.runner.rebuild()
    assert loaded.declarations.recorder.max_notification_id() == head, "a rebuild must add nothing to the log"
    from_the_era = views(loaded)

    settings, schema = fresh_store
    fresh = hub_on(settings, schema, era)
    try:
        inputs = json.loads((golden.FIXTURES / era / "inputs.json").read_text("utf-8"))
        golden.run(fresh, inputs, era)
        assert fresh.declarations.recorder.max_notification_id() == head, "the same scenario, as many events"
        fresh.runner.rebuild()
        today = views(fresh)
    finally:
        fresh.close()
    assert all(from_the_era[table] for table in ("board_declarations", "licence_ledger", "alert_holds", "clearance"))
    for table, rows in today.items():
        if table == "personal_data_retention" and era == "v1":
            # v1 stored no data keys: none of its declarations is one a key's deletion could erase
            assert rows and from_the_era[table] == [], table
            continue
        assert from_the_era[table] == rows, table

