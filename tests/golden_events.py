"""The golden event log: one scenario that records every event of every aggregate, kept as fixtures (docs/events.md).

Each era of tests/fixtures/golden-events/ is the log this scenario wrote with the code of its time, on SQLite
and on PostgreSQL: the stored rows exactly as the store held them. tests/test_event_evolution.py reads every
era with today's code, so an event whose fields change without a `class_version` and an upcaster is caught
the day it changes, not the day a hub meets a year-old log.

Make a new era (never regenerate an old one) from the repository's root:

    python -m tests.golden_events --era v2 --out tests/fixtures/golden-events/v2 \\
        --postgres postgresql://postgres@127.0.0.1:5432/tradehub_test

The scenario is deterministic, so that the tests can run it again with today's code and compare the views
with those rebuilt from the era's log:

- its inputs (documents, licences, register entries, routing rules) are frozen into the era's folder when the
  era is made (`inputs.json`, `routing.toml`), never read from samples or examples again;
- ids are derived, never drawn: alerts are raised with an id of the scenario's, and the ids eventsourcing would
  draw at random (uuid4, for an access-log read, say) derive from GOLDEN in the order they are drawn;
- time is the scenario's `Clock`: each step begins a minute after the last, every reading within a step is a
  microsecond after the one before, and both eventsourcing's event timestamps and the hub's own
  `datetime.now` (a licence's suspension time, the day licences are checked against) read it.

The steps of an era are never changed: the tests replay them against that era's log. A later era adds steps
(`if self.since("v2")`) for what its code adds.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib
import inspect
import json
import pkgutil
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any
from unittest import mock
from uuid import UUID

import eventsourcing.application
import eventsourcing.domain
import psycopg
from eventsourcing.domain import Aggregate, CanInitAggregate, CanMutateAggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

import hub
from tradehub.bootstrap import Hub, Settings, build_hub

ERAS = ("v1", "v2")  # oldest first; each one's steps are run by every later era too
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "golden-events"
STORES = ("sqlite", "postgres")
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
GOLDEN = UUID("3d0f5c2a-9b1e-5f7c-8a64-2e9d7b1c4f08")  # the scenario's own ids (alerts) derive from it
# The master key that wraps the golden logs' data keys (era v2 on): public, since it guards nobody real. The people
# the fixtures name are made up (tests/samples.py, examples/).
GOLDEN_MASTER_KEY = base64.b64encode(sha256(b"tradehub golden event log").digest()).decode()


# ---- the clock ------------------------------------------------------------------------------------------------

class Clock:
    """The scenario's time (module docstring): steps a minute apart, readings within a step a microsecond apart."""

    def __init__(self, start: datetime = START) -> None:
        self.step_start = start
        self.readings = 0

    def step(self) -> None:
        self.step_start += timedelta(minutes=1)
        self.readings = 0

    def now(self) -> datetime:
        self.readings += 1
        return self.step_start + timedelta(microseconds=self.readings)


@contextmanager
def frozen(clock: Clock) -> Iterator[Clock]:
    """Every clock the scenario's events read, on `clock`: eventsourcing's event timestamps, and `datetime.now`
    in the hub's own modules (a licence's suspension time, the day a citation is checked on). And the ids
    eventsourcing draws for aggregates the hub creates without one of its own (uuid4): derived from GOLDEN, in
    the order they are drawn."""
    drawn = iter(range(1, 1_000_000))

    class ClockedDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            moment = clock.now()
            return moment.astimezone(tz) if tz is not None else moment.replace(tzinfo=None)

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(eventsourcing.domain, "datetime_now_with_tzinfo", clock.now))
        stack.enter_context(mock.patch.object(eventsourcing.application, "datetime_now_with_tzinfo", clock.now))
        stack.enter_context(mock.patch.object(eventsourcing.domain, "uuid4",
                                              lambda: uuid.uuid5(GOLDEN, f"aggregate:{next(drawn)}")))
        for module in hub_modules():
            if getattr(module, "datetime", None) is datetime:
                stack.enter_context(mock.patch.object(module, "datetime", ClockedDatetime))
        yield clock


