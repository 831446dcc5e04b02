"""Retention (docs/personal-data.md, "Retention"): the people a declaration names are erased TRADEHUB_PERSONAL_DATA_DAYS
after its purpose was served, by a sweep that is safe to run twice and from two processes at once, on SQLite and
PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.declarations import ERASED, Declaration
from projections import retention as view
from projections.retention import POLICY, Retained, fold
from tradehub import retention
from tradehub.bootstrap import Hub, Settings, build_hub
from tradehub.cli import main

from . import samples
from .conftest import SECRET, Api
from .test_personal_data import generated_people

DAYS = 30
HELD_VESSEL = "9074729"  # another ship than the samples', so that an alert on it holds one call alone


# ---- when the purpose is served, and when that makes a declaration due: the rule, over any dates ---------------

moments = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2990, 1, 1), timezones=st.just(UTC))


def _event(cls: type, ident: UUID, version: int, moment: datetime, **fields: Any) -> Any:
    if cls is Declaration.Submitted:
        fields.setdefault("originator_topic", "hub.declarations.domainmodel:Declaration")
    return cls(originator_id=ident, originator_version=version, timestamp=moment, **fields)


@st.composite
def lifecycles(draw: st.DrawFn) -> tuple[str, list[Any]]:
    """A declaration's events, as the domain allows them: submitted (a call with or without a departure, or goods);
    answered, rejected, amended, held and lifted in any order; then perhaps released or withdrawn; perhaps erased."""
    shape = draw(st.sampled_from(["departure", "arrival", "goods"]))
    steps = draw(st.lists(st.sampled_from(["answered", "rejected", "amended", "held", "lifted"]), max_size=6))
    steps += draw(st.sampled_from([[], ["released"], ["withdrawn"]]))
    steps += draw(st.sampled_from([[], ["erased"]]))
    times = sorted(draw(st.lists(moments, min_size=len(steps) + 1, max_size=len(steps) + 1)))
    kind = "goods" if shape == "goods" else "vessel_call"

    def document() -> dict[str, Any]:
        etd = draw(moments) if shape == "departure" else None
        return {"kind": kind, **({"etd": etd.isoformat()} if etd else {})}

    ident = uuid4()
    events = [_event(Declaration.Submitted, ident, 1, times[0], kind=kind, declarant=samples.SHIPPING_AGENT,
                     reference="R", document=document(), content_hash="h", routes={}, data_key="k")]
    for version, (step, moment) in enumerate(zip(steps, times[1:], strict=True), start=2):
        fields: dict[str, Any] = {
            "answered": {"agency": "border", "message_id": "m", "status": "received", "code": "", "text": "",
                         "responded_at": ""},
            "rejected": {"agency": "border"},
            "amended": {"document": document(), "content_hash": "h", "routes": {}},
            "held": {"alert_id": draw(st.sampled_from("ab")), "subject": "vessel 1", "alert": {}},
            "lifted": {"alert_id": draw(st.sampled_from("ab"))},
            "withdrawn": {"reason": "r"},
            "erased": {"erased_by": "dpo", "reason": "r", "erased_at": moment.isoformat(), "messages": 0},
        }.get(step, {})
        cls = {"answered": Declaration.AgencyResponded, "rejected": Declaration.Rejected,
               "amended": Declaration.Amended, "held": Declaration.HoldPlaced, "lifted": Declaration.HoldLifted,
               "released": Declaration.Released, "withdrawn": Declaration.Withdrawn,
               "erased": Declaration.PersonalDataErased}[step]
        events.append(_event(cls, ident, version, moment, **fields))
    return shape, events


def expected_purpose(events: list[Any]) -> tuple[datetime, str] | None:
    """The rule as docs/personal-data.md words it, read off the events directly."""
    documents = [event.document for event in events if hasattr(event, "document")]
    departure = documents[-1].get("etd")
    last_amendment = max((n for n, event in enumerate(events) if isinstance(event, Declaration.Amended)), default=-1)
    found = {name: next((event.timestamp for event in events if isinstance(event, cls)), None)
             for name, cls in (("release", Declaration.Released), ("withdrawal", Declaration.Withdrawn))}
    found["rejection"] = next((event.timestamp for n, event in reversed(list(enumerate(events)))
                               if isinstance(event, Declaration.Rejected) and n > last_amendment), None)
    if events[0].kind == "vessel_call" and departure:
        found = {"departure": datetime.fromisoformat(departure), "withdrawal": found["withdrawal"]}
    served = sorted((moment, why) for why, moment in found.items() if moment is not None)
    return served[0] if served else None


def folded(events: list[Any]) -> Retained | None:
    row = None
    for event in events:
        row = fold(row, event)
    return row


@settings(max_examples=300)
@given(lifecycles(), st.integers(0, 3650), moments)
def test_a_declaration_is_due_days_after_its_purpose_was_served_per_kind(lifecycle, days: int, now: datetime):
    """A call with a departure: the departure (or an earlier withdrawal). Goods, or an arrival without one: the
    release, else a rejection that stands, else a withdrawal. Due `days` after that, to the microsecond, unless
    erased, held, or kept (`days` 0)."""
    shape, events = lifecycle
    row = folded(events)
    assert row is not None and row.version == len(events)
    served = expected_purpose(events)
    assert (row.served_at, row.served_by) == ((served[0].isoformat(timespec="microseconds"), served[1])
                                              if served else (None, None))
    holds: set[str] = set()
    for event in events:
        if isinstance(event, Declaration.HoldPlaced):
            holds.add(event.alert_id)
        elif isinstance(event, Declaration.HoldLifted):
            holds.discard(event.alert_id)
    erased = isinstance(events[-1], Declaration.PersonalDataErased)
    due = days > 0 and served is not None and now >= served[0] + timedelta(days=days) and not erased and not holds
    assert row.due(days, now) is due
    if served is not None and days > 0:
        assert row.due_at(days) == served[0] + timedelta(days=days)
        if not erased and not holds:
            moment = served[0] + timedelta(days=days)
            assert row.due(days, moment) and not row.due(days, moment - timedelta(microseconds=1))


def test_declarations_without_a_data_key_of_their_own_are_not_in_the_view():
    ident = uuid4()
    submitted = _event(Declaration.Submitted, ident, 1, datetime.now(UTC), kind="goods", declarant="X",
                       reference="R", document={"kind": "goods"}, content_hash="h", routes={}, data_key="")
    assert fold(None, submitted) is None
    assert fold(None, _event(Declaration.Released, ident, 2, datetime.now(UTC))) is None


# ---- the view's query agrees with the rule, on both stores --------------------------------------------------------

rows = st.builds(
    lambda served, by, erased, held: Retained(str(uuid4()), "vessel_call", "X", "R", 1, served_at=served,
                                              served_by=by if served else None, holds="a" if held else "",
                                              erased_at="2026-01-01T00:00:00.000Z" if erased else None,
                                              erased_by=by if erased else None),
    st.one_of(st.none(), moments.map(lambda moment: moment.isoformat(timespec="microseconds"))),
    st.sampled_from([POLICY, "admin"]), st.booleans(), st.booleans())


def _store_rows(hub: Hub, retained: list[Retained]) -> None:
    with hub.views.transaction() as cursor:
        cursor.execute("DELETE FROM personal_data_retention")
        for row in retained:
            cursor.execute(f"INSERT INTO personal_data_retention ({', '.join(Retained._fields)})"
                           f" VALUES ({', '.join('?' * len(Retained._fields))})", row)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(retained=st.lists(rows, max_size=12), days=st.integers(0, 3650), now=moments)
def test_the_views_due_rows_and_counts_are_the_rows_the_rule_makes_due(hub: Hub, retained: list[Retained],
                                                                       days: int, now: datetime):
    """Among them one whose purpose was served exactly `days` before `now`: due from that microsecond on."""
    boundary = (now - timedelta(days=days)).isoformat(timespec="microseconds")
    retained = [*retained, Retained(str(uuid4()), "vessel_call", "X", "R", 1, served_at=boundary,
                                    served_by="departure")]
    _store_rows(hub, retained)
    expected = sorted((row for row in retained if row.due(days, now)), key=lambda row: (row.served_at,
                                                                                       row.declaration_id))
    paged, after = [], None
    while page := view.due(hub.views, days=days, now=now, after=after, limit=5):
        paged += page
        after = (page[-1].served_at, page[-1].declaration_id)
    assert paged == expected
    summary = view.summary(hub.views, days=days, now=now)
    held = [row for row in retained if row.holds and row.erased_at is None and row.due_at(days) is not None
            and row.due_at(days) <= now]
    assert (summary.due, summary.held) == (len(expected), len(held))
    oldest = (now - expected[0].due_at(days)).total_seconds() if expected else 0.0
    assert summary.oldest_overdue_seconds == pytest.approx(oldest)
    assert summary.erased == {POLICY: sum(1 for row in retained if row.erased_by == POLICY),
                              "hand": sum(1 for row in retained if row.erased_by == "admin")}


# ---- the sweep over a real hub --------------------------------------------------------------------------------------

def _later(days: int = 0) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def release(hub: Hub, ident: str) -> None:
    """Every routed agency releases, and the enforcement process settles it."""
    for agency in hub.declarations.get(ident).routed_agencies:
        hub.declarations.record_response(ident, agency, f"{agency}-release-{ident}", "released",
                                         "2026-12-01T10:00:00Z")
    samples.settle(hub.declarations, ident)


@dataclasses.dataclass
class Calls:
    """The declarations of `scenario`, by what becomes of them, with the values that name their people."""

    ids: dict[str, str]
    people: dict[str, list[str]]

    def __getitem__(self, name: str) -> str:
        return self.ids[name]


def scenario(hub: Hub, seed: str) -> Calls:
    """One declaration of each case the policy of DAYS tells apart, at `_later(DAYS + 1)`:

    - `departed`: a call whose departure was long ago: due;
    - `sailing`: a call departing next year: not due;
    - `arrived`: an arrival (no departure given) released today: due only DAYS after today;
    - `waiting`: an arrival not released yet: never due, for now;
    - `held`: a call departed long ago, held by an alert on its ship: not due while held;
    - `cancelled`: a call departing next year, withdrawn today: due DAYS after today;
    - `rejected`: an arrival rejected today: due DAYS after today;
    - `goods`: a goods declaration released today: it names no one, so it is no row of the view at all.
    """
    ids: dict[str, str] = {}
    people: dict[str, list[str]] = {}
    etds = {"departed": "2026-01-10T00:00:00Z", "sailing": "2027-06-01T00:00:00+08:00",
            "held": "2026-02-01T12:00:00Z", "cancelled": "2027-06-01T00:00:00Z"}
    for name in ("departed", "sailing", "arrived", "waiting", "held", "cancelled", "rejected"):
        crew, passengers, values = generated_people(4, f"{seed}-{name}")
        document = samples.vessel_call(f"KEEP-{seed}-{name}", crew=crew, passengers=passengers)
        if name in etds:
            document["etd"] = etds[name]
        else:
            document.update(direction="arrival", eta="2026-12-01T06:00:00Z")
            del document["etd"]
        if name == "held":
            document["vessel"] = {**document["vessel"], "imo": HELD_VESSEL}
        ids[name] = str(hub.declarations.submit(document).declaration.id)
        people[name] = values
    ids["goods"] = str(hub.declarations.submit(samples.goods(f"KEEP-{seed}-goods")).declaration.id)
    for name in ("arrived", "goods"):
        release(hub, ids[name])
    hub.declarations.withdraw(ids["cancelled"], "call cancelled")
    hub.declarations.record_response(ids["rejected"], "border", f"reject-{seed}", "rejected", "2026-12-01T10:00:00Z",
                                     code="03", text="crew list incomplete")
    hub.declarations.raise_alert("vessel", HELD_VESSEL, "detained elsewhere", "officer:border")
    samples.followed(hub)
    assert hub.declarations.get(ids["held"]).holds and not hub.declarations.get(ids["departed"]).holds
    return Calls(ids, people)


def shown_people(api: Api, ident: str) -> list[str]:
    """The family and given names the declarant is shown of its declaration's people."""
    document = api.client.get(f"/v1/declarations/{ident}",
                              headers=api.as_("trader", party=samples.SHIPPING_AGENT)).json()["document"]
    return [person[field] for people in ("crew", "passengers") for person in document.get(people, [])
            for field in ("family_name", "given_names")]


