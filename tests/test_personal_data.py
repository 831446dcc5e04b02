"""Personal data (docs/personal-data.md): message bodies sealed at rest, the data directory private, and each caller
shown of the people on board what its agency's messages carry, over every route and page, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.outbound import messages_for as rendered_for
from followers.dispatch import dispatches
from followers.inbox import Inbox
from followers.runner import Followers
from hub.declarations import AGENCIES, RoutingRules, validate_document
from messaging.broker import headers_of
from projections import messages as message_record
from projections.messages import INBOUND, OUTBOUND, PEOPLE_MARK, Record, record, recorded_messages
from projections.sealing import TEXT_MARK, Sealer, SealError
from simulators.agencies import answer
from tradehub import visibility
from tradehub.auth import Caller
from tradehub.bootstrap import ConfigurationError, Hub, Settings, build_hub, keep_private, message_sealer

from . import samples
from .conftest import SECRET, Api
from .messaging import Outbox, submitted
from .test_web import Browser, exchange_with_simulated_agencies

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()


# ---- sealing ----------------------------------------------------------------------------------------

@given(st.text(max_size=2000), st.binary(max_size=64))
def test_sealed_text_opens_to_exactly_what_was_sealed_and_shows_none_of_it(text: str, context: bytes):
    sealer = Sealer(KEY, "messages")
    sealed = sealer.seal_text(text, context)
    assert sealed.startswith(TEXT_MARK) and sealer.open_text(sealed, context) == text
    assert sealed != sealer.seal_text(text, context)  # a fresh nonce each time: equal bodies do not look equal
    if len(text) >= 8:
        assert text not in sealed


def test_without_a_key_values_pass_through_and_sealed_ones_are_refused():
    plain, sealer = Sealer(None, "messages"), Sealer(KEY, "messages")
    assert plain.seal_text("<a/>") == "<a/>" and plain.open_text("<a/>") == "<a/>"
    assert sealer.open_text("<legacy>kept before the key</legacy>") == "<legacy>kept before the key</legacy>"
    with pytest.raises(SealError, match="TRADEHUB_CIPHER_KEY is not set"):
        plain.open_text(sealer.seal_text("<a/>"))


@pytest.mark.parametrize("opener, context", [
    (Sealer(OTHER_KEY, "messages"), b"row"), (Sealer(KEY, "dead-letters"), b"row"), (Sealer(KEY, "messages"), b"ro"),
])
def test_a_sealed_value_does_not_open_under_another_key_purpose_or_row(opener: Sealer, context: bytes):
    sealed = Sealer(KEY, "messages").seal_text("<CrewList/>", b"row")
    with pytest.raises(SealError, match="does not open"):
        opener.open_text(sealed, context)


@given(st.data())
def test_a_changed_sealed_value_is_refused_never_misread(data: st.DataObject):
    sealer = Sealer(KEY, "messages")
    raw = bytearray(base64.b64decode(sealer.seal_text("<CrewList>MEIER</CrewList>")[len(TEXT_MARK):]))
    index = data.draw(st.integers(4, len(raw) - 1), label="byte")  # past the version, which marks it sealed
    raw[index] ^= data.draw(st.integers(1, 255), label="flip")
    with pytest.raises(SealError):
        sealer.open_text(TEXT_MARK + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SealError, match="not base64"):
        sealer.open_text(TEXT_MARK + "!!not base64!!")


@pytest.mark.parametrize("key", ["not base64 at all", base64.b64encode(b"short").decode()])
def test_an_unusable_cipher_key_is_a_configuration_error_naming_it(key: str):
    with pytest.raises(ConfigurationError, match="TRADEHUB_CIPHER_KEY"):
        message_sealer(Settings(cipher_key=key))


# ---- the message record at rest ---------------------------------------------------------------------

@pytest.fixture
def sealed_hub(store: tuple[Settings, str]) -> Iterator[Hub]:
    settings, schema = store
    wired = build_hub(Settings(settings.data_dir, settings.database_url, cipher_key=KEY, secret=SECRET),
                      schema=schema)
    yield wired
    wired.close()
    message_record.seal_bodies(Sealer(None, message_record.PURPOSE))  # what the next test's hub installs anyway


def dispatched(hub: Hub, document: dict[str, Any]) -> tuple[str, list]:
    """Submit `document` and dispatch it to every agency, unanswered: its id and the messages sent."""
    declaration_id = str(hub.declarations.submit(document).declaration.id)
    outbox = Outbox()
    Followers(hub.declarations, hub.views, dispatches(hub.declarations, AGENCIES, outbox)).catch_up()
    return declaration_id, outbox.sent


def test_message_bodies_are_sealed_at_rest_and_read_back_byte_for_byte(sealed_hub: Hub):
    declaration_id, sent = dispatched(sealed_hub, samples.vessel_call())
    [crew_list] = [message for message in sent if message.name == "fal5"]
    replies = answer("border", crew_list.body, headers_of(crew_list))
    inbox = Inbox(sealed_hub.declarations, sealed_hub.views)
    assert [inbox.receive("border", reply.body).outcome for reply in replies] == ["applied"] * len(replies)
    stored = sealed_hub.views.query("SELECT body FROM agency_messages WHERE declaration_id = ?", (declaration_id,))
    assert len(stored) == len(sent) + len(replies)
    for (body,) in stored:
        assert body.startswith((TEXT_MARK, PEOPLE_MARK)) and "MEIER" not in body and "C01X00T47" not in body
    read = {(row["direction"], row["message_id"]): row["body"] for row in recorded_messages(sealed_hub.views,
                                                                                             declaration_id)}
    assert {key: body for key, body in read.items() if key[0] == OUTBOUND} == {
        (OUTBOUND, message.message_id): message.body.decode() for message in sent}
    assert sorted(body for key, body in read.items() if key[0] == INBOUND) == sorted(
        reply.body.decode() for reply in replies)


def test_rows_recorded_before_the_key_still_read_beside_sealed_ones(sealed_hub: Hub):
    declaration_id, sent = dispatched(sealed_hub, samples.vessel_call())
    legacy = Record(INBOUND, "border", "legacy-1", declaration_id, 1, "reply OK", "OK", "2026-01-01T00:00:00+00:00",
                    "<legacy>recorded in the clear by an older hub</legacy>")
    with sealed_hub.views.transaction() as cursor:
        record(cursor, [legacy], Sealer(None, message_record.PURPOSE))
    bodies = [row["body"] for row in recorded_messages(sealed_hub.views, declaration_id)]
    assert legacy.body in bodies and len(bodies) == len(sent) + 1


def test_a_sealed_body_moved_into_another_row_does_not_open(sealed_hub: Hub):
    """Someone with write access to the views copies the border's crew list over maritime's message, which maritime
    officers may read: the route refuses the row instead of showing the list."""
    declaration_id, sent = dispatched(sealed_hub, samples.vessel_call())
    [crew_list] = [message for message in sent if message.name == "fal5"]
    [general] = [message for message in sent if message.name == "fal1"]
    with sealed_hub.views.transaction() as cursor:
        cursor.execute("UPDATE agency_messages SET body = (SELECT body FROM agency_messages WHERE message_id = ?)"
                       " WHERE message_id = ?", (crew_list.message_id, general.message_id))
    rows = {row["message_id"]: row for row in recorded_messages(sealed_hub.views, declaration_id)}
    assert rows[general.message_id]["body"] is None
    assert "moved from where it was sealed" in rows[general.message_id]["body_error"]
    assert all(row["body"] for key, row in rows.items() if key != general.message_id)  # the others still read


def test_a_tampered_row_is_shown_as_unreadable_on_the_route_and_the_page_not_as_a_500(sealed_hub: Hub):
    declaration_id, sent = dispatched(sealed_hub, samples.vessel_call())
    [crew_list] = [message for message in sent if message.name == "fal5"]
    with sealed_hub.views.transaction() as cursor:
        cursor.execute("UPDATE agency_messages SET body = body || 'AA' WHERE message_id = ?", (crew_list.message_id,))
    api = Api(sealed_hub)
    response = api.client.get(f"/v1/declarations/{declaration_id}/messages", headers=api.as_("admin"))
    assert response.status_code == 200, response.text[:300]
    rows = {row["message_id"]: row for row in response.json()["messages"]}
    assert rows[crew_list.message_id]["body"] is None and rows[crew_list.message_id]["body_error"]
    assert sum(row["body"] is not None for row in rows.values()) == len(rows) - 1
    page = Browser(sealed_hub).sign_in("admin").get(f"/declarations/{declaration_id}")
    assert page.status_code == 200 and "The hub cannot show this body" in page.text


def test_a_hub_without_the_key_refuses_sealed_bodies_rather_than_showing_ciphertext(sealed_hub: Hub):
    """(A goods declaration: what is sent about a vessel call is sealed under its own data key, whatever the cipher.)"""
    declaration_id, _ = dispatched(sealed_hub, samples.goods())
    rows = recorded_messages(sealed_hub.views, declaration_id, sealer=Sealer(None, message_record.PURPOSE))
    assert rows and all(row["body"] is None and "TRADEHUB_CIPHER_KEY is not set" in row["body_error"] for row in rows)


# ---- who sees the people on board --------------------------------------------------------------------

def person(family: str, given: str, number: str, born: str, **more: Any) -> dict[str, Any]:
    return {"family_name": family, "given_names": given, "nationality": "DE", "date_of_birth": born,
            "document": {"type": "passport", "number": number}, **more}


MASTER = person("QUASTHOFF", "Wendelin", "C7PX11Q42", "1961-04-17", rank="Master")
CREW = [MASTER, person("ZWIRBELMANN", "Ottokar", "C7PX22R53", "1983-09-02", rank="Cook"),
        person("KRAXLHUBER", "Leopoldine", "C7PX33S64", "1990-12-24", rank="Able seaman")]
PASSENGERS = [person("VOGELSANGER", "Philomena", "C7PX44T75", "1952-02-29"),
              person("DUNSTERBERG", "Anselm", "C7PX55U86", "2003-07-07")]
MASTER_NAMES = ["QUASTHOFF", "Wendelin"]
OTHERS = [value for someone in CREW[1:] + PASSENGERS for value in (someone["family_name"], someone["given_names"])]
DOCUMENTS = [someone["document"]["number"] for someone in CREW + PASSENGERS]
BIRTHS = [someone["date_of_birth"] for someone in CREW + PASSENGERS]
EVERYTHING = MASTER_NAMES + OTHERS + DOCUMENTS + BIRTHS

# caller -> what of the people on board it must see somewhere, and what it must never see.
SEES = {
    "trader": (EVERYTHING, []),
    "admin": (EVERYTHING, []),
    "border": (EVERYTHING, []),
    "maritime": (MASTER_NAMES, OTHERS + DOCUMENTS + BIRTHS),
    **{agency: ([], EVERYTHING) for agency in ("customs", "inspection", "port")},
}


def claims(caller: str) -> tuple[str, dict[str, str]]:
    if caller == "trader":
        return "trader", {"party": samples.SHIPPING_AGENT}
    if caller == "admin":
        return "admin", {}
    return "officer", {"agency": caller}


def everything_shown(hub: Hub, caller: str, declaration_id: str) -> dict[str, str]:
    """Every route and page that shows the declaration or the hub's views, as `caller` gets them."""
    role, extra = claims(caller)
    api = Api(hub)
    headers = api.as_(role, **extra)
    path = f"/v1/declarations/{declaration_id}"
    shown = {route: api.client.get(route, headers=headers) for route in (
        path, f"{path}/history", f"{path}/messages", f"/v1/views/exchange/{declaration_id}", "/v1/declarations")}
    if role != "trader":
        shown |= {route: api.client.get(route, headers=headers) for route in (
            "/v1/views/recognition", "/v1/views/alerts", "/v1/views/stats")}
    pages = Browser(hub).sign_in(role, **extra)
    shown |= {page: pages.get(page) for page in (f"/declarations/{declaration_id}", "/board")}
    if role != "trader":
        shown |= {page: pages.get(page) for page in ("/recognition", "/alerts", "/stats")}
    for route, response in shown.items():
        assert response.status_code == 200, (route, response.text[:300])
    return {route: response.text for route, response in shown.items()}