# ---- what there is to cover -----------------------------------------------------------------------------------

def hub_modules() -> list[Any]:
    """Every module of the hub core (hub/), imported."""
    names = [info.name for info in pkgutil.walk_packages(hub.__path__, f"{hub.__name__}.")]
    return [hub, *(importlib.import_module(name) for name in sorted(names))]


def aggregates() -> list[type[Aggregate]]:
    """Every eventsourcing aggregate class the hub core defines."""
    found = {obj for module in hub_modules() for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, Aggregate) and obj.__module__.startswith(f"{hub.__name__}.")}
    return sorted(found, key=get_topic)


def event_classes() -> list[type[CanMutateAggregate[Any]]]:
    """Every event class an aggregate of the hub can store.

    The nested event classes of each aggregate, without the two bases eventsourcing gives every aggregate:
    `Event` always, and `Created` when the aggregate declares its own created event (it is then never stored).
    """
    found = []
    for aggregate in aggregates():
        nested = {name: obj for name, obj in vars(aggregate).items()
                  if inspect.isclass(obj) and issubclass(obj, CanMutateAggregate) and name != "Event"}
        declared_created = [obj for name, obj in nested.items() if name != "Created" and issubclass(obj, CanInitAggregate)]
        found += [obj for name, obj in nested.items() if not (name == "Created" and declared_created)]
    return sorted(found, key=get_topic)


def class_version(event_class: type) -> int:
    return getattr(event_class, "class_version", 1)


def stored_class_version(row: dict[str, Any]) -> int:
    """The class version a stored event was written at: eventsourcing stores `class_version` in the state when it
    is above 1 (the golden logs are neither compressed nor encrypted, so the state is the transcoder's JSON)."""
    return json.loads(base64.b64decode(row["state"])).get("class_version", 1)


def missing(rows: list[dict[str, Any]]) -> list[str]:
    """The event classes (at their current class version) no row records, as `topic vN`."""
    recorded = {(row["topic"], stored_class_version(row)) for row in rows}
    return [f"{get_topic(cls)} v{class_version(cls)}" for cls in event_classes()
            if (get_topic(cls), class_version(cls)) not in recorded]


# ---- the scenario -----------------------------------------------------------------------------------------------