def erasures(hub: Hub, ident: str) -> list[dict[str, Any]]:
    return [event for event in hub.declarations.history(ident) if event["type"] == "PersonalDataErased"]


def ids_of(rows: list[Retained]) -> set[str]:
    return {row.declaration_id for row in rows}


def test_the_sweep_erases_exactly_what_is_due_and_a_second_run_changes_nothing(hub: Hub):
    calls = scenario(hub, "sweep")
    api = Api(hub)
    kept = {name: shown_people(api, calls[name]) for name in calls.people}
    assert all(kept.values()) and not [name for name, shown in kept.items() if ERASED in shown]

    first = retention.sweep(hub, DAYS, now=_later(DAYS + 1))
    assert ids_of(first.erased) == {calls[name] for name in ("departed", "arrived", "cancelled", "rejected")}
    assert (first.already, first.deferred, first.failed) == ([], [], [])
    samples.followed(hub)
    for name in calls.people:
        shown = shown_people(api, calls[name])
        if calls[name] in ids_of(first.erased):
            assert set(shown) == {ERASED} and not set(calls.people[name]) & set(shown), name
            [erasure] = erasures(hub, calls[name])
            assert erasure["erased_by"] == POLICY and erasure["reason"].startswith(f"retention: {DAYS} days after")
        else:
            assert shown == kept[name] and erasures(hub, calls[name]) == [], name
    reasons = {name: erasures(hub, calls[name])[0]["reason"] for name in ("departed", "arrived", "cancelled")}
    assert reasons["departed"] == f"retention: {DAYS} days after its departure on 2026-01-10"
    assert "after its release on" in reasons["arrived"] and "after its withdrawal on" in reasons["cancelled"]

    again = retention.sweep(hub, DAYS, now=_later(DAYS + 1))
    assert (again.erased, again.failed) == ([], [])
    assert all(len(erasures(hub, calls[name])) == (1 if calls[name] in ids_of(first.erased) else 0)
               for name in calls.people)
    assert view.row(hub.views, calls["goods"]) is None