def amended_call(hub: Hub) -> str:
    """A vessel call with the people above, answered by border and maritime, amended (a passenger less), then
    answered by every simulated agency: documents, history, messages, timelines and views all have something to
    show."""
    document = samples.vessel_call("PERSONAL-0001", crew=CREW, passengers=PASSENGERS)
    declaration_id = str(hub.declarations.submit(document).declaration.id)
    exchange_with_simulated_agencies(hub, ["border", "maritime"])  # customs has not decided: still open to amend
    hub.declarations.amend(declaration_id, hub.declarations.get(declaration_id).version,
                           {**document, "passengers": PASSENGERS[:1]})
    exchange_with_simulated_agencies(hub)
    return declaration_id


@pytest.mark.parametrize("caller", list(SEES))
def test_each_caller_sees_of_the_people_on_board_what_its_agency_gets_on_every_route_and_page(hub: Hub,
                                                                                             caller: str):
    declaration_id = amended_call(hub)
    shown = everything_shown(hub, caller, declaration_id)
    must, never = SEES[caller]
    everywhere = "\n".join(shown.values())
    assert [value for value in must if value not in everywhere] == []
    assert {route: found for route, text in shown.items() if (found := [value for value in never if value in text])
            } == {}
    document = json.loads(shown[f"/v1/declarations/{declaration_id}"])["document"]
    if caller in ("trader", "admin", "border"):
        assert document["crew"] == CREW and document["passengers"] == PASSENGERS[:1]
    else:
        assert "crew" not in document and "passengers" not in document
        assert (document["crew_count"], document["passenger_count"]) == (3, 1)
        assert document.get("master") == ({"family_name": "QUASTHOFF", "given_names": "Wendelin"}
                                          if caller == "maritime" else None)