def fresh_inputs() -> dict[str, Any]:
    """The scenario's documents, licences and register entries, from tests/samples.py and examples/: read once,
    when an era is made, and frozen into its `inputs.json`."""
    from tests import samples

    def example(name: str) -> dict[str, Any]:
        return json.loads((ROOT / "examples" / name).read_text("utf-8"))

    food = samples.goods()["items"][0] | {"hs_code": "0306170000", "description": "Frozen shrimps", "licences": [
        {"number": "GOLD-HC-1", "issuer": "inspection", "quantity": "4800", "unit": "KGM"}]}
    machines = samples.goods()["items"][0]
    licensed = example("licensed/goods-import.json")
    fewer_shrimps = json.loads(json.dumps(licensed))
    fewer_shrimps["items"][0]["licences"][0]["quantity"] = "11000"
    fewer_shrimps["items"][0] |= {"quantity": "11000", "net_kg": "11000", "gross_kg": "11600"}
    arrival = example("vessel-arrival.json")
    more_aboard = json.loads(json.dumps(arrival))
    more_aboard["crew"].append({"family_name": "TRAN", "given_names": "Thi Mai", "nationality": "VN",
                                "date_of_birth": "1994-02-17", "rank": "Cook",
                                "document": {"type": "seafarer_id", "number": "VN0104567"}})
    more_aboard["passengers"].append({"family_name": "OKAFOR", "given_names": "Chidi", "nationality": "NG",
                                      "date_of_birth": "1968-09-23", "document": {"type": "passport",
                                                                                   "number": "A07654321"},
                                      "port_of_disembarkation": "CNSHA"})
    citing = {"number": "GOLD-LIC-1", "issuer": "customs", "quantity": "200", "unit": "KGM"}
    return {
        "parties": [
            {"uscc": samples.TRADER_A, "name": "Xiamen Haixi Trading Co., Ltd.", "address": "8 Haigang Road, Xiamen",
             "status": "active"},
            {"uscc": samples.TRADER_B, "name": "Xiamen Lianfeng Lighting Co., Ltd.",
             "address": "66 Xinglin Road, Jimei, Xiamen", "status": "active"},
            {"uscc": samples.SHIPPING_AGENT, "name": "Xiamen Ocean Shipping Agency Co., Ltd.",
             "address": "1 Donggang Road, Xiamen", "status": "active"},
        ],
        "licences": {
            "shrimps": example("licensed/licence.json"),
            "machines": {"number": "GOLD-LIC-1", "type": "import_licence", "issuer": "customs",
                         "holder": samples.TRADER_A, "hs_scope": ["84"], "quantity": "1000", "unit": "KGM",
                         "valid_from": "2026-01-01", "valid_to": "2027-12-31"},
            "same_number": {"number": "GOLD-LIC-1", "type": "import_licence", "issuer": "commerce",
                            "holder": samples.TRADER_B, "hs_scope": ["94"], "quantity": "50", "unit": "TNE",
                            "valid_from": "2026-01-01", "valid_to": "2027-12-31"},
            "health": {"number": "GOLD-HC-1", "type": "health_certificate", "issuer": "inspection",
                       "holder": samples.TRADER_A, "hs_scope": ["0306"], "quantity": "20", "unit": "TNE",
                       "valid_from": "2026-01-01", "valid_to": "2027-12-31"},
            "revoked": {"number": "GOLD-LIC-2", "type": "export_licence", "issuer": "commerce",
                        "holder": samples.TRADER_B, "hs_scope": ["9405"], "quantity": "10000", "unit": "H87",
                        "valid_from": "2026-01-01", "valid_to": "2027-12-31"},
        },
        "documents": {
            "licensed": licensed,
            "licensed_amended": fewer_shrimps,
            "rejected": samples.goods(reference="GOLD-REJECT-1", items=[machines | {"licences": [citing]}]),
            "rejected_amended": samples.goods(reference="GOLD-REJECT-1",
                                              items=[machines | {"licences": [citing | {"quantity": "150"}]}]),
            "withdrawn": samples.goods(reference="GOLD-WITHDRAW-1", items=[machines | {"licences": [citing]}]),
            "food": samples.goods(reference="GOLD-FOOD-1", items=[food], containers=["TGHU8051125"]),
            "export": example("goods-export.json"),
            "arrival": arrival,
            "arrival_amended": more_aboard,
            "departure": samples.vessel_call(reference="GOLD-CALL-1"),
            "erased": samples.vessel_call(reference="GOLD-CALL-2", vessel=arrival["vessel"]),  # era v2
        },
    }


