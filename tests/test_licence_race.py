"""The ledger under concurrency and crashes (docs/licences.md, "The ledger"): many writers racing for a licence's
last quantity, on both stores, from threads and from several API processes over HTTP; a submitting process
killed with SIGKILL (the reservation is stored with its declaration, or neither is); and the worker that
consumes and gives back killed with SIGKILL while it works (each outcome applied exactly once after restart).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from hub.declarations import Declarations, LicenceRefused, declaration_id
from messaging.embedded import stop_processes
from tradehub.auth import issue_token
from tradehub.bootstrap import Hub, Settings, build_declarations, build_hub
from tradehub.client import wait_until_healthy

from . import samples
from .conftest import SECRET
from .ledger import DAY, check_ledger, cite, citing, item, licence_fields, release
from .ledger_load import LICENCES as LOAD_LICENCES
from .racing import free_port, race

pytestmark = pytest.mark.slow

WRITERS = 16
APPS = 4  # application instances the threads share: each has its own licence cache, as a process would
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def apps(store: tuple[Settings, str]) -> Iterator[list[Declarations]]:
    settings, schema = store
    built = [build_declarations(settings, schema=schema) for _ in range(APPS)]
    for app in built:
        app.today = lambda: DAY
    yield built
    for app in built:
        app.close()


@pytest.mark.parametrize("left", [1, 5])
def test_threads_racing_for_the_last_quantity_exactly_as_many_win_as_it_allows(apps: list[Declarations], left: int):
    """16 threads over 4 application instances each cite 10 KGM (as 10 KGM, 10000 GRM or 0.01 TNE) of a licence
    with `left` times that remaining."""
    app = apps[0]
    app.issue_licence(licence_fields("RACE-1", quantity="1000"), "test")
    app.submit(citing("RACE-FIRST", item(cite("RACE-1", str(1000 - 10 * left)))))
    forms = [("10", "KGM"), ("10000", "GRM"), ("0.01", "TNE")]
    outcomes = race(WRITERS, lambda n: apps[n % APPS].submit(
        citing(f"RACE-{n}", item(cite("RACE-1", *forms[n % 3])))))
    winners = [n for n, outcome in enumerate(outcomes) if not isinstance(outcome, Exception)]
    assert len(winners) == left, Counter(type(outcome).__name__ for outcome in outcomes)
    for n, outcome in enumerate(outcomes):
        if n not in winners:
            assert isinstance(outcome, LicenceRefused), repr(outcome)
            [error] = outcome.errors
            assert error.path == "$.items[0].licences[0].quantity"
            assert error.message.startswith("insufficient: 0 KGM remain on licence RACE-1"), error.message
    stored = [app.get(declaration_id(samples.TRADER_A, ref)) for ref in ["RACE-FIRST"] + [f"RACE-{n}" for n in winners]]
    licence = check_ledger(app, None, ("RACE-1", "customs"), stored)
    assert licence.remaining == 0 and len(licence.reservations) == 1 + left


def test_threads_racing_to_amend_into_the_last_quantity(apps: list[Declarations]):
    """Declarations already holding 1 KGM each amend to 11 KGM at once, on a licence with 50 KGM to spare: exactly
    5 amendments win; the others keep their 1 KGM."""
    app = apps[0]
    app.issue_licence(licence_fields("AMEND-RACE", quantity="66"), "test")
    ids = [app.submit(citing(f"AR-{n}", item(cite("AMEND-RACE", "1")))).declaration.id for n in range(WRITERS)]
    outcomes = race(WRITERS, lambda n: apps[n % APPS].amend(
        ids[n], 1, citing(f"AR-{n}", item(cite("AMEND-RACE", "11000", "GRM")))))
    winners = [n for n, outcome in enumerate(outcomes) if not isinstance(outcome, Exception)]
    assert len(winners) == 5, Counter(type(outcome).__name__ for outcome in outcomes)
    assert all(isinstance(outcomes[n], LicenceRefused) for n in range(WRITERS) if n not in winners)
    licence = check_ledger(app, None, ("AMEND-RACE", "customs"), [app.get(ident) for ident in ids])
    assert licence.remaining == 0


# ---- several API processes on PostgreSQL ---------------------------------------------------------


class ApiProcess:
    """One API process (uvicorn on `tradehub.server:app_from_environment`, as each of `serve --workers N`'s), on
    a port of its own so the test decides which process each request goes to."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{(port := free_port())}"
        self.log = tempfile.NamedTemporaryFile(prefix="api-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tradehub.server:app_from_environment", "--factory",
             "--port", str(port), "--log-level", "warning"], env=env, cwd=ROOT, stdout=self.log,
            stderr=subprocess.STDOUT)
        if not wait_until_healthy(self.url, lambda: self.process.poll() is None, timeout=30):
            self.stop()
            raise RuntimeError(f"the API did not start:\n{Path(self.log.name).read_text(errors='replace')}")

    def stop(self) -> None:
        stop_processes(self.process)
        self.log.close()