def test_nothing_is_due_before_its_time_and_nothing_ever_with_days_0(hub: Hub):
    calls = scenario(hub, "early")
    assert ids_of(retention.sweep(hub, DAYS, now=_later(DAYS - 1)).erased) == {calls["departed"]}
    kept = retention.sweep(hub, 0, now=_later(36500))
    assert (kept.erased, kept.already, kept.deferred, kept.failed) == ([], [], [], [])
    assert [name for name in calls.people if erasures(hub, calls[name])] == ["departed"]


def test_a_hold_suspends_erasure_until_it_is_lifted(hub: Hub):
    calls = scenario(hub, "hold")
    retention.sweep(hub, DAYS, now=_later(DAYS + 1))
    assert erasures(hub, calls["held"]) == []
    assert view.summary(hub.views, days=DAYS, now=_later(DAYS + 1)).held == 1
    [alert_id] = hub.declarations.get(calls["held"]).holds
    hub.declarations.clear_alert(alert_id, "officer:border")
    samples.followed(hub)
    assert ids_of(retention.sweep(hub, DAYS, now=_later(DAYS + 1)).erased) == {calls["held"]}


def test_an_amendment_that_lands_during_a_sweep_defers_the_erasure_it_made_wrong(hub: Hub,
                                                                               monkeypatch: pytest.MonkeyPatch):
    """The view said due; the call's agent moved its departure to next year a moment later. The sweep checks each
    declaration against the store before erasing it, and leaves this one for a later run."""
    calls = scenario(hub, "stale")
    target = calls["departed"]
    found = view.due

    def due_then_amended(*args: Any, **kwargs: Any) -> list[Retained]:
        page = found(*args, **kwargs)
        if target in ids_of(page):
            current = hub.declarations.get(target)
            if current.document["etd"].startswith("2026"):
                crew, passengers, _ = generated_people(4, "stale-departed")
                moved = samples.vessel_call(current.reference, crew=crew, passengers=passengers,
                                            etd="2027-09-01T00:00:00Z")
                hub.declarations.amend(target, current.version, moved)
        return page

    monkeypatch.setattr(view, "due", due_then_amended)
    report = retention.sweep(hub, DAYS, now=_later(DAYS + 1))
    assert target in ids_of(report.deferred) and target not in ids_of(report.erased)
    assert erasures(hub, target) == []
    monkeypatch.setattr(view, "due", found)
    assert target in ids_of(retention.sweep(hub, DAYS, now=datetime(2027, 10, 2, tzinfo=UTC)).erased)