def test_officers_read_only_their_own_agencys_message_bodies(hub: Hub):
    declaration_id = amended_call(hub)
    api = Api(hub)
    for agency in AGENCIES:
        rows = api.client.get(f"/v1/declarations/{declaration_id}/messages",
                              headers=api.as_("officer", agency=agency)).json()["messages"]
        assert rows and {row["agency"] for row in rows} == {agency}


names = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=7, max_size=12).map(lambda text: "QX" + text)
numbers = st.text("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", min_size=7, max_size=9).map(lambda text: "N" + text)
births = st.dates(min_value=datetime.date(1940, 1, 1), max_value=datetime.date(1999, 12, 31)).map(str)


@st.composite
def people_on_board(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Crew (one of them the master, anywhere in the list, or none) and passengers, all names and numbers
    distinct, so a leak is one of theirs."""
    crew_size, passengers_size = draw(st.integers(1, 6)), draw(st.integers(0, 6))
    total = crew_size + passengers_size
    families = draw(st.lists(names, min_size=total, max_size=total, unique=True))
    givens = draw(st.lists(names, min_size=total, max_size=total, unique=True).filter(
        lambda drawn: not set(drawn) & set(families)))
    documents = draw(st.lists(numbers, min_size=total, max_size=total, unique=True))
    born = draw(st.lists(births, min_size=total, max_size=total))
    master_at = draw(st.none() | st.integers(0, crew_size - 1))
    crew = [person(families[n], givens[n], documents[n], born[n],
                   rank=draw(st.sampled_from(["Master", " captain "])) if n == master_at else
                   draw(st.sampled_from(["Cook", "Chief engineer", "Able seaman"]))) for n in range(crew_size)]
    passengers = [person(families[n], givens[n], documents[n], born[n]) for n in range(crew_size, total)]
    return crew, passengers


def master_of(crew: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((member for member in crew if member["rank"].strip().casefold() in ("master", "captain")), None)


def private_values(crew: list[dict[str, Any]], passengers: list[dict[str, Any]]) -> list[str]:
    """What of these people a maritime officer must never read: all but the master's name."""
    master = master_of(crew)
    return [value for someone in crew + passengers
            for value in ((someone["document"]["number"], someone["date_of_birth"]) if someone is master else
                          (someone["family_name"], someone["given_names"], someone["document"]["number"],
                           someone["date_of_birth"]))]


_references = itertools.count(1)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=people_on_board())
def test_a_maritime_officer_reads_no_name_but_the_masters_and_no_document_on_any_route(hub: Hub, people):
    crew, passengers = people
    document = samples.vessel_call(f"PROP-{next(_references):05d}", crew=crew, passengers=passengers)
    declaration_id = str(hub.declarations.submit(document).declaration.id)
    exchange_with_simulated_agencies(hub)
    shown = everything_shown(hub, "maritime", declaration_id)
    never = private_values(crew, passengers)
    assert {route: found for route, text in shown.items() if (found := [value for value in never if value in text])
            } == {}
    master = master_of(crew)
    if master is not None:
        assert master["family_name"] in shown[f"/v1/declarations/{declaration_id}/messages"]