@pytest.mark.postgres
def test_api_processes_racing_for_a_licence_answer_as_many_201s_as_it_allows(postgres_database: str,
                                                                           tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "var", database_url=postgres_database, secret=SECRET)
    hub = build_hub(settings)  # keys and tables exist before the API processes start
    hub.declarations.issue_licence(licence_fields("HTTP-1", quantity="50"), "test")
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(settings.data_dir), TRADEHUB_DATABASE_URL=postgres_database,
               TRADEHUB_SECRET=SECRET)
    servers: list[ApiProcess] = []
    try:
        for _ in range(3):
            servers.append(ApiProcess(env))
        headers = {"Authorization": f"Bearer {issue_token(SECRET, 'trader', party=samples.TRADER_A)}"}
        clients = [httpx.Client(base_url=server.url, headers=headers, timeout=60) for server in servers]
        count = 24  # 10 KGM each, in mixed units, on 50 KGM: 5 may win
        forms = [("10", "KGM"), ("10000", "GRM"), ("0.01", "TNE")]
        responses = race(count, lambda n: clients[n % len(clients)].post(
            "/v1/declarations", json=citing(f"HTTP-{n}", item(cite("HTTP-1", *forms[n % 3])))))
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 5, 422: count - 5}, statuses
    for response in responses:
        if response.status_code == 422:
            [error] = response.json()["errors"]
            assert error["path"] == "$.items[0].licences[0].quantity"
            assert error["message"].startswith("insufficient: 0 KGM remain on licence HTTP-1"), error
    won = {response.json()["id"] for response in responses if response.status_code == 201}
    stored = [hub.declarations.get(ident) for ident in won]
    licence = check_ledger(hub.declarations, None, ("HTTP-1", "customs"), stored)
    assert licence.remaining == 0 and set(licence.reservations) == won
    hub.close()


# ---- kill -9 ---------------------------------------------------------------------------------------


def environment(settings: Settings) -> dict[str, str]:
    return dict(os.environ, TRADEHUB_DATA_DIR=str(settings.data_dir), TRADEHUB_DATABASE_URL=settings.database_url,
                PYTHONPATH=str(ROOT))