def test_one_declaration_that_fails_is_reported_and_the_others_are_erased(hub: Hub, monkeypatch: pytest.MonkeyPatch):
    calls = scenario(hub, "fail")
    erase = hub.declarations.erase_personal_data

    def failing(ident: Any, by: str, reason: str) -> Any:
        if str(ident) == calls["arrived"]:
            raise RuntimeError("the disk is full")
        return erase(ident, by, reason)

    monkeypatch.setattr(hub.declarations, "erase_personal_data", failing)
    report = retention.sweep(hub, DAYS, now=_later(DAYS + 1))
    assert [(row.declaration_id, error) for row, error in report.failed] == [
        (calls["arrived"], "RuntimeError: the disk is full")]
    assert ids_of(report.erased) == {calls[name] for name in ("departed", "cancelled", "rejected")}
    monkeypatch.setattr(hub.declarations, "erase_personal_data", erase)
    assert ids_of(retention.sweep(hub, DAYS, now=_later(DAYS + 1)).erased) == {calls["arrived"]}


def test_a_sweep_told_to_stop_ends_after_the_declaration_at_hand(hub: Hub, monkeypatch: pytest.MonkeyPatch):
    scenario(hub, "stop")
    stop = threading.Event()
    erase = hub.declarations.erase_personal_data

    def erase_then_stop(ident: Any, by: str, reason: str) -> Any:
        stop.set()  # SIGTERM, as the worker takes it
        return erase(ident, by, reason)

    monkeypatch.setattr(hub.declarations, "erase_personal_data", erase_then_stop)
    assert len(retention.sweep(hub, DAYS, now=_later(DAYS + 1), stop=stop).erased) == 1
    assert len(retention.sweep(hub, DAYS, now=_later(DAYS + 1)).erased) == 3