@settings(max_examples=40, deadline=None)
@given(people=people_on_board())
def test_an_officer_is_shown_no_one_its_agencys_own_messages_do_not_name(people):
    """The rule in tradehub.visibility agrees with the adapters: whatever of a person an agency's messages carry,
    its officers may see in the document, and nothing its messages leave out. (FAL 1 cuts the master's name to 20
    characters; the page shows it whole.)"""
    crew, passengers = people
    change = submitted(samples.vessel_call(crew=crew, passengers=passengers))
    rules = RoutingRules.load(None)
    values = {value for someone in crew + passengers
              for value in (someone["family_name"], someone["given_names"], someone["document"]["number"])}
    for agency in AGENCIES:
        carried = {value for message in rendered_for(change, rules, [agency]) for value in values
                   if value.encode() in message.body}
        shown = json.dumps(visibility.document_for(Caller("officer", f"officer:{agency}", agency=agency),
                                                   validate_document(change.document)))
        master = master_of(crew)
        if agency == "maritime" and master is not None:
            assert f"NameOfMaster=\"{master['family_name'][:20]}".encode() in b"".join(
                message.body for message in rendered_for(change, rules, [agency]))
            carried |= {master["family_name"], master["given_names"]}
        assert {value for value in values if value in shown} == carried, agency