@pytest.fixture
def crash_store(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A store of each kind a separate process can open: PostgreSQL gets a database of its own."""
    url = request.getfixturevalue("postgres_database") if request.param == "postgres" else ""
    return Settings(data_dir=tmp_path / "var", database_url=url, secret=SECRET)


STORES = pytest.mark.parametrize("crash_store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                                 indirect=True)


@STORES
def test_a_submitter_killed_mid_write_leaves_no_reservation_without_its_declaration(crash_store: Settings):
    """Four threads submit declarations citing two licences (three citations, three aggregates in each save)
    until the process is killed with SIGKILL, three times at different moments."""
    hub = build_hub(crash_store)
    app = hub.declarations
    app.issue_licence(licence_fields(LOAD_LICENCES[0], quantity="1000000"), "test")
    app.issue_licence(licence_fields(LOAD_LICENCES[1], quantity="1000", unit="TNE", issuer="commerce"), "test")
    printed: set[str] = set()
    for round_, wait in enumerate((0.3, 0.7, 1.1)):
        output = Path(crash_store.data_dir) / f"load-{round_}.out"
        with output.open("w") as sink:
            loader = subprocess.Popen([sys.executable, "-m", "tests.ledger_load", f"K{round_}", "4"],
                                      env=environment(crash_store), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and output.stat().st_size < 40:  # it has started storing
                time.sleep(0.05)
            time.sleep(wait)
            loader.send_signal(signal.SIGKILL)
            loader.wait()
        lines = output.read_text().split()
        assert lines and all(line.startswith(f"K{round_}-") for line in lines), lines[-5:]
        printed |= set(lines)
    # Every declaration stored, printed or not (the kill may fall between the commit and the print), and its
    # neighbours that were not.
    candidates = {f"K{round_}-{thread}-{n}" for round_ in range(3) for thread in range(4) for n in range(5000)}
    ids = {str(declaration_id(samples.TRADER_A, reference)): reference for reference in candidates}
    stored = app.get_many(list(ids))
    assert {ids[str(ident)] for ident in stored} >= printed
    declarations = list(stored.values())
    kilograms = check_ledger(app, None, (LOAD_LICENCES[0], "customs"), declarations)
    tonnes = check_ledger(app, None, (LOAD_LICENCES[1], "commerce"), declarations)
    assert set(kilograms.reservations) == set(tonnes.reservations) == {str(ident) for ident in stored}
    assert kilograms.remaining == 1000000 - Decimal("1.5") * len(stored)
    print(f"submitter killed 3 times: {len(printed)} acknowledged, {len(stored)} stored, each with its reservations")
    hub.close()


RELEASED, WITHDRAWN = 150, 50


def licensing_caught_up(hub: Hub) -> bool:
    return hub.views.position("licensing") >= (hub.declarations.recorder.max_notification_id() or 0)


@STORES
def test_the_licensing_worker_killed_while_it_consumes_applies_each_outcome_exactly_once(crash_store: Settings):
    """150 declarations released by every routed agency (the worker's enforcement records each release, then its
    licensing consumes) and 50 withdrawn; `tradehub worker project` is killed with SIGKILL twice while it works,
    and restarted. Every released declaration's reservation is consumed once, every withdrawn one returned once."""
    hub = build_hub(crash_store)
    app = hub.declarations
    app.today = lambda: DAY
    app.issue_licence(licence_fields("WORK-KG", quantity="1000"), "test")
    app.issue_licence(licence_fields("WORK-PC", quantity="500", unit="H87", issuer="inspection"), "test")
    ids = []
    for n in range(RELEASED + WITHDRAWN):
        ident = app.submit(citing(f"W-{n}", item(cite("WORK-KG", "2"), cite("WORK-PC", "1", "H87")))).declaration.id
        ids.append(ident)
        if n < RELEASED:
            release(app, ident, f"w{n}")
        else:
            app.withdraw(ident, "not needed")
    env = environment(crash_store)
    seen_at_kill = []
    for _ in range(2):
        worker = subprocess.Popen([sys.executable, "-m", "tradehub.cli", "worker", "project"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            before = len(app.get_licence("WORK-KG", "customs").consumed)
            while time.monotonic() < deadline:  # kill it as soon as it has consumed something more
                done = app.get_licence("WORK-KG", "customs")
                if len(done.consumed) > before or len(done.consumed) == RELEASED:
                    break
                time.sleep(0.01)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        seen_at_kill.append(len(app.get_licence("WORK-KG", "customs").consumed))
    worker = subprocess.Popen([sys.executable, "-m", "tradehub.cli", "worker", "project"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            licences = [app.get_licence("WORK-KG", "customs"), app.get_licence("WORK-PC", "inspection")]
            if all(len(licence.consumed) == RELEASED and not licence.reservations for licence in licences) and \
                    licensing_caught_up(hub):
                break
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    assert 0 < seen_at_kill[0] < RELEASED, f"the first kill did not fall mid-way: {seen_at_kill}"
    declarations = [app.get(ident) for ident in ids]
    assert Counter(declaration.status for declaration in declarations) == {"released": RELEASED,
                                                                             "withdrawn": WITHDRAWN}
    for key, each in ((("WORK-KG", "customs"), 2), (("WORK-PC", "inspection"), 1)):
        licence, ledger = app.licence_with_ledger(*key)
        kinds = Counter((entry["declaration_id"], entry["kind"]) for entry in ledger)
        for n, ident in enumerate(ids):
            outcome = "consumed" if n < RELEASED else "returned"
            assert kinds[(str(ident), outcome)] == 1 and kinds[(str(ident), "reserved")] == 1, (n, kinds)
        assert licence.remaining == Decimal(licence.quantity) - each * RELEASED
        check_ledger(app, hub.views, key, declarations)
    print(f"worker killed with {seen_at_kill} of {RELEASED} consumed; after restart all {RELEASED} consumed and "
          f"{WITHDRAWN} returned once")
    hub.close()
