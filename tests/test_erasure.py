"""Crypto-shredding (docs/personal-data.md): the people a vessel call names are sealed under a key of the declaration's
own, never stored in the clear, and erased everywhere by deleting that key, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import copy
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.declarations import (
    ERASED,
    Declarations,
    MasterKeyError,
    NothingToErase,
    PersonalDataGone,
    VersionConflict,
    new_master_key,
    scrub,
)
from hub.declarations.personal_data import SEALED, PersonalDataUnreadable
from tradehub.bootstrap import ConfigurationError, Hub, Settings, build_declarations

from . import samples
from .conftest import SECRET, Api
from .test_personal_data import generated_people, person
from .test_web import Browser, exchange_with_simulated_agencies

TRADER = {"party": samples.SHIPPING_AGENT}


def _calls(hub: Hub, count: int, seed: str) -> tuple[list[str], list[list[str]]]:
    """`count` vessel calls with people named nowhere else, taken to released by the simulated agencies."""
    ids, secrets = [], []
    for n in range(count):
        crew, passengers, values = generated_people(6, f"{seed}-{n}")
        submission = hub.declarations.submit(samples.vessel_call(f"ERASE-{n}", crew=crew,
                                                                 passengers=passengers))
        ids.append(str(submission.declaration.id))
        secrets.append(values)
    exchange_with_simulated_agencies(hub)
    return ids, secrets


def _stored_everywhere(hub: Hub, store: tuple[Settings, str]) -> list[tuple[str, bytes]]:
    """Every file of the data directory, and on PostgreSQL every row of every table of the hub's schema (as text:
    bytea comes out as hex, which `_found` looks for too)."""
    settings, schema = store
    found = [(str(path.relative_to(settings.data_dir)), path.read_bytes())
             for path in settings.data_dir.rglob("*") if path.is_file()]
    if settings.uses_postgres:
        with psycopg.connect(settings.database_url) as connection:
            tables = [name for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
            assert "personal_data_keys" in tables and "agency_messages" in tables
            for table in tables:
                rows = connection.execute(f'SELECT t::text FROM "{schema}"."{table}" t').fetchall()
                found.append((f"table {table}", "\n".join(row for (row,) in rows).encode()))
    return found


def _found(places: list[tuple[str, bytes]], values: list[bytes]) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for where, content in places:
        for value in values:
            if value in content or value.hex().encode() in content:
                hits.setdefault(where, []).append(value[:12].decode(errors="replace"))
    return hits


def test_no_person_is_stored_in_the_clear_and_erasure_leaves_nothing_to_find(hub: Hub, store: tuple[Settings, str]):
    """The "done when" of erasure: before it, no name or document number in any file or table (the people are
    sealed, the cipher key is not set); after it, not even the key that sealed them. The lifecycle, the audit trail
    and the declaration that was not erased are untouched, and a rebuild of the views changes nothing."""
    ids, secrets = _calls(hub, 3, store[0].data_dir.name)
    every_value = [value.encode() for values in secrets for value in values]
    assert _found(_stored_everywhere(hub, store), every_value) == {}
    api = Api(hub)
    kept = api.client.get(f"/v1/declarations/{ids[2]}", headers=api.as_("trader", **TRADER)).json()
    assert kept["status"] == "released" and kept["document"]["crew"][0]["family_name"] == secrets[2][0]
    keys = {ident: hub.declarations.data_keys.current(UUID(ident)) for ident in ids[:2]}
    wrapped = [hub.declarations.recorder.select_data_key(UUID(ident))[1] for ident in ids[:2]]
    statistics = api.client.get("/v1/views/statistics", headers=api.as_("admin")).json()

    for ident in ids[:2]:
        declaration, recorded = hub.declarations.erase_personal_data(ident, "admin dpo", "purpose served")
        assert recorded and declaration.personal_data_erased["by"] == "admin dpo"
        assert declaration.personal_data_erased["messages"] > 0  # what the agencies got, the hub can no longer show
    samples.followed(hub)

    erased_values = [value.encode() for values in secrets[:2] for value in values]
    key_material = [raw for _, raw in keys.values()] + wrapped
    assert _found(_stored_everywhere(hub, store), erased_values + key_material) == {}
    for ident in ids[:2]:
        for who in (api.as_("trader", **TRADER), api.as_("admin"), api.as_("officer", agency="border")):
            shown = api.client.get(f"/v1/declarations/{ident}", headers=who).json()
            assert shown["status"] == "released"
            assert {person["family_name"] for person in shown["document"]["crew"]} <= {ERASED}
            history = api.client.get(f"/v1/declarations/{ident}/history", headers=who).text
            messages = api.client.get(f"/v1/declarations/{ident}/messages", headers=who).json()
            assert not [value for value in secrets[ids.index(ident)] if value in history + str(messages)]
        erased = [event for event in api.client.get(f"/v1/declarations/{ident}/history",
                                                    headers=api.as_("admin")).json()["events"]
                  if event["type"] == "PersonalDataErased"]
        assert [(event["erased_by"], event["reason"]) for event in erased] == [("admin dpo", "purpose served")]
    page = Browser(hub).sign_in("officer", agency="border").get(f"/declarations/{ids[0]}").text
    assert ERASED in page and not [value for value in secrets[0] if value in page]
    kept_after = api.client.get(f"/v1/declarations/{ids[2]}", headers=api.as_("trader", **TRADER)).json()
    assert kept_after["document"] == kept["document"]  # another declaration's key is its own
    assert api.client.get("/v1/views/statistics", headers=api.as_("admin")).json() == statistics

    before = _views(hub)
    hub.runner.rebuild(None)
    assert _views(hub) == before
    assert _found(_stored_everywhere(hub, store), erased_values + key_material) == {}


def _views(hub: Hub) -> dict[str, Any]:
    api = Api(hub)
    admin = api.as_("admin")
    return {path: api.client.get(path, headers=admin).json() for path in (
        "/v1/declarations?limit=100", "/v1/views/statistics", "/v1/views/recognition")}


def test_erasure_is_recorded_once_however_often_and_concurrently_it_is_asked(hub: Hub):
    declaration_id = str(hub.declarations.submit(samples.vessel_call("ERASE-TWICE")).declaration.id)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(
        hub.declarations.erase_personal_data(declaration_id, "dpo", "request")[1])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = hub.declarations.erase_personal_data(declaration_id, "dpo", "request")[1]
    assert sorted(results) == [False, False, False, True] and again is False
    types = [event["type"] for event in hub.declarations.history(declaration_id)]
    assert types.count("PersonalDataErased") == 1


def test_nothing_to_erase_says_why(hub: Hub):
    goods = hub.declarations.submit(samples.goods("ERASE-GOODS")).declaration
    with pytest.raises(NothingToErase, match="names no one"):
        hub.declarations.erase_personal_data(goods.id, "dpo", "request")


def test_an_amendment_racing_an_erasure_never_leaves_a_readable_person(hub: Hub, store: tuple[Settings, str]):
    """Whichever comes first, afterwards no event, snapshot or route gives back a name: an amendment stored with
    the key just before its deletion is sealed under it; one after is refused."""
    crew, passengers, values = generated_people(4, "race")
    document = samples.vessel_call("ERASE-RACE", crew=crew, passengers=passengers)
    declaration = hub.declarations.submit(document).declaration
    changed = copy.deepcopy(document)
    changed["crew"][0]["given_names"] = "ZQRACERNAME"
    outcomes: list[str] = []

    def amend() -> None:
        try:
            hub.declarations.amend(declaration.id, 1, changed)
            outcomes.append("amended")
        except (PersonalDataGone, VersionConflict) as error:
            outcomes.append(type(error).__name__)

    racers = [threading.Thread(target=amend),
              threading.Thread(target=lambda: hub.declarations.erase_personal_data(declaration.id, "dpo", "race"))]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert len(outcomes) == 1
    fresh = build_declarations(hub.settings, schema=store[1])  # another process: no copy of the key
    try:
        current, history = fresh.with_history(declaration.id)
        assert current.personal_data_erased is not None
        assert not [value for value in [*values, "ZQRACERNAME"] if value in repr(history) + repr(current.document)]
    finally:
        fresh.close()


def test_a_changed_or_moved_sealed_box_is_refused_never_misread():
    """A forger with write access to the event table: a changed box is refused; another declaration's box reads as
    erased under its own key id, and as unreadable under this declaration's; never as anyone's people."""
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    first = app.submit(samples.vessel_call("ERASE-BOX-1")).declaration
    second = app.submit(samples.vessel_call("ERASE-BOX-2")).declaration
    [one] = app.recorder.select_events(first.id)
    [two] = app.recorder.select_events(second.id)
    state_one = app.mapper.transcoder.decode(one.state)
    state_two = app.mapper.transcoder.decode(two.state)

    def read(stored: Any, state: dict[str, Any]) -> Any:
        app.data_keys.forget(stored.originator_id)
        return app.mapper.to_domain_event(type(stored)(
            originator_id=stored.originator_id, originator_version=stored.originator_version, topic=stored.topic,
            state=app.mapper.transcoder.encode(state)))

    box = bytearray(base64.b64decode(state_one[SEALED]["box"]))
    box[-1] ^= 1
    with pytest.raises(PersonalDataUnreadable, match="changed or moved"):
        read(one, {**state_one, SEALED: {**state_one[SEALED], "box": base64.b64encode(bytes(box)).decode()}})
    with pytest.raises(PersonalDataUnreadable, match="changed or moved"):
        read(two, {**state_two, SEALED: {**state_two[SEALED], "box": state_one[SEALED]["box"]}})
    moved = read(two, {**state_two, SEALED: dict(state_one[SEALED])})
    assert moved.document == scrub(second.document)
    assert read(one, state_one).document == first.document  # the untouched row still reads


def test_a_hub_started_with_another_master_key_says_so_at_once(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, secret=SECRET)
    first = build_declarations(settings)
    first.submit(samples.vessel_call("ERASE-MASTER"))
    first.close()
    other = Settings(data_dir=tmp_path, secret=SECRET, personal_data_key=new_master_key())
    with pytest.raises(ConfigurationError, match="TRADEHUB_PERSONAL_DATA_KEY"):
        build_declarations(other)


def test_processes_starting_together_all_make_or_read_one_whole_master_key(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """`serve` starts its workers at once on a new data directory: each must find the one key, never a file
    another has created but not yet written (CI saw "decodes to 0 bytes" from such a race). Making a key is
    slowed here, so that the others come while the first is at it."""
    from concurrent.futures import ThreadPoolExecutor

    from tradehub import bootstrap

    made = bootstrap.new_master_key

    def slow_key() -> str:
        time.sleep(0.2)
        return made()

    monkeypatch.setattr(bootstrap, "new_master_key", slow_key)
    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(6) as pool:
        keys = set(pool.map(lambda _: bootstrap.personal_data_key(settings), range(6)))
    assert len(keys) == 1 and len(base64.b64decode(keys.pop())) == 32
    assert [path.name for path in (tmp_path / "keys").iterdir()] == ["personal-data.key"]  # no scratch left


def test_a_persistent_store_without_a_master_key_is_refused(tmp_path: Path):
    with pytest.raises(MasterKeyError, match="PERSONAL_DATA_KEY is not set"):
        Declarations({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "x.sqlite"),
                      "APPLICATION_RECORDER_TOPIC": "hub.storage:BatchInsertSQLiteRecorder"})


# ---- the mapper, over generated people -------------------------------------------------------------

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzÄÖÜßÉÈçñĂăƠơ ЖЩЯжщя 王李张刘陈杨 محمدعلي"
# "QX" first: no field name, topic or code of a stored event contains it, so only a person's name can match.
_names = st.text(st.sampled_from(_LETTERS), min_size=6, max_size=30).map(lambda name: "QX" + name.strip()).filter(
    lambda name: "  " not in name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_names, min_size=1, max_size=6, unique=True), st.integers(0, 5), st.booleans())
def test_people_never_reach_the_store_and_read_back_exactly_or_erased(names: list[str], passengers: int,
                                                                       erase: bool):
    """P7/P8 (docs/personal-data.md): whatever the names, the stored bytes hold none of them; read back they are
    exactly what was declared, and once erased exactly as many erased people."""
    crew = [{**person(name, "Given", f"N{n:08d}", "1980-02-29"), "rank": "Cook"} for n, name in enumerate(names)]
    crew[0]["rank"] = "Master"
    travellers = [person(f"PAX{name}", "Pax", f"P{n:08d}", "1990-01-01") for n, name in
                  enumerate(names[:passengers])]
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        document = samples.vessel_call("PROP-1", crew=crew, passengers=travellers)
        declaration = app.submit(document).declaration
        stored = b"".join(event.state for event in app.recorder.select_events(declaration.id))
        assert not [name for name in names if name.encode() in stored or name.encode("unicode_escape") in stored]
        app.data_keys.forget(declaration.id)  # read from the store, not the submitting process's copy
        assert app.get(declaration.id).document == declaration.document
        if erase:
            app.erase_personal_data(declaration.id, "dpo", "property")
            fresh = app.mapper.to_domain_event(app.recorder.select_events(declaration.id)[0])
            assert fresh.document == scrub(declaration.document)
            assert len(fresh.document["crew"]) == len(crew)
            assert len(fresh.document.get("passengers", [])) == len(travellers)
    finally:
        app.close()


def test_a_dispatch_parked_before_the_erasure_is_not_sent_again_and_says_why(hub: Hub):
    """What the agencies did not get before the erasure, the hub can no longer build: the parked dispatch stays
    parked, with the erasure as its reason, instead of sending a crew list of "[erased]"."""
    from followers.dispatch import AgencyDispatch, Changes
    from followers.runner import Followers
    from projections.dispatch_parking import parked

    from .test_dispatch_isolation import Clock, Refusing

    publisher, clock = Refusing(), Clock()
    ident = str(hub.declarations.submit(samples.vessel_call("ERASE-PARKED")).declaration.id)
    publisher.broken.add(ident)
    runner = Followers(hub.declarations, hub.views, [
        AgencyDispatch(hub.declarations, "border", publisher, changes=Changes(hub.declarations), clock=clock,
                       draw=lambda: 1.0)])
    runner.catch_up()
    assert [entry["agency"] for entry in parked(hub.views)] == ["border"]
    hub.declarations.erase_personal_data(ident, "dpo", "request")
    publisher.broken.clear()
    clock.now += 3600
    assert runner.retry() == 0
    [entry] = parked(hub.views)
    assert "personal data was erased" in entry["reason"] and entry["attempts"] > 1
    assert [message for message in publisher.published if message.declaration_id == ident] == []