# ---- the data directory ----------------------------------------------------------------------------

@pytest.fixture
def umask() -> Iterator[None]:
    """`keep_private` sets the process's umask: put the test run's back."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_and_every_file_the_hub_writes_in_it_are_private(tmp_path: Path, umask: None,
                                                                             capsys: pytest.CaptureFixture):
    data_dir = tmp_path / "var"
    keep_private(data_dir)
    hub = build_hub(Settings(data_dir=data_dir, secret=SECRET, cipher_key=KEY))
    try:
        dispatched(hub, samples.vessel_call())
        hub.runner.catch_up()
        written = sorted(path.name for path in data_dir.iterdir())
        assert {"hub.sqlite", "hub-views.sqlite", "hub-views.sqlite-wal"} <= set(written)
        assert mode(data_dir) == 0o700
        assert {name: oct(mode(data_dir / name)) for name in written} == {
            name: oct(0o700 if (data_dir / name).is_dir() else 0o600) for name in written}
        assert oct(mode(data_dir / "keys" / "personal-data.key")) == oct(0o600)  # the master of the data keys
    finally:
        hub.close()
        message_record.seal_bodies(Sealer(None, message_record.PURPOSE))
    assert capsys.readouterr().err == ""  # nothing to warn about


def test_the_sqlite_files_are_private_whatever_the_umask_of_the_command_that_opens_them_first(tmp_path: Path,
                                                                                           umask: None):
    """`token revoke` or `dead-letters list` may be the first to open the store, without `keep_private`."""
    os.umask(0o022)
    data_dir = tmp_path / "var"
    hub = build_hub(Settings(data_dir=data_dir, secret=SECRET))
    try:
        dispatched(hub, samples.vessel_call())
        files = {str(path.relative_to(data_dir)): oct(mode(path)) for path in data_dir.rglob("*")}
    finally:
        hub.close()
    assert {"hub.sqlite", "hub-views.sqlite", "hub-views.sqlite-wal", "hub-views.sqlite-shm",
            "keys/personal-data.key"} <= set(files)
    assert files == {name: oct(0o700 if (data_dir / name).is_dir() else 0o600) for name in files}
    assert mode(data_dir) == 0o700


def test_a_data_directory_left_open_is_closed_with_a_warning(tmp_path: Path, umask: None,
                                                             capsys: pytest.CaptureFixture):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    keep_private(data_dir)
    assert mode(data_dir) == 0o700
    assert "was mode 0755, open to other users; changed it to 0700" in capsys.readouterr().err
    assert os.umask(0o077) == 0o077
    keep_private(data_dir)
    assert capsys.readouterr().err == ""  # once closed, nothing more to say


def test_a_shared_sticky_directory_is_never_chmodded(tmp_path: Path, umask: None, capsys: pytest.CaptureFixture):
    """TRADEHUB_DATA_DIR=/tmp must not close /tmp to everyone else: it is left as it is, with a warning."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    keep_private(shared)
    assert mode(shared) == 0o1777
    assert "leaving it as it is" in capsys.readouterr().err


# ---- a real hub: nothing personal in the clear anywhere in its data directory --------------------------