@pytest.fixture
def second_hub(store: tuple[Settings, str]) -> Iterator[Hub]:
    """Another hub process's wiring, on the same store."""
    settings, schema = store
    wired = build_hub(Settings(settings.data_dir, settings.database_url, secret=SECRET), schema=schema)
    yield wired
    wired.close()


def test_two_racing_sweeps_record_each_erasure_once(hub: Hub, second_hub: Hub):
    calls = scenario(hub, "race")
    due = {calls[name] for name in ("departed", "arrived", "cancelled", "rejected")}
    moment = _later(DAYS + 1)
    start = threading.Barrier(2)
    reports: dict[int, retention.Report] = {}

    def run(n: int, wired: Hub) -> None:
        start.wait()
        reports[n] = retention.sweep(wired, DAYS, now=moment)

    racers = [threading.Thread(target=run, args=(n, wired)) for n, wired in enumerate((hub, second_hub))]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert [report.failed for report in reports.values()] == [[], []]
    assert not ids_of(reports[0].erased) & ids_of(reports[1].erased)
    assert ids_of(reports[0].erased) | ids_of(reports[1].erased) == due
    for ident in due:
        assert len(erasures(hub, ident)) == 1
    assert all(erasures(hub, calls[name]) == [] for name in ("sailing", "waiting", "held"))


# ---- what /metrics says, and the view rebuilt -----------------------------------------------------------------------

def gauge(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} is not in /metrics"
    return float(match.group(1))


def test_metrics_show_what_is_due_held_and_erased_before_and_after_a_sweep(hub: Hub):
    """At this moment (the scrape's): `departed` has been due since 30 days after 2026-01-10; `held` would be."""
    calls = scenario(hub, "metrics")
    api = Api(hub)
    assert gauge(api.client.get("/metrics").text, "tradehub_personal_data_due") == 0  # days 0: kept
    hub.settings = dataclasses.replace(hub.settings, personal_data_days=DAYS)
    before = api.client.get("/metrics").text
    overdue = (datetime.now(UTC) - datetime(2026, 2, 9, tzinfo=UTC)).total_seconds()
    assert gauge(before, "tradehub_personal_data_retention_days") == DAYS
    assert gauge(before, "tradehub_personal_data_due") == 1
    assert gauge(before, "tradehub_personal_data_due_held") == 1
    assert gauge(before, "tradehub_personal_data_overdue_seconds") == pytest.approx(overdue, abs=120)
    assert gauge(before, "tradehub_personal_data_erased", '{by="retention"}') == 0

    assert ids_of(retention.sweep(hub, DAYS).erased) == {calls["departed"]}
    hub.declarations.erase_personal_data(calls["waiting"], "admin:dpo", "the master asked")
    samples.followed(hub)
    after = api.client.get("/metrics").text
    assert gauge(after, "tradehub_personal_data_due") == 0
    assert gauge(after, "tradehub_personal_data_overdue_seconds") == 0
    assert gauge(after, "tradehub_personal_data_due_held") == 1
    assert gauge(after, "tradehub_personal_data_erased", '{by="retention"}') == 1
    assert gauge(after, "tradehub_personal_data_erased", '{by="hand"}') == 1


