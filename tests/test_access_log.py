"""The access log of personal data (docs/personal-data.md, "Who read it") and the admin's erasure, on SQLite and
PostgreSQL: every answer that shows a caller anyone on board records one read of what it showed, before it is
sent; an answer that shows no one records nothing; admins list the reads by declaration and by reader."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.declarations import ERASED, PersonalDataRead, scrub, validate_document
from tradehub import client, visibility
from tradehub.api.app import create_app
from tradehub.auth import Caller, issue_token, token_id
from tradehub.bootstrap import Hub, Settings, build_hub
from tradehub.web import install_pages
from tradehub.web.pages import SESSION_COOKIE

from . import samples
from .conftest import SECRET
from .racing import race
from .test_personal_data import CREW, EVERYTHING, PASSENGERS, claims, people_on_board, person
from .test_web import exchange_with_simulated_agencies

CALLERS = ("trader", "admin", "border", "maritime", "customs", "inspection", "port")
EVERYONE = ["crew", "passengers"]
ALL_BODIES = (["crew", "master", "passengers"], ["fal1", "fal5", "fal6"])
LISTS = (EVERYONE, [])
# What each route or page is: API or page, its path under the declaration, and the route a read records.
ROUTES = {
    "document": ("api", "/v1/declarations/{id}", "GET /v1/declarations/{declaration_id}"),
    "history": ("api", "/v1/declarations/{id}/history", "GET /v1/declarations/{declaration_id}/history"),
    "messages": ("api", "/v1/declarations/{id}/messages", "GET /v1/declarations/{declaration_id}/messages"),
    "page": ("page", "/declarations/{id}", "GET /declarations/{declaration_id}"),
    "exchange": ("api", "/v1/views/exchange/{id}", ""),
    "list": ("api", "/v1/declarations", ""),
    "board": ("page", "/board", ""),
}
# (caller, route) -> the (fields, message types) one read records; absent: the answer shows no one.
SHOWN = {
    **{(caller, route): shown for caller in ("trader", "admin") for route, shown in (
        ("document", LISTS), ("history", LISTS), ("messages", ALL_BODIES), ("page", ALL_BODIES))},
    ("border", "document"): LISTS, ("border", "history"): LISTS,
    ("border", "messages"): (EVERYONE, ["fal5", "fal6"]), ("border", "page"): (EVERYONE, ["fal5", "fal6"]),
    ("maritime", "document"): (["master"], []), ("maritime", "history"): (["master"], []),
    ("maritime", "messages"): (["master"], ["fal1"]), ("maritime", "page"): (["master"], ["fal1"]),
}


class Readers:
    """One token per caller, and a client over the API with the pages: a page is read with the token as its
    session cookie, as a signed-in browser sends it."""

    def __init__(self, hub: Hub, declarant: str = samples.SHIPPING_AGENT) -> None:
        self.client = TestClient(install_pages(create_app(hub), hub))
        self.tokens = {caller: token(caller, declarant) for caller in CALLERS}

    def get(self, caller: str, route: str, declaration_id: str, token_: str | None = None) -> Any:
        kind, path, _ = ROUTES[route]
        secret = token_ or self.tokens[caller]
        headers = ({"Authorization": f"Bearer {secret}"} if kind == "api" else {"Cookie": f"{SESSION_COOKIE}={secret}"})
        return self.client.get(path.format(id=declaration_id), headers=headers, follow_redirects=False)


def token(caller: str, declarant: str = samples.SHIPPING_AGENT) -> str:
    role, extra = claims(caller)
    return issue_token(SECRET, role, **({"party": declarant} if role == "trader" else extra))


def logged_reads(hub: Hub) -> list[Any]:
    """Every read recorded in the event store, in log order."""
    app = hub.declarations
    stored = app.recorder.select_notifications(None, 1_000_000, topics=[get_topic(PersonalDataRead.Recorded)])
    return [app.mapper.to_domain_event(notification) for notification in stored]


def recorded(read: Any) -> tuple:
    return (read.declaration_id, read.reader, read.role, read.agency, read.party, read.token_id, read.fields,
            read.messages, read.route)


def expected(caller: str, route: str, declaration_id: str, secret: str) -> tuple:
    role, extra = claims(caller)
    fields, messages = SHOWN[caller, route]
    return (declaration_id, f"{role}:{extra.get('party') or extra.get('agency') or 'admin'}", role,
            extra.get("agency", ""), extra.get("party", ""), token_id(secret), fields, messages, ROUTES[route][2])


def call_with_people(hub: Hub, reference: str = "ACCESS-0001", **changes: Any) -> str:
    document = samples.vessel_call(reference, **{"crew": CREW, "passengers": PASSENGERS, **changes})
    return str(hub.declarations.submit(document).declaration.id)


@pytest.fixture
def answered(hub: Hub) -> str:
    """A vessel call naming a master, crew and passengers, which every simulated agency has answered: each route
    and page has a document, a history and message bodies to show."""
    declaration_id = call_with_people(hub)
    exchange_with_simulated_agencies(hub)
    return declaration_id


# ---- what each read records ---------------------------------------------------------------------------

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(st.sampled_from(CALLERS), st.sampled_from(list(ROUTES))), min_size=1, max_size=6))
def test_each_answer_that_shows_someone_records_one_read_of_exactly_what_it_showed(hub: Hub, answered: str,
                                                                                  calls: list[tuple[str, str]]):
    readers = Readers(hub)
    for caller, route in calls:
        before = len(logged_reads(hub))
        response = readers.get(caller, route, answered)
        assert response.status_code == 200, (caller, route, response.text[:300])
        new = logged_reads(hub)[before:]
        names = [value for value in EVERYTHING if value in response.text]
        if (caller, route) in SHOWN:
            assert [recorded(read) for read in new] == [expected(caller, route, answered, readers.tokens[caller])]
            assert names, (caller, route)  # what it records, it showed
        else:
            assert new == [] and names == [], (caller, route, names)


@settings(max_examples=60, deadline=None)
@given(people=people_on_board(), caller=st.sampled_from(CALLERS))
def test_a_document_shows_what_the_callers_agency_gets_and_an_erased_one_shows_no_one(people, caller: str):
    """`personal_data_shown` reads what a document shows each caller off the document as shown: the lists for
    the declarant, admins and border, the master's name (when there is one) for maritime, no one for the others;
    and after erasure no one for anybody, whatever the lists held."""
    crew, passengers = people
    document = validate_document(samples.vessel_call(crew=crew, passengers=passengers))
    role, extra = claims(caller)
    who = Caller(role, f"{role}:x", party=samples.SHIPPING_AGENT if role == "trader" else None,
                 agency=extra.get("agency"))
    master = any(member["rank"].strip().casefold() in ("master", "captain") for member in crew)
    wanted = {"trader": EVERYONE, "admin": EVERYONE, "border": EVERYONE,
              "maritime": ["master"] if master else []}.get(caller, [])
    if not passengers:
        wanted = [field for field in wanted if field != "passengers"]
    assert visibility.personal_data_shown(document=visibility.document_for(who, document)) == (wanted, [])
    erased = visibility.document_for(who, scrub(document))
    assert visibility.personal_data_shown(document=erased, history=[{"document": erased}]) == ([], [])
    assert ERASED in str(scrub(document)) and not any(value in str(erased) for value in EVERYTHING)


def test_answers_that_show_no_one_record_nothing(hub: Hub):
    """A goods declaration, and a vessel call whose crew has no master (FAL 1 then names no one): read on every
    route and page by the callers who see them, nothing is recorded."""
    goods = str(hub.declarations.submit(samples.goods("ACCESS-GOODS-1")).declaration.id)
    masterless = call_with_people(hub, "ACCESS-NO-MASTER", crew=[{**member, "rank": "Cook"} for member in CREW])
    exchange_with_simulated_agencies(hub)
    before = logged_reads(hub)
    goods_readers = Readers(hub, samples.TRADER_A)
    for route in ("document", "history", "messages", "page"):
        for caller in ("trader", "admin", "customs"):
            assert goods_readers.get(caller, route, goods).status_code == 200
        for caller in ("maritime", "customs", "inspection", "port"):
            response = goods_readers.get(caller, route, masterless)
            assert response.status_code == 200 and "ZWIRBELMANN" not in response.text
    assert logged_reads(hub) == before
    border = Readers(hub).get("border", "document", masterless)
    assert border.status_code == 200 and [read.fields for read in logged_reads(hub)[len(before):]] == [EVERYONE]


@pytest.fixture
def narrow_hub(store: tuple[Settings, str], tmp_path: Path) -> Iterator[Hub]:
    """A hub whose rules route vessel calls to every agency but the port: a port officer may not see them."""
    text = (Path(__file__).parent.parent / "hub" / "declarations" / "data" / "routing.toml").read_text()
    narrow = text.replace('[[rule]]\nagency = "port"\nkinds = ["vessel_call"]\nwhen = [{ always = true }]\n', "")
    assert narrow != text
    (tmp_path / "routing.toml").write_text(narrow)
    settings_, schema = store
    wired = build_hub(Settings(settings_.data_dir, settings_.database_url, secret=SECRET,
                               routing_file=str(tmp_path / "routing.toml")), schema=schema)
    yield wired
    wired.close()


def test_a_caller_who_may_not_see_the_declaration_is_answered_404_and_nothing_is_recorded(narrow_hub: Hub):
    declaration_id = call_with_people(narrow_hub)
    readers = Readers(narrow_hub, samples.TRADER_A)  # a trader, but not the declarant
    forged = issue_token("another-secret-" + "x" * 40, "officer", agency="border")
    unknown = "00000000-0000-4000-8000-000000000000"
    for route in ("document", "history", "messages", "page"):
        for caller in ("trader", "port"):
            response = readers.get(caller, route, declaration_id)
            assert response.status_code == 404, (caller, route)
            assert not any(value in response.text for value in EVERYTHING)
        assert readers.get("admin", route, unknown).status_code == 404
        assert readers.get("border", route, declaration_id, forged).status_code in (401, 303)  # the page: sign in
    assert logged_reads(narrow_hub) == []
    assert Readers(narrow_hub).get("border", "document", declaration_id).status_code == 200  # the rule is narrow
    assert len(logged_reads(narrow_hub)) == 1


def test_a_withdrawal_and_a_repeated_submission_answer_with_the_stored_people_and_record_it(hub: Hub):
    """The answer to a new submission, or to an amendment, is what its caller has just sent: no read. The answer to
    a repeated submission, or to a withdrawal, is the declaration as stored: a read, when it shows someone."""
    headers = {"Authorization": f"Bearer {token('trader')}"}
    api = TestClient(create_app(hub))
    document = samples.vessel_call("ACCESS-W-1", crew=CREW, passengers=PASSENGERS)
    created = api.post("/v1/declarations", json=document, headers=headers)
    assert created.status_code == 201 and logged_reads(hub) == []
    ident = created.json()["id"]
    amended = api.post(f"/v1/declarations/{ident}/amendments", headers=headers,
                       json={"expected_version": 1, "declaration": {**document, "passengers": PASSENGERS[:1]}})
    assert amended.status_code == 200 and logged_reads(hub) == []
    again = api.post("/v1/declarations", json=document, headers=headers)
    assert again.status_code == 200 and again.json()["document"]["passengers"] == PASSENGERS[:1]
    withdrawn = api.post(f"/v1/declarations/{ident}/withdrawal", json={"reason": "cancelled"}, headers=headers)
    assert withdrawn.status_code == 200
    assert [(read.route, read.fields) for read in logged_reads(hub)] == [
        ("POST /v1/declarations", EVERYONE), ("POST /v1/declarations/{declaration_id}/withdrawal", EVERYONE)]


def test_a_read_whose_record_fails_shows_no_one(hub: Hub, monkeypatch: pytest.MonkeyPatch):
    """The record is written before the answer leaves: a store that cannot take it fails the read (503), and the
    answer names no one. A read that shows no one needs no record, and is answered."""
    declaration_id = call_with_people(hub)
    readers = Readers(hub)

    def broken(*_: Any) -> None:
        raise OperationalError("the store refuses writes")

    monkeypatch.setattr(hub.declarations, "_record", broken)
    for caller in ("border", "trader", "maritime"):
        for route in ("document", "history", "page"):
            response = readers.get(caller, route, declaration_id)
            assert response.status_code == 503, (caller, route, response.status_code)
            assert not any(value in response.text for value in EVERYTHING), (caller, route)
    assert readers.get("customs", "document", declaration_id).status_code == 200
    monkeypatch.undo()
    assert logged_reads(hub) == []


# ---- many readers at once ---------------------------------------------------------------------------

def test_readers_racing_each_other_and_another_process_are_all_recorded(hub: Hub, store: tuple[Settings, str]):
    declaration_id = call_with_people(hub)
    settings_, schema = store
    other = build_hub(Settings(settings_.data_dir, settings_.database_url, secret=SECRET), schema=schema)
    try:
        apps = [create_app(hub), create_app(other)]  # two API processes over one store
        tokens = [token("border") for _ in range(16)]
        responses = race(len(tokens), lambda n: TestClient(apps[n % 2]).get(
            f"/v1/declarations/{declaration_id}", headers={"Authorization": f"Bearer {tokens[n]}"}))
    finally:
        other.close()
    assert [getattr(response, "status_code", response) for response in responses] == [200] * len(tokens)
    reads = logged_reads(hub)
    assert sorted(read.token_id for read in reads) == sorted(token_id(secret) for secret in tokens)
    assert {(read.declaration_id, read.reader, tuple(read.fields)) for read in reads} == {
        (declaration_id, "officer:border", tuple(EVERYONE))}
    hub.runner.catch_up()
    assert len(hub.views.query("SELECT id FROM personal_data_reads")) == len(tokens)


# ---- the view: listing, rebuilding ------------------------------------------------------------------

@pytest.fixture
def read_twice(hub: Hub) -> tuple[str, str, list[str]]:
    """Two vessel calls, each read by two callers: (first, second, the readers' tokens in the order they read)."""
    first, second = call_with_people(hub, "ACCESS-L-1"), call_with_people(hub, "ACCESS-L-2")
    readers = Readers(hub)
    order = [("border", first), ("maritime", first), ("border", second), ("trader", second)]
    for caller, ident in order:
        assert readers.get(caller, "document", ident).status_code == 200
    hub.runner.catch_up()
    return first, second, [readers.tokens[caller] for caller, _ in order]


def listed(api: TestClient, **params: str) -> Any:
    return api.get("/v1/personal-data/reads", params=params, headers={"Authorization": f"Bearer {token('admin')}"})


def test_admins_list_the_reads_by_declaration_and_by_reader_oldest_first(hub: Hub, read_twice):
    first, second, tokens = read_twice
    api = TestClient(create_app(hub))
    everything = listed(api).json()
    assert everything["next"] is None
    assert [(item["declaration_id"], item["reader"], item["fields"], item["token_id"]) for item in everything["items"]
            ] == [(first, "officer:border", EVERYONE, token_id(tokens[0])),
                  (first, "officer:maritime", ["master"], token_id(tokens[1])),
                  (second, "officer:border", EVERYONE, token_id(tokens[2])),
                  (second, f"trader:{samples.SHIPPING_AGENT}", EVERYONE, token_id(tokens[3]))]
    trader = everything["items"][3]
    assert (trader["role"], trader["party"], trader["agency"], trader["messages"], trader["route"]) == (
        "trader", samples.SHIPPING_AGENT, None, [], "GET /v1/declarations/{declaration_id}")
    assert [item["reader"] for item in listed(api, declaration=first).json()["items"]] == [
        "officer:border", "officer:maritime"]
    assert [item["declaration_id"] for item in listed(api, reader="officer:border").json()["items"]] == [first, second]
    assert [item["token_id"] for item in listed(api, declaration=second, reader="officer:border").json()["items"]
            ] == [token_id(tokens[2])]
    pages, after = [], None
    while True:
        page = listed(api, limit="1", **({"after": after} if after else {})).json()
        pages += page["items"]
        after = page["next"]
        if after is None:
            break
    assert pages == everything["items"] and len(pages) == 4
    assert len(logged_reads(hub)) == 4  # listing the log is no read of personal data


@pytest.mark.parametrize("params, path", [
    ({"declaration": "ACCESS-L-1"}, "query.declaration"), ({"after": "x1"}, "query.after"),
    ({"after": str(2**63)}, "query.after"), ({"limit": "0"}, "query.limit"), ({"limit": "501"}, "query.limit"),
    ({"reader": "r" * 101}, "query.reader"),
])
def test_a_listing_with_a_query_it_cannot_use_is_422_naming_the_field(api, params: dict[str, str], path: str):
    response = listed(api.client, **params)
    assert response.status_code == 422 and [error["path"] for error in response.json()["errors"]] == [path]


def test_only_admins_list_reads_or_erase_and_an_unknown_declaration_is_404(api, hub: Hub):
    declaration_id = call_with_people(hub)
    unknown = "00000000-0000-4000-8000-000000000000"
    for caller in ("trader", "border", "maritime", "customs"):
        headers = {"Authorization": f"Bearer {token(caller)}"}
        for ident in (declaration_id, unknown):
            assert api.client.get("/v1/personal-data/reads", params={"declaration": ident},
                                  headers=headers).status_code == 403
            assert api.client.post(f"/v1/declarations/{ident}/personal-data/erasure", json={"reason": "asked"},
                                   headers=headers).status_code == 403
    assert api.client.get("/v1/personal-data/reads").status_code == 401
    assert listed(api.client, declaration=unknown).status_code == 404
    assert listed(api.client, declaration=declaration_id).json() == {"items": [], "next": None}


def test_a_rebuild_of_the_views_gives_the_same_access_log(hub: Hub, read_twice):
    rows = hub.views.query("SELECT * FROM personal_data_reads ORDER BY position")
    assert len(rows) == 4
    assert hub.runner.rebuild(["access_log"])["access_log"] > 4
    assert hub.views.query("SELECT * FROM personal_data_reads ORDER BY position") == rows
    hub.runner.rebuild()
    assert hub.views.query("SELECT * FROM personal_data_reads ORDER BY position") == rows


# ---- erasure, by an admin: the route and the command ------------------------------------------------------

def erase(api: TestClient, declaration_id: str, body: Any, caller: str = "admin") -> Any:
    return api.post(f"/v1/declarations/{declaration_id}/personal-data/erasure", json=body,
                    headers={"Authorization": f"Bearer {token(caller)}"})


def test_an_admin_erases_a_declarations_people_once_and_after_that_no_read_shows_or_records_anyone(hub: Hub,
                                                                                                answered: str):
    api = TestClient(create_app(hub))
    first = erase(api, answered, {"reason": "the master asked, PIPL art. 47"})
    assert first.status_code == 200, first.text
    done = first.json()
    assert (done["declaration_id"], done["erased"], done["erased_by"], done["reason"]) == (
        answered, True, "admin:admin", "the master asked, PIPL art. 47")
    assert done["messages"] >= 3 and done["erased_at"]  # FAL 1, 5 and 6 named them
    again = erase(api, answered, {"reason": "asked twice"})
    assert again.status_code == 200 and again.json() == {**done, "erased": False}
    before = logged_reads(hub)
    readers = Readers(hub)
    for caller in ("trader", "admin", "border", "maritime"):
        for route in ("document", "history", "messages", "page"):
            response = readers.get(caller, route, answered)
            assert response.status_code == 200
            assert not any(value in response.text for value in EVERYTHING), (caller, route)
    assert logged_reads(hub) == before


@pytest.mark.parametrize("body, path", [
    ({}, "$.reason"), ({"reason": ""}, "$.reason"), ({"reason": "   "}, "$.reason"), ({"reason": "x" * 501}, "$.reason"),
    ({"reason": "a\x00b"}, "$.reason"), ({"reason": 7}, "$.reason"), ({"reason": "ok", "by": "me"}, "$.by"),
])
def test_an_erasure_without_a_usable_reason_is_422_naming_it_and_erases_nothing(hub: Hub, body: Any, path: str):
    declaration_id = call_with_people(hub)
    api = TestClient(create_app(hub))
    response = erase(api, declaration_id, body)
    assert response.status_code == 422 and [error["path"] for error in response.json()["errors"]] == [path]
    assert hub.declarations.get(declaration_id).personal_data_erased is None


def test_erasing_what_names_no_one_is_422_and_an_unknown_declaration_404(hub: Hub):
    goods = str(hub.declarations.submit(samples.goods("ACCESS-GOODS-2")).declaration.id)
    api = TestClient(create_app(hub))
    response = erase(api, goods, {"reason": "asked"})
    assert response.status_code == 422, response.text
    assert [error["path"] for error in response.json()["errors"]] == ["path.declaration_id"]
    assert erase(api, "00000000-0000-4000-8000-000000000000", {"reason": "asked"}).status_code == 404
    assert erase(api, "not-an-id", {"reason": "asked"}).status_code == 404


@pytest.fixture
def cli_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The `personal-data` commands run in this process, their HTTP client the API app over `hub`."""
    app = create_app(hub)

    def connect(url: str, token_: str, concurrency: int = 4) -> Any:
        return contextlib.nullcontext(TestClient(app, headers={"Authorization": f"Bearer {token_}"}))

    monkeypatch.setattr(client, "_client", connect)
    return hub


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    from tradehub.cli import main

    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_erase_command_takes_a_reference_and_says_what_it_erased_then_that_it_was(cli_hub: Hub, capsys):
    declaration_id = call_with_people(cli_hub, "ACCESS-CLI-1")
    cli_hub.runner.catch_up()
    admin = token("admin")
    status, out, err = run_cli(capsys, "personal-data", "erase", "ACCESS-CLI-1", "--reason", "asked", "--token", admin)
    assert status == 0, err
    assert f"declaration {declaration_id}: the crew and passengers it named are erased, by admin:admin" in out
    status, out, err = run_cli(capsys, "personal-data", "erase", declaration_id, "--reason", "again", "--token", admin)
    assert status == 0 and "already erased, by admin:admin" in out and "(asked)" in out, err
    assert cli_hub.declarations.get(declaration_id).personal_data_erased["reason"] == "asked"


@pytest.mark.parametrize("args, message", [
    (["NO-SUCH-REF", "--reason", "asked"], "no declaration with the reference 'NO-SUCH-REF'"),
    (["00000000-0000-4000-8000-000000000000", "--reason", "asked"], "404 No such declaration"),
    (["ACCESS-CLI-2", "--reason", " "], "--reason must be 1 to 500 characters"),
    (["ACCESS-CLI-2", "--reason", "x" * 501], "--reason must be 1 to 500 characters"),
    (["ACCESS-CLI-2", "--reason", "asked", "--as", "border"], "403 Admins only"),
    (["ACCESS-GOODS-3", "--reason", "asked"], "422 Nothing to erase"),
])
def test_the_erase_command_refuses_in_one_line_exit_2(cli_hub: Hub, capsys, args: list[str], message: str):
    call_with_people(cli_hub, "ACCESS-CLI-2")
    cli_hub.declarations.submit(samples.goods("ACCESS-GOODS-3"))
    cli_hub.runner.catch_up()
    caller = "admin"
    if "--as" in args:
        caller = args[args.index("--as") + 1]
        args = args[:args.index("--as")]
    status, out, err = run_cli(capsys, "personal-data", "erase", *args, "--token", token(caller))
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_the_reads_command_lists_by_declaration_reference_and_by_reader(cli_hub: Hub, read_twice, capsys):
    first, second, tokens = read_twice
    admin = token("admin")
    status, out, err = run_cli(capsys, "personal-data", "reads", "--token", admin)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "READER", "TOKEN", "DECLARATION", "FIELDS", "MESSAGES", "ROUTE"]
    assert [line.split()[1:5] for line in lines[1:]] == [
        ["officer:border", token_id(tokens[0]), first, "crew,passengers"],
        ["officer:maritime", token_id(tokens[1]), first, "master"],
        ["officer:border", token_id(tokens[2]), second, "crew,passengers"],
        [f"trader:{samples.SHIPPING_AGENT}", token_id(tokens[3]), second, "crew,passengers"]]
    status, out, _ = run_cli(capsys, "personal-data", "reads", "--declaration", "ACCESS-L-1", "--token", admin)
    assert status == 0 and [line.split()[1] for line in out.splitlines()[1:]] == ["officer:border",
                                                                                  "officer:maritime"]
    status, out, _ = run_cli(capsys, "personal-data", "reads", "--reader", "officer:border", "--limit", "1",
                             "--token", admin)
    assert status == 0 and [line.split()[3] for line in out.splitlines()[1:]] == [first]
    status, out, _ = run_cli(capsys, "personal-data", "reads", "--reader", "officer:port", "--token", admin)
    assert status == 0 and out == "no reads of personal data recorded for that\n"
    status, out, err = run_cli(capsys, "personal-data", "reads", "--token", token("border"))
    assert status == 2 and err.count("\n") == 1 and "403 Admins only" in err


def test_a_person_erased_in_the_document_counts_as_no_one():
    """One field of a person left unerased still names them; a person erased in every field does not."""
    someone = person("QX", "Y", "N1", "1970-01-01", rank="Cook")
    erased = scrub({"crew": [someone]})["crew"][0]
    assert visibility.personal_data_shown(document={"crew": [erased]}) == ([], [])
    assert visibility.personal_data_shown(document={"crew": [{**erased, "nationality": "DE"}]}) == (["crew"], [])
    assert visibility.personal_data_shown(document={"crew_count": 3, "passenger_count": 2}) == ([], [])
    assert visibility.personal_data_shown(messages=[{"type": "fal1", "body": "<NCA_FAL1 ShipName=\"X\"/>"},
                                                    {"type": "fal5", "body": None},
                                                    {"type": "reply OK", "body": "<CrewMember />"}]) == ([], [])


def test_the_desk_forms_that_show_a_stored_call_record_a_read(hub: Hub):
    declaration_id = call_with_people(hub)
    readers = Readers(hub)
    cookie = {"Cookie": f"{SESSION_COOKIE}={readers.tokens['trader']}"}
    for path, route in ((f"/desk/declarations/{declaration_id}/amend", "GET /desk/declarations/{declaration_id}/amend"),
                        (f"/desk/new?copy={declaration_id}", "GET /desk/new?copy={declaration_id}")):
        before = len(logged_reads(hub))
        response = readers.client.get(path, headers=cookie)
        assert response.status_code == 200 and "ZWIRBELMANN" in response.text
        assert [(read.route, read.fields) for read in logged_reads(hub)[before:]] == [(route, EVERYONE)]