def generated_people(count: int, seed: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Crew and passengers whose names and document numbers occur nowhere else, and those values."""
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    digest = [letters[byte % len(letters)] for byte in seed.encode() * 40]
    values = ["ZQ" + "".join(digest[n * 9:(n + 1) * 9]) for n in range(count * 3)]
    people = [person(values[3 * n], values[3 * n + 1], "P" + values[3 * n + 2][2:], "1970-01-01")
              for n in range(count)]
    crew = [{**people[0], "rank": "Master"}, *({**someone, "rank": "Cook"} for someone in people[1:count // 2])]
    return crew, people[count // 2:], values


@pytest.mark.slow
@pytest.mark.broker
def test_a_real_hub_with_the_cipher_keeps_no_name_or_document_number_in_the_clear_in_any_file(tmp_path: Path):
    from .test_server import Server, free_port

    data_dir = tmp_path / "var"
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(data_dir), TRADEHUB_CIPHER_KEY=KEY)
    for name in ("TRADEHUB_DATABASE_URL", "TRADEHUB_BROKER_URL", "TRADEHUB_SECRET"):
        env.pop(name, None)  # the embedded default: SQLite, nats-server's store and the demo secret, all in data_dir
    server = Server(env, free_port(), "--demo", "--simulate-agencies")
    secrets_: list[str] = []
    try:
        import httpx

        headers = {"Authorization": f"Bearer {server.token('--role', 'admin')}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            ids = []
            for n in range(3):
                crew, passengers, values = generated_people(6, f"{tmp_path.name}-{n}")
                secrets_ += values
                response = client.post("/v1/declarations", json=samples.vessel_call(
                    f"AT-REST-{n}", crew=crew, passengers=passengers))
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            deadline = time.monotonic() + 90
            while (statuses := [client.get(f"/v1/declarations/{ident}").json()["status"] for ident in ids]
                   ) != ["released"] * len(ids):
                if time.monotonic() > deadline:
                    pytest.fail(f"not released in 90 s: {statuses}\n{server.output()[-3000:]}")
                time.sleep(0.3)
            # The names did travel: the border got them, and the hub shows them to whoever may see them.
            bodies = client.get(f"/v1/declarations/{ids[0]}/messages").text
            assert secrets_[0] in bodies and secrets_[3] in bodies
            # An admin erases the first call's people: every route of the running hub shows them erased.
            erased = client.post(f"/v1/declarations/{ids[0]}/personal-data/erasure", json={"reason": "test"})
            assert erased.status_code == 200 and erased.json()["erased"] is True, erased.text
            shown = client.get(f"/v1/declarations/{ids[0]}").text + client.get(
                f"/v1/declarations/{ids[0]}/messages").text + client.get(f"/v1/declarations/{ids[0]}/history").text
            assert "[erased]" in shown and not [value for value in secrets_[:18] if value in shown]
    finally:
        server.stop()
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert {"hub.sqlite", "hub-views.sqlite", "secret"} <= {path.name for path in files}
    assert any("nats" in path.parts for path in files)  # the broker's store is searched too
    found = {}
    for path in files:
        content = path.read_bytes()
        hits = [value for value in secrets_ if value.encode() in content]
        if hits:
            found[str(path.relative_to(data_dir))] = hits[:3]
    assert found == {}, f"personal data in the clear: {found}"
    too_open = {str(path.relative_to(data_dir)): oct(mode(path)) for path in [data_dir, *data_dir.rglob("*")]
                if mode(path) & 0o077}
    assert too_open == {}


def test_a_declaration_without_a_data_key_is_looked_up_once_and_one_with_a_key_is_found():
    """Dispatch asks for the data key of every message it records: a goods declaration (no key) must not cost a
    query each time, and the answer must not hide a key that exists."""
    from hub.declarations.personal_data import DataKeys, new_master_key

    asked: list[Any] = []

    class Table:
        def __init__(self) -> None:
            self.rows: dict[Any, tuple[str, bytes | None]] = {}

        def select_data_key(self, declaration_id: Any) -> tuple[str, bytes | None] | None:
            asked.append(declaration_id)
            return self.rows.get(declaration_id)

    keys = DataKeys(base64.b64decode(new_master_key()), Table())
    goods, call = uuid.uuid4(), uuid.uuid4()
    key_id = keys.new()
    keys.table.rows[call] = (key_id, keys.wrap(call, key_id, keys.fresh(key_id)))
    assert [keys.current(goods) for _ in range(5)] == [None] * 5
    assert asked == [goods]
    assert keys.current(call)[0] == key_id and keys.current(call)[0] == key_id
    assert asked == [goods, call]