def test_a_rebuild_of_the_views_gives_the_same_retention_rows(hub: Hub):
    calls = scenario(hub, "rebuild")
    retention.sweep(hub, DAYS, now=_later(DAYS + 1))
    hub.declarations.erase_personal_data(calls["waiting"], "admin:dpo", "the master asked")
    samples.followed(hub)
    table = "SELECT * FROM personal_data_retention ORDER BY declaration_id"
    before = hub.views.query(table)
    assert len(before) == len(calls.people)
    assert {row[0]: row for row in before}[calls["held"]][Retained._fields.index("holds")]
    hub.runner.rebuild([view.NAME])
    assert hub.views.query(table) == before
    hub.runner.rebuild()
    assert hub.views.query(table) == before


# ---- the command, once and as serve runs it (SQLite) ----------------------------------------------------------------

@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A hub on SQLite in `tmp_path`, and the environment a `tradehub` command needs to reach it."""
    for name in [name for name in os.environ if name.startswith("TRADEHUB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRADEHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRADEHUB_PERSONAL_DATA_DAYS", str(DAYS))
    wired = build_hub(Settings(data_dir=tmp_path, secret=SECRET))
    yield wired
    wired.close()


def test_the_command_lists_in_a_dry_run_and_erases_when_run(local: Hub, capsys: pytest.CaptureFixture):
    calls = scenario(local, "cli")
    assert main(["personal-data", "retention", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"{'would erase':15} {calls['departed']} KEEP-cli-departed (departure 2026-01-10" in printed
    assert printed.splitlines()[-1].endswith("would erase 1, already erased 0, deferred 0, failed 0")
    assert erasures(local, calls["departed"]) == []
    assert main(["personal-data", "retention"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("erased 1, already erased 0, deferred 0, failed 0")
    assert len(erasures(local, calls["departed"])) == 1
    assert main(["personal-data", "retention"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("erased 0, already erased 0, deferred 0, failed 0")


def test_the_command_does_nothing_with_days_0_and_refuses_a_dry_run_that_repeats(
        local: Hub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    assert main(["personal-data", "retention", "--dry-run", "--every", "60"]) == 2
    assert "--dry-run lists what one run would erase" in capsys.readouterr().err
    calls = scenario(local, "zero")
    monkeypatch.setenv("TRADEHUB_PERSONAL_DATA_DAYS", "0")
    assert main(["personal-data", "retention"]) == 0
    assert "TRADEHUB_PERSONAL_DATA_DAYS is 0" in capsys.readouterr().out
    assert erasures(local, calls["departed"]) == []


def test_the_periodic_run_erases_what_is_due_and_stops_on_sigterm(local: Hub, tmp_path: Path):
    """What `serve` supervises when TRADEHUB_PERSONAL_DATA_DAYS is set: `personal-data retention --every`."""
    calls = scenario(local, "every")
    runner = subprocess.Popen([sys.executable, "-m", "tradehub.cli", "personal-data", "retention", "--every", "1"],
                              env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not erasures(local, calls["departed"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(erasures(local, calls["departed"])) == 1
    finally:
        runner.send_signal(signal.SIGTERM)
        _, err = runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    assert "erased 1, already erased 0" in err


@pytest.mark.parametrize("days, runs", [(0, False), (DAYS, True)])
def test_serve_supervises_the_hourly_run_only_under_a_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             days: int, runs: bool):
    from tradehub import server

    from .racing import free_port

    started: list[tuple[str, ...]] = []

    class Part:
        def __init__(self, *args: str, env: Any = None) -> None:
            self.args = args

        def start(self) -> None:
            started.append(self.args)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(server, "Supervised", Part)
    monkeypatch.setattr(server.uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr(server.signal, "signal", lambda *args: None)
    settings = Settings(data_dir=tmp_path, secret=SECRET, personal_data_days=days)
    assert server.serve(settings, host="127.0.0.1", port=free_port(), demo=False, workers=1, access_log=False,
                        dispatching=False) == 0
    assert (("personal-data", "retention", "--every", "3600") in started) is runs