class Scenario:
    """The golden scenario over a hub, on the scenario's clock (each command a step)."""

    def __init__(self, wired: Hub, inputs: dict[str, Any], era: str, clock: Clock) -> None:
        self.hub = wired
        self.app = wired.declarations
        self.inputs = inputs
        self.era = era
        self.clock = clock

    def since(self, era: str) -> bool:
        """Whether the steps `era` added are run: by that era and every later one. Steps written for an era not yet
        in ERAS run for none (until it is added, and made: module docstring)."""
        return era in ERAS and ERAS.index(self.era) >= ERAS.index(era)

    def do(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        self.clock.step()
        return command(*args, **kwargs)

    def followed(self) -> None:
        """The hub's followers until the log stops growing: what enforcement and licensing record is logged too."""
        self.clock.step()
        while self.hub.runner.catch_up():
            pass

    def document(self, name: str) -> dict[str, Any]:
        return json.loads(json.dumps(self.inputs["documents"][name]))  # validation fills what it is given

    def alert(self, kind: str, subject: str, reason: str, name: str) -> UUID:
        alert_id = uuid.uuid5(GOLDEN, f"alert:{name}")
        self.do(self.app.raise_alert, kind, subject, reason, "officer:customs", alert_id=alert_id)
        return alert_id

    def answer(self, declaration: Any, agency: str, tag: str, status: str, **details: Any) -> None:
        self.do(self.app.record_response, declaration, agency, f"{tag}-{agency}-{status}", status,
                "2026-12-01T10:00:00Z", **details)

    def release(self, declaration: Any, tag: str, *agencies: str) -> None:
        for agency in agencies or list(self.app.get(declaration).routed_agencies):
            self.answer(declaration, agency, tag, "released", code="REL",
                        answers_version=self.app.get(declaration).version)

    def run(self) -> None:
        self.register()
        self.licences()
        self.licensed_goods()
        self.rejected_and_withdrawn()
        self.vessel_calls()
        if self.since("v2"):
            self.personal_data()
        self.followed()

    def register(self) -> None:
        """Party: registered, changed, deregistered, reactivated."""
        trader, lighting, agent = self.inputs["parties"]
        for entry in (trader, lighting, agent):
            self.do(self.app.register_party, **entry, by="admin")
        self.do(self.app.register_party, **trader | {"address": "18 Haigang Road, Huli, Xiamen"}, by="admin")
        self.do(self.app.register_party, **lighting | {"status": "deregistered"}, by="registry:import")
        self.do(self.app.register_party, **lighting, by="registry:import")

    def licences(self) -> None:
        """Licence and LicenceNumber: issued, listed, a second issuer of a number; suspended, reinstated, revoked."""
        licences = self.inputs["licences"]
        for name in ("shrimps", "machines", "same_number", "health", "revoked"):
            self.do(self.app.issue_licence, licences[name], "admin")
        number, issuer = licences["revoked"]["number"], licences["revoked"]["issuer"]
        self.do(self.app.suspend_licence, number, issuer, "officer:commerce", "under review")
        self.do(self.app.reinstate_licence, number, issuer, "officer:commerce", "review closed")
        self.do(self.app.revoke_licence, number, issuer, "officer:commerce", "holder deregistered")

    def licensed_goods(self) -> None:
        """A goods declaration through its whole life: received, amended, inspected, gate-out allowed, held and
        revoked, lifted and allowed again, released (its licence consumed), a document attached after release,
        a dispatch failure and its resumption."""
        ident = self.do(self.app.submit, self.document("licensed")).declaration.id
        self.answer(ident, "customs", "lic", "received", code="02")
        self.do(self.app.amend, ident, self.app.get(ident).version, self.document("licensed_amended"))
        self.answer(ident, "customs", "lic", "accepted", code="01")
        self.do(self.app.record_inspection, ident, "inspection", "lic-inspection-1", "pass",
                "2026-12-01T09:30:00Z", findings="seals intact; temperature -18 C")
        self.release(ident, "lic", "customs", "inspection")
        self.followed()  # gate-out allowed
        container = self.inputs["documents"]["licensed_amended"]["containers"][0]
        alert = self.alert("container", container, "tip-off: undeclared cargo", "container")
        self.followed()  # held: gate-out revoked
        self.do(self.app.clear_alert, alert, "officer:customs")
        self.followed()  # lifted: gate-out allowed again
        self.release(ident, "lic", "port")
        self.followed()  # released; the licence consumed
        self.do(self.app.attach_document, ident, sha256(b"golden: certificate of origin").hexdigest(),
                "certificate of origin.pdf", "application/pdf", 29, self.app.get(ident).declarant,
                "2026-12-01T11:00:00Z")
        version = self.app.get(ident).version
        self.do(self.app.dispatch_failed, ident, "port", version, "broker unreachable", "2026-12-01T11:05:00Z")
        self.do(self.app.dispatch_resumed, ident, "port")

    def rejected_and_withdrawn(self) -> None:
        """Rejected (its reservation returned), amended (reserved again), released (consumed); another withdrawn
        (returned); an export; a food declaration citing a health certificate, held by an alert that stays open."""
        rejected = self.do(self.app.submit, self.document("rejected")).declaration.id
        self.answer(rejected, "customs", "rej", "rejected", code="03", text="licence quantity exceeds invoice")
        self.followed()
        self.do(self.app.amend, rejected, self.app.get(rejected).version, self.document("rejected_amended"))
        self.release(rejected, "rej")
        self.followed()
        withdrawn = self.do(self.app.submit, self.document("withdrawn")).declaration.id
        self.answer(withdrawn, "customs", "wd", "received", code="02")
        self.do(self.app.withdraw, withdrawn, "not shipped")
        self.answer(withdrawn, "customs", "wd", "cancelled")
        self.followed()
        exported = self.do(self.app.submit, self.document("export")).declaration.id
        self.answer(exported, "customs", "exp", "inspection_required", code="05")
        self.do(self.app.record_inspection, exported, "customs", "exp-inspection-1", "fail", "2026-12-01T09:45:00Z",
                findings="UN 3082 not marked")
        food = self.do(self.app.submit, self.document("food")).declaration.id
        container = self.inputs["documents"]["food"]["containers"][0]
        self.alert("container", container, "sampling for residues", "food")
        self.followed()
        self.answer(food, "inspection", "food", "received", code="02")

    def vessel_calls(self) -> None:
        """Vessel calls naming crew and passengers: amended with more aboard, inspected at the border, released;
        a departure held by a vessel alert, then withdrawn."""
        arrival = self.do(self.app.submit, self.document("arrival")).declaration.id
        self.answer(arrival, "border", "arr", "received", code="02")
        self.do(self.app.amend, arrival, self.app.get(arrival).version, self.document("arrival_amended"))
        self.answer(arrival, "border", "arr", "inspection_required", code="05")
        self.do(self.app.record_inspection, arrival, "border", "arr-inspection-1", "pass", "2026-12-01T12:00:00Z",
                findings="crew list checked against passports")
        self.release(arrival, "arr")
        self.followed()
        departure = self.do(self.app.submit, self.document("departure")).declaration.id
        vessel = self.inputs["documents"]["departure"]["vessel"]["imo"]
        self.alert("vessel", vessel, "detained elsewhere", "vessel")
        self.followed()
        self.answer(departure, "maritime", "dep", "accepted", code="01")
        self.do(self.app.withdraw, departure, "call cancelled")


    def personal_data(self) -> None:
        """Era v2 (issue 19): a departure's people read by an officer (the access log), then erased; the call
        goes on without them."""
        from hub.declarations.access import record_personal_data_read  # no such module before era v2

        departure = self.do(self.app.submit, self.document("erased")).declaration.id
        self.answer(departure, "border", "era", "received", code="02")
        self.do(record_personal_data_read, self.app, str(departure), reader="officer:border", role="officer",
                agency="border", party="", token_id="golden-token-1", fields=["crew", "passengers"], messages=[],
                route="GET /v1/declarations/{id}")
        self.do(self.app.erase_personal_data, departure, "admin", "retention: 90 days after departure")
        self.answer(departure, "port", "era", "accepted", code="01")


def run(wired: Hub, inputs: dict[str, Any], era: str, clock: Clock | None = None) -> None:
    """The scenario of `era` (its steps and every earlier era's) on a fresh hub, on the scenario's clock."""
    clock = clock or Clock()
    with frozen(clock):
        Scenario(wired, inputs, era, clock).run()


# ---- stores and rows ----------------------------------------------------------------------------------------------

def rows(wired: Hub) -> list[dict[str, Any]]:
    """The event table's rows, in notification order, as the fixtures keep them.

    From era v2 the store keeps each declaration's data key beside its events (`personal_data_keys`, inserted
    with the `Submitted` that introduces it): the first row of a declaration that has one carries it as
    `data_key` ({"key_id", "wrapped": base64, or null once erased}), wrapped under GOLDEN_MASTER_KEY."""
    recorder = wired.declarations.recorder
    select_data_key = getattr(recorder, "select_data_key", None)
    found, start = [], 1
    while page := recorder.select_notifications(start=start, limit=1000):
        for n in page:
            row = {"notification_id": n.id, "originator_id": str(n.originator_id),
                   "originator_version": n.originator_version, "topic": n.topic,
                   "state": base64.b64encode(n.state).decode()}
            key = select_data_key(UUID(str(n.originator_id))) if select_data_key and n.originator_version == 1 \
                else None
            if key is not None:
                row["data_key"] = {"key_id": key[0], "wrapped": key[1] and base64.b64encode(key[1]).decode()}
            found.append(row)
        start = page[-1].id + 1
    return found


def stored_events(found: list[dict[str, Any]]) -> list[StoredEvent]:
    """The rows as the recorder takes them: each with the data key it introduced, if any (`rows`)."""
    events: list[StoredEvent] = []
    for row in found:
        fields = {"originator_id": UUID(row["originator_id"]), "originator_version": row["originator_version"],
                  "topic": row["topic"], "state": base64.b64decode(row["state"])}
        key = row.get("data_key")
        if key is None:
            events.append(StoredEvent(**fields))
            continue
        from hub.declarations.personal_data import KeyedStoredEvent  # no data keys before era v2

        wrapped = key["wrapped"] and base64.b64decode(key["wrapped"])
        events.append(KeyedStoredEvent(**fields, new_key=(key["key_id"], wrapped)))
    return events


def settings_for(store: str, data_dir: Path, routing_file: Path, postgres: str = "") -> Settings:
    """The hub's settings for the scenario: the era's routing rules and, where the hub has one (era v2 on), the
    golden personal-data master key."""
    keyed = {"personal_data_key": GOLDEN_MASTER_KEY} if "personal_data_key" in {
        field.name for field in dataclasses.fields(Settings)} else {}
    return Settings(data_dir=data_dir, database_url=postgres if store == "postgres" else "",
                    routing_file=str(routing_file), **keyed)


@contextmanager
def schema_in(postgres: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    name = f"golden_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with psycopg.connect(postgres, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {name} CASCADE")


def write_rows(path: Path, found: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in found), "utf-8")


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def make_era(era: str, out: Path, postgres: str) -> int:
    if era not in ERAS:
        raise SystemExit(f"no era {era!r}: the eras are {', '.join(ERAS)} (add the new one to ERAS first)")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: an era is never regenerated, only a new one added")
    out.mkdir(parents=True, exist_ok=True)
    inputs = fresh_inputs()
    (out / "inputs.json").write_text(json.dumps(inputs, indent=1, ensure_ascii=False) + "\n", "utf-8")
    shutil.copyfile(ROOT / "hub" / "declarations" / "data" / "routing.toml", out / "routing.toml")
    for store in STORES:
        with tempfile.TemporaryDirectory() as scratch, \
                (schema_in(postgres) if store == "postgres" else nullcontext("")) as schema:
            wired = build_hub(settings_for(store, Path(scratch), out / "routing.toml", postgres), schema=schema)
            try:
                run(wired, inputs, era)
                found = rows(wired)
            finally:
                wired.close()
        if [row["notification_id"] for row in found] != list(range(1, len(found) + 1)):
            raise SystemExit(f"{store}: the notification ids have gaps; the scenario must not race or clash")
        if gaps := missing(found):
            raise SystemExit(f"{store}: the scenario records no {', '.join(gaps)}: add steps for them")
        write_rows(out / f"{store}.jsonl", found)
        print(f"{store:8} {len(found)} events -> {out / f'{store}.jsonl'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden_events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--era", required=True, help="the new era's name, the last of ERAS (v1, v2, ...)")
    parser.add_argument("--out", required=True, type=Path, help="its folder, which must be empty or absent")
    parser.add_argument("--postgres", required=True, help="a PostgreSQL database to make a scratch schema in")
    args = parser.parse_args(argv)
    return make_era(args.era, args.out, args.postgres)


if __name__ == "__main__":
    sys.exit(main())
