"""The business register (一照一码): entries by USCC, declarations checked and filled from it, the API and the import.

Everything runs on both stores. The register is off by default, and then
submission reads nothing of it; with TRADEHUB_PARTY_REGISTER=required the
declarant and every Chinese party must be active there, and a party given by
its USCC alone is filled with the register's name and address.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum.cn import uscc as stdnum_uscc

from adapters.customs import customs_messages
from adapters.messages import ORIGINAL
from hub.declarations import Declarations, InvalidDeclaration, PartyInvalid, PartyNotFound, party_id
from tradehub import cli
from tradehub.bootstrap import ConfigurationError, Settings, build_declarations, build_hub

from . import samples
from .conftest import SECRET, Api
from .messaging import EXAMPLES, interop, submitted

ADDRESS_A = "No. 1 Haicang Avenue, Haicang District, Xiamen"
ADDRESS_B = "88 Lujiang Road, Siming District, Xiamen"


def _uscc(serial: int) -> str:
    """A valid USCC of its own for each serial: the check character computed as GB 32100-2015 says."""
    base = f"91350200MA{serial:07d}"
    return base + stdnum_uscc.calc_check_digit(base)


_serials = itertools.count(1000)


def fresh_uscc() -> str:
    return _uscc(next(_serials))


@pytest.fixture
def register(store: tuple[Settings, str]) -> Iterator[Declarations]:
    """The application with the register required."""
    settings, schema = store
    application = build_declarations(replace(settings, party_register="required"), schema=schema)
    yield application
    application.close()


def by_id(uscc: str) -> dict[str, str]:
    return {"id": uscc}


def refusals(error: pytest.ExceptionInfo[InvalidDeclaration]) -> dict[str, str]:
    return {found.path: found.message for found in error.value.errors}


# ---- the register itself --------------------------------------------------------------------------

def test_an_entry_records_registration_change_deregistration_and_reactivation(app: Declarations):
    first = app.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    assert (first.created, first.changed, first.party.id) == (True, True, party_id(samples.TRADER_A))
    again = app.register_party(samples.TRADER_A, " Haixi Trading ", ADDRESS_A, "ACTIVE", "admin:b")
    assert (again.created, again.changed, again.party.version) == (False, False, 1)  # a repeat changes nothing
    app.register_party(samples.TRADER_A, "Haixi Trading Co.", ADDRESS_A, "active", "admin:a")
    app.register_party(samples.TRADER_A, "Haixi Trading Co.", ADDRESS_A, "deregistered", "admin:a")
    party = app.get_party(samples.TRADER_A.lower())
    assert (party.name, party.status, party.version) == ("Haixi Trading Co.", "deregistered", 3)
    assert party.deregistered_at is not None
    events = [type(event).__name__ for event in app.events.get(party.id)]
    assert events == ["Registered", "Changed", "Deregistered"]
    back = app.register_party(samples.TRADER_A, "Haixi Trading Co.", ADDRESS_A, "active", "admin:a").party
    assert (back.status, back.deregistered_at, back.version) == ("active", None, 4)


def test_racing_registrations_of_one_party_make_one_entry(app: Declarations):
    from concurrent.futures import ThreadPoolExecutor

    names = [f"Racer {number}" for number in range(8)]
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda name: app.register_party(samples.TRADER_A, name, ADDRESS_A, "active",
                                                             "admin:a"), names))
    assert sum(registration.created for registration in done) == 1
    events = list(app.events.get(party_id(samples.TRADER_A)))
    assert [type(event).__name__ for event in events][0] == "Registered" and len(events) <= len(names)
    assert app.get_party(samples.TRADER_A).name in names


def test_an_invalid_entry_names_every_field_and_stores_nothing(app: Declarations):
    bad_check = samples.TRADER_A[:-1] + ("0" if samples.TRADER_A[-1] != "0" else "1")
    with pytest.raises(PartyInvalid) as error:
        app.register_party(bad_check, "", "x" * 71, "closed", "admin:a")
    paths = {found.path: found.message for found in error.value.errors}
    assert set(paths) == {"$.uscc", "$.name", "$.address", "$.status"}
    assert "check digit" in paths["$.uscc"] and "at most 70" in paths["$.address"]
    with pytest.raises(PartyNotFound):
        app.get_party(bad_check)
    with pytest.raises(PartyNotFound):
        app.get_party("not a uscc")
    assert app.recorder.max_notification_id() in (None, 0)


def test_the_followers_pass_over_register_events(hub):
    hub.declarations.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "deregistered", "admin:a")
    hub.declarations.submit(samples.goods())
    hub.runner.catch_up()
    assert hub.runner.lag() == dict.fromkeys(hub.runner.lag(), 0)


# ---- off by default -------------------------------------------------------------------------------

def test_the_register_is_off_by_default_and_the_shipped_examples_submit(app: Declarations, monkeypatch):
    assert Settings().party_register == "off" and Settings.from_env({}).party_register == "off"
    app.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "deregistered", "admin:a")

    def no_reads(*_):
        raise AssertionError("the register is read while it is off")

    monkeypatch.setattr(app, "parties", no_reads)
    for path in sorted(EXAMPLES.glob("*.json")):
        assert app.submit(json.loads(path.read_text())).created
    assert app.submit(samples.goods()).created  # its parties are deregistered: off means unchecked
    document = samples.goods(reference="NO-NAME")
    del document["consignee"]["name"]
    with pytest.raises(InvalidDeclaration) as error:
        app.submit(document)
    assert refusals(error) == {"$.consignee.name": "is required"}


@pytest.mark.parametrize("value", ["on", "yes", "Required!"])
def test_a_setting_the_hub_does_not_know_is_refused(value: str):
    with pytest.raises(ConfigurationError, match="TRADEHUB_PARTY_REGISTER must be one of off, required"):
        Settings.from_env({"TRADEHUB_PARTY_REGISTER": value})
    assert Settings.from_env({"TRADEHUB_PARTY_REGISTER": " Required "}).party_register == "required"


# ---- required: checked and filled -----------------------------------------------------------------

def test_a_party_given_by_uscc_alone_is_filled_from_the_register(register: Declarations):
    register.register_party(samples.TRADER_A, "Xiamen Haixi Trading Co., Ltd.", ADDRESS_A, "active", "admin:a")
    document = samples.goods(declarant=samples.TRADER_A, consignee=by_id(samples.TRADER_A))
    document["declarant"] = by_id(samples.TRADER_A)
    stored = register.submit(document).declaration
    assert stored.document["declarant"] == {"id": samples.TRADER_A, "name": "Xiamen Haixi Trading Co., Ltd.",
                                            "address": ADDRESS_A}
    assert stored.document["consignee"] == {"id": samples.TRADER_A, "name": "Xiamen Haixi Trading Co., Ltd.",
                                            "address": ADDRESS_A, "country": "CN"}
    assert register.get(stored.id).document == stored.document  # what is stored is the filled document
    # a name the trader gives is its own; the register fills only what it leaves out
    given = samples.goods(reference="NAMED", consignee={"id": samples.TRADER_A, "name": "Haixi", "country": "CN"})
    assert register.submit(given).declaration.document["consignee"]["name"] == "Haixi"
    # the same submission again is the same declaration
    assert not register.submit(copy.deepcopy(document)).created


def test_a_deregistered_party_is_refused_naming_its_field(register: Declarations):
    register.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    register.register_party(samples.TRADER_B, "Lujiang Imports", ADDRESS_B, "deregistered", "admin:a")
    since = register.get_party(samples.TRADER_B).deregistered_at.date().isoformat()
    document = samples.goods(consignee={"id": samples.TRADER_B, "name": "Lujiang Imports", "country": "CN"})
    with pytest.raises(InvalidDeclaration) as error:
        register.submit(document)
    assert refusals(error) == {"$.consignee.id": f"{samples.TRADER_B} is deregistered since {since}"}
    assert register.recorder.max_notification_id() == 2  # the two entries, no declaration


def test_a_party_not_in_the_register_is_refused_with_what_else_is_missing(register: Declarations):
    register.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    with pytest.raises(InvalidDeclaration) as error:
        register.submit(samples.goods(consignee=by_id(samples.TRADER_B)))
    assert refusals(error) == {"$.consignee.id": f"{samples.TRADER_B} is not in the business register"}
    document = samples.goods(consignee={"id": samples.TRADER_B, "name": " "}, containers=["nonsense"])
    with pytest.raises(InvalidDeclaration) as error:  # what else is wrong is told at once
        register.submit(document)
    assert set(refusals(error)) == {"$.consignee.id", "$.consignee.name", "$.containers[0]"}
    document = samples.goods(declarant=samples.TRADER_B)
    document["consignee"]["id"] = samples.TRADER_A
    with pytest.raises(InvalidDeclaration) as error:
        register.submit(document)
    assert refusals(error) == {"$.declarant.id": f"{samples.TRADER_B} is not in the business register"}


def test_a_chinese_party_without_a_uscc_is_refused(register: Declarations):
    register.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    with pytest.raises(InvalidDeclaration) as error:
        register.submit(samples.goods(consignee={"name": "Somebody", "country": "cn"}))
    assert list(refusals(error)) == ["$.consignee.id"]
    # foreign parties are not the register's business, with or without an id
    assert register.submit(samples.goods(consignee={"name": "Somebody", "country": "VN", "id": "VN0312345"})).created


def test_an_amendment_is_checked_and_filled_too(register: Declarations):
    register.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    register.register_party(samples.TRADER_B, "Lujiang Imports", ADDRESS_B, "active", "admin:a")
    declaration = register.submit(samples.goods()).declaration
    amended = register.amend(declaration.id, declaration.version, samples.goods(consignee=by_id(samples.TRADER_B)))
    assert amended.document["consignee"]["address"] == ADDRESS_B
    register.register_party(samples.TRADER_B, "Lujiang Imports", ADDRESS_B, "deregistered", "admin:a")
    with pytest.raises(InvalidDeclaration) as error:
        register.amend(declaration.id, amended.version, samples.goods(consignee=by_id(samples.TRADER_B),
                                                                      containers=[]))
    assert list(refusals(error)) == ["$.consignee.id"]


def test_the_register_is_read_once_per_distinct_party(register: Declarations, monkeypatch):
    register.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    register.register_party(samples.TRADER_B, "Lujiang Imports", ADDRESS_B, "active", "admin:a")
    reads: list[int] = []
    recorder = register.recorder
    for name in ("select_events", "select_streams"):
        method = getattr(recorder, name, None)
        if method is not None:
            def counted(*args, _method=method, _name=name, **kwargs):
                reads.append(len(args[0]) if _name == "select_streams" else 1)
                return _method(*args, **kwargs)

            monkeypatch.setattr(recorder, name, counted)
    # the declarant and consignee are one party, the consignor another
    document = samples.goods(consignor={"id": samples.TRADER_B, "country": "CN"}, consignee=by_id(samples.TRADER_A))
    register.prepare_submission(document)
    assert sum(reads) <= 2 and len(reads) <= 2


# ---- the property --------------------------------------------------------------------------------

STATES = st.sampled_from(["absent", "active", "deregistered"])
_references = itertools.count()


@st.composite
def parties_and_declaration(draw):
    pool = [fresh_uscc() for _ in range(draw(st.integers(1, 3)))]
    states = {code: draw(STATES) for code in pool}
    names = {code: draw(st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20))
             for code in pool}

    def party(role: str) -> dict[str, str]:
        if role != "declarant" and draw(st.booleans()):
            return {"name": "Foreign Partner GmbH", "country": "DE"}
        code = draw(st.sampled_from(pool))
        shape = draw(st.sampled_from(["alone", "with country", "named"] if role != "declarant" else ["alone",
                                                                                                        "named"]))
        if shape == "alone":
            return {"id": code}
        if shape == "with country":
            return {"id": code, "country": "CN"}
        return {"id": code, "name": "Given Name", **({"country": "CN"} if role != "declarant" else {})}

    roles = {role: party(role) for role in ("declarant", "consignor", "consignee")}
    return states, names, roles


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=parties_and_declaration())
def test_accepted_iff_every_checked_party_is_active_and_filled_from_the_register(register: Declarations, case):
    states, names, roles = case
    for code, state in states.items():
        if state != "absent":
            register.register_party(code, names[code], f"{names[code]} Road 1", state, "admin:a")
    declarant = roles["declarant"]["id"]
    document = samples.goods(reference=f"PROP-{next(_references)}", declarant=declarant, **{
        role: value for role, value in roles.items() if role != "declarant"})
    document["declarant"] = roles["declarant"]
    checked = {role: party["id"] for role, party in roles.items() if "id" in party}
    all_active = all(states[code] == "active" for code in checked.values())
    try:
        stored = register.submit(document).declaration.document
    except InvalidDeclaration as error:
        assert not all_active, error.errors
        inactive = {f"$.{role}.id" for role, code in checked.items() if states[code] != "active"}
        assert inactive <= {found.path for found in error.errors}
        return
    assert all_active
    for role, party in roles.items():
        if role not in checked:
            assert stored[role] == party
            continue
        code = party["id"]
        assert stored[role]["id"] == code
        assert stored[role]["address"] == f"{names[code]} Road 1"  # the address was never given: filled
        assert stored[role]["name"] == party.get("name", names[code].strip())


# ---- HTTP -----------------------------------------------------------------------------------------

def test_an_admin_registers_a_party_and_a_repeat_answers_200(api: Api):
    admin = api.as_("admin")
    body = {"name": "Haixi Trading", "address": ADDRESS_A, "status": "active"}
    created = api.client.put(f"/v1/parties/{samples.TRADER_A}", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/parties/{samples.TRADER_A}"
    assert created.json() | {"registered_at": None, "updated_at": None} == {
        "uscc": samples.TRADER_A, "name": "Haixi Trading", "address": ADDRESS_A, "status": "active",
        "deregistered_at": None, "registered_at": None, "updated_at": None, "version": 1}
    again = api.client.put(f"/v1/parties/{samples.TRADER_A}", json=body, headers=admin)
    assert (again.status_code, again.json()["version"]) == (200, 1)
    gone = api.client.put(f"/v1/parties/{samples.TRADER_A}", json=body | {"status": "deregistered"}, headers=admin)
    assert (gone.status_code, gone.json()["status"]) == (200, "deregistered")
    assert gone.json()["deregistered_at"]


@pytest.mark.parametrize("claims", [{"role": "officer", "agency": "customs"},
                                    {"role": "trader", "party": samples.TRADER_A}])
def test_only_an_admin_may_put(api: Api, claims: dict[str, str]):
    answer = api.client.put(f"/v1/parties/{samples.TRADER_A}", headers=api.as_(**claims),
                            json={"name": "Mine now", "address": ADDRESS_A, "status": "active"})
    assert answer.status_code == 403
    assert api.client.get(f"/v1/parties/{samples.TRADER_A}", headers=api.as_("admin")).status_code == 404


def test_a_bad_entry_is_a_422_naming_each_field(api: Api):
    answer = api.client.put("/v1/parties/91350200MA2YQ4RK0X", headers=api.as_("admin"),
                            json={"name": " ", "address": ADDRESS_A, "status": "active"})
    assert answer.status_code == 422
    assert {error["path"] for error in answer.json()["errors"]} == {"path.uscc", "$.name"}
    answer = api.client.put(f"/v1/parties/{samples.TRADER_A}", headers=api.as_("admin"),
                            json={"name": "A", "address": ADDRESS_A, "status": "closed", "extra": 1})
    assert answer.status_code == 422
    assert {error["path"] for error in answer.json()["errors"]} == {"$.status", "$.extra"}


def test_officers_read_any_entry_a_trader_its_own_only(api: Api):
    for code in (samples.TRADER_A, samples.TRADER_B):
        api.hub.declarations.register_party(code, "Some Trading", ADDRESS_A, "active", "admin:a")
    assert api.client.get(f"/v1/parties/{samples.TRADER_B}", headers=api.as_("officer", agency="port")).status_code == 200
    own = api.client.get(f"/v1/parties/{samples.TRADER_A}", headers=api.as_("trader", party=samples.TRADER_A))
    assert (own.status_code, own.json()["uscc"]) == (200, samples.TRADER_A)
    other = api.client.get(f"/v1/parties/{samples.TRADER_B}", headers=api.as_("trader", party=samples.TRADER_A))
    unknown = api.client.get(f"/v1/parties/{_uscc(1)}", headers=api.as_("trader", party=samples.TRADER_A))
    assert other.status_code == unknown.status_code == 404
    assert other.json()["title"] == unknown.json()["title"]
    assert api.client.get(f"/v1/parties/{samples.TRADER_A}").status_code == 401


@pytest.fixture
def required_api(store: tuple[Settings, str]) -> Iterator[Api]:
    settings, schema = store
    hub = build_hub(Settings(settings.data_dir, settings.database_url, secret=SECRET, party_register="required"),
                    schema=schema)
    yield Api(hub)
    hub.close()


def test_the_api_refuses_with_a_422_naming_each_field(required_api: Api):
    api = required_api
    api.hub.declarations.register_party(samples.TRADER_A, "Haixi Trading", ADDRESS_A, "active", "admin:a")
    api.hub.declarations.register_party(samples.TRADER_B, "Lujiang Imports", ADDRESS_B, "deregistered", "admin:a")
    trader = api.as_("trader", party=samples.TRADER_A)
    refused = api.client.post("/v1/declarations", json=samples.goods(consignee=by_id(samples.TRADER_B)),
                              headers=trader)
    assert refused.status_code == 422
    assert [error["path"] for error in refused.json()["errors"]] == ["$.consignee.id"]
    assert "is deregistered since" in refused.json()["errors"][0]["message"]
    document = samples.goods()
    document["declarant"] = by_id(samples.TRADER_A)
    accepted = api.client.post("/v1/declarations", json=document, headers=trader)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["document"]["declarant"]["name"] == "Haixi Trading"
    amendment = {"expected_version": accepted.json()["version"],
                 "declaration": samples.goods(consignee={"id": samples.TRADER_B, "country": "CN"})}
    refused = api.client.post(f"/v1/declarations/{accepted.json()['id']}/amendments", json=amendment,
                              headers=trader)
    assert refused.status_code == 422
    assert "$.declaration.consignee.id" in [error["path"] for error in refused.json()["errors"]]


# ---- the import ------------------------------------------------------------------------------------

@pytest.fixture
def environment(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Settings:
    """What `tradehub` reads from the environment, for a fresh store of each kind."""
    monkeypatch.setenv("TRADEHUB_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("TRADEHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("TRADEHUB_PARTY_REGISTER", raising=False)
    return Settings.from_env()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def import_env(request: pytest.FixtureRequest, environment: Settings, monkeypatch) -> Settings:
    if request.param == "postgres":
        monkeypatch.setenv("TRADEHUB_DATABASE_URL", request.getfixturevalue("postgres_database"))
    return Settings.from_env()


def _events(settings: Settings) -> int:
    application = build_declarations(settings)
    try:
        return application.recorder.max_notification_id() or 0
    finally:
        application.close()


def test_an_import_stores_the_good_rows_and_reports_each_bad_one(import_env: Settings, tmp_path: Path, capsys):
    bad_check = samples.TRADER_A[:-1] + ("0" if samples.TRADER_A[-1] != "0" else "1")
    twice = _uscc(7)
    path = tmp_path / "register.csv"
    path.write_text("\n".join([
        "uscc,name,address,status",
        f"{samples.TRADER_A},Haixi Trading,\"{ADDRESS_A}\",active",  # row 2
        f"{bad_check},Bad Check,Somewhere,active",  # row 3
        f"{samples.TRADER_B},,Somewhere,active",  # row 4: no name
        f"{_uscc(5)},Closed Ltd,Somewhere,closed",  # row 5
        f"{twice},First,Somewhere,active",  # row 6
        f"{twice},Second,Somewhere,active",  # row 7
        f"{_uscc(8)},Gone Ltd,\"Line one, line two\",deregistered",  # row 8
    ]) + "\n", encoding="utf-8")
    assert cli.main(["parties", "import", str(path)]) == 1
    out = capsys.readouterr()
    lines = [line.removeprefix(f"{path}: ") for line in out.err.splitlines() if line.startswith(str(path))]
    assert lines[0].startswith("row 3: uscc: ") and "check digit" in lines[0]
    assert lines[1:] == ["row 4: name: is required",
                         "row 5: status: must be one of active, deregistered, got 'closed'",
                         f"row 6: uscc: {twice} is also listed in row(s) 7: list each party once",
                         f"row 7: uscc: {twice} is also listed in row(s) 6: list each party once"]
    assert "7 row(s): 2 registered, 0 changed, 0 unchanged, 5 refused" in out.out
    application = build_declarations(import_env)
    try:
        assert application.get_party(samples.TRADER_A).address == ADDRESS_A
        assert application.get_party(_uscc(8)).status == "deregistered"
        for refused in (samples.TRADER_B, _uscc(5), twice):
            with pytest.raises(PartyNotFound):
                application.get_party(refused)
    finally:
        application.close()
    stored = _events(import_env)
    assert cli.main(["parties", "import", str(path)]) == 1  # the same file again: the same refusals, no new event
    assert "0 registered, 0 changed, 2 unchanged, 5 refused" in capsys.readouterr().out
    assert _events(import_env) == stored


def test_a_json_import_updates_and_is_idempotent(import_env: Settings, tmp_path: Path, capsys):
    path = tmp_path / "register.json"
    rows = [{"uscc": samples.TRADER_A, "name": "Haixi Trading", "address": ADDRESS_A, "status": "active"},
            {"uscc": samples.TRADER_B, "name": "Lujiang Imports", "address": ADDRESS_B, "status": "active"}]
    path.write_text(json.dumps(rows))
    assert cli.main(["parties", "import", str(path)]) == 0
    rows[1]["status"] = "deregistered"
    path.write_text(json.dumps(rows + [["not", "an", "object"], {"uscc": _uscc(3), "name": "N", "address": "A",
                                                                    "status": "active", "owner": "x"}]))
    assert cli.main(["parties", "import", str(path)]) == 1
    out = capsys.readouterr()
    assert "row 3: row: is not a JSON object" in out.err and "row 4: owner: is not a known field" in out.err
    assert "4 row(s): 0 registered, 1 changed, 1 unchanged, 2 refused" in out.out
    stored = _events(import_env)
    assert cli.main(["parties", "import", str(path)]) == 1
    assert _events(import_env) == stored


@pytest.mark.parametrize(("content", "message"), [
    ("uscc,name,status\n", "the header lacks the column(s) address"),
    ("uscc,name,address,status,owner\n", "unknown column(s) owner"),
    ("", "is empty"),
    ('{"uscc": "x"}', "a JSON register is an array of objects"),
    ("[1,", "not JSON"),
])
def test_a_file_that_is_no_register_stores_nothing(environment: Settings, tmp_path: Path, capsys, content, message):
    path = tmp_path / "register.csv"
    path.write_text(content)
    assert cli.main(["parties", "import", str(path)]) == 2
    assert message in capsys.readouterr().err



# ---- what customs gets -------------------------------------------------------------------------------

def test_customs_gets_each_address_as_a_wco_address_line():
    document = samples.goods()
    document["declarant"]["address"] = ADDRESS_A
    document["consignee"]["address"] = "厦门市海沧区海沧大道1号"
    [message] = customs_messages(submitted(document), ORIGINAL)  # the mapping checks the hub's own schema
    root = etree.fromstring(message.body)
    namespaces = {"d": "urn:wco:datamodel:WCO:DEC-DMS:2"}
    assert root.xpath("//d:Declarant/d:Address/d:Line/text()", namespaces=namespaces) == [ADDRESS_A]
    assert root.xpath("//d:Consignee/d:Address/*/text()", namespaces=namespaces) == ["CN", "厦门市海沧区海沧大道1号"]
    published = etree.XMLSchema(etree.parse(str(interop("wco-dms", "wrapper.xsd"))))
    assert published.validate(root), published.error_log.last_error
    with pytest.raises(InvalidDeclaration) as error:
        submitted(samples.goods(consignee={**samples.goods()["consignee"], "address": "x" * 71}))
    assert list(refusals(error)) == ["$.consignee.address"]
