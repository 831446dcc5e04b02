"""The licence registry through the API, the CLI and the pages, on SQLite and PostgreSQL (docs/licences.md).

What must hold: only an admin or an officer of the issuer issues (and revokes, suspends, reinstates), and the
hub signs what it issues (a body with a signature is refused); a trader sees its own licences only, and any
other answers exactly as an unknown number does; the remaining quantity the API reports is always the quantity
less what is reserved and consumed, whatever sequence of submissions, amendments and withdrawals came before;
declarations citing licences they may not use are refused by path; the import stores the good rows, reports
each bad one by row and field, and changes nothing when run again; the pages show the bar and the ledger, and
no licence of another holder.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.keyring import Registry
from adapters.licences import canonical
from hub.declarations import licence_id
from tradehub.bootstrap import Hub, Settings, build_declarations
from tradehub.cli import main

from . import samples
from .conftest import Api
from .test_web import Browser

TODAY = datetime.now(UTC).date()
TRADER_A, TRADER_B = samples.TRADER_A, samples.TRADER_B


def licence(number: str = "IL-2026/0001", issuer: str = "commerce", holder: str = TRADER_A,
            **changes: Any) -> dict[str, Any]:
    return {"number": number, "type": "import_licence", "issuer": issuer, "holder": holder, "hs_scope": ["8479"],
            "quantity": "10", "unit": "H87", "valid_from": (TODAY - timedelta(days=30)).isoformat(),
            "valid_to": (TODAY + timedelta(days=365)).isoformat(), **changes}


def citing(reference: str, number: str, quantity: str, *, declarant: str = TRADER_A, unit: str = "H87",
           issuer: str | None = None) -> dict[str, Any]:
    document = samples.goods(reference, declarant)
    document["items"][0]["licences"] = [{"number": number, "quantity": quantity, "unit": unit,
                                         **({"issuer": issuer} if issuer else {})}]
    return document


def issue(api: Api, fields: dict[str, Any], role: str = "admin", **claims: str):
    return api.client.post("/v1/licences", json=fields, headers=api.as_(role, **claims))


def read(api: Api, number: str, role: str = "admin", issuer: str | None = None, **claims: str):
    return api.client.get(f"/v1/licences/{quote(number, safe='')}", params={"issuer": issuer} if issuer else None,
                          headers=api.as_(role, **claims))


def followed(hub: Hub) -> None:
    """The views caught up with the log, including what the followers themselves appended to it (the licensing
    process's returns)."""
    while hub.runner.catch_up():
        pass


def errors_of(response) -> dict[str, str]:
    return {error["path"]: error["message"] for error in response.json()["errors"]}


# ---- issuing -------------------------------------------------------------------------------------------------

def test_an_admin_issues_a_licence_the_hub_signs_and_reads_it_back(api: Api):
    created = issue(api, licence())
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == "/v1/licences/IL-2026%2F0001?issuer=commerce"
    assert body["signature"]["format"] == "jws" and len(body["signature"]["key"]) == 64
    assert body["issued_by"] == "admin:admin" and body["source"] == "api"
    assert (body["status"], body["remaining"], body["reserved"], body["consumed"]) == ("valid", "10", "0", "0")
    assert "value" not in body["signature"]
    stored = api.hub.declarations.get_licence("IL-2026/0001")
    api.hub.declarations.seal.verify("commerce", stored.content(), stored.signature)  # the hub's own signature
    again = issue(api, licence())
    assert again.status_code == 200 and again.json()["signature"] == body["signature"]
    other = issue(api, licence(quantity="11"))
    assert other.status_code == 409, other.text
    fetched = read(api, "IL-2026/0001")
    assert fetched.status_code == 200
    assert {key: fetched.json()[key] for key in licence()} == licence()
    assert fetched.json()["ledger"] == []


def test_an_officer_issues_for_its_own_agency_only_and_a_trader_never(api: Api):
    certificate = licence("HC-1", issuer="inspection", type="health_certificate")
    assert issue(api, certificate, "officer", agency="customs").status_code == 403
    assert issue(api, licence("IL-9"), "officer", agency="inspection").status_code == 403  # commerce's
    assert issue(api, certificate, "trader", party=TRADER_A).status_code == 403
    assert read(api, "HC-1").status_code == 404  # none of it was stored
    done = issue(api, certificate, "officer", agency="inspection")
    assert done.status_code == 201 and done.json()["issued_by"] == "officer:inspection"


def test_a_body_with_a_signature_is_refused_and_stores_nothing(api: Api):
    forged = {**licence(), "signature": {"format": "jws", "value": "a.b.c", "key": "0" * 64}}
    response = issue(api, forged)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "hub signs" in errors_of(response)["$.signature"]
    also_wrong = issue(api, {**licence(quantity="-1"), "signature": "x"})
    assert set(errors_of(also_wrong)) == {"$.signature", "$.quantity"}
    assert read(api, "IL-2026/0001").status_code == 404


def test_each_invalid_field_is_named_by_path(api: Api):
    response = issue(api, licence(type="fishing_permit", holder="123", hs_scope=["8479", "847"], quantity="1.5e3",
                                  unit="KILO", valid_to=(TODAY - timedelta(days=60)).isoformat(), colour="red"))
    assert response.status_code == 422
    assert set(errors_of(response)) == {"$.type", "$.holder", "$.hs_scope[1]", "$.quantity", "$.unit", "$.valid_to",
                                        "$.colour"}
    assert issue(api, [licence()]).status_code == 422


def test_an_oversized_body_is_refused_before_it_is_read(api: Api):
    body = json.dumps(licence(hs_scope=["8479"] * 60_000)).encode()
    assert len(body) > api.hub.settings.max_body_bytes
    response = api.client.post("/v1/licences", content=body, headers={**api.as_("admin"),
                                                                      "Content-Type": "application/json"})
    assert response.status_code == 413


# ---- who sees what -------------------------------------------------------------------------------------------

def test_a_trader_sees_its_own_licences_only_and_another_reads_as_unknown(api: Api):
    assert issue(api, licence("A-1")).status_code == 201
    assert issue(api, licence("B-1", holder=TRADER_B)).status_code == 201
    api.sync()
    trader = {"role": "trader", "party": TRADER_A}
    assert read(api, "A-1", **trader).status_code == 200
    hidden, unknown = read(api, "B-1", **trader), read(api, "C-1", **trader)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["title"] == unknown.json()["title"]
    assert hidden.json()["detail"].replace("B-1", "C-1") == unknown.json()["detail"]
    own = api.client.get("/v1/licences", headers=api.as_(**trader)).json()
    assert [item["number"] for item in own["items"]] == ["A-1"]
    others = api.client.get("/v1/licences", params={"holder": TRADER_B}, headers=api.as_(**trader)).json()
    assert others["items"] == []
    officer = api.client.get("/v1/licences", headers=api.as_("officer", agency="port")).json()
    assert [item["number"] for item in officer["items"]] == ["A-1", "B-1"]
    assert read(api, "B-1", "officer", agency="port").status_code == 200  # mutual recognition


def test_the_list_pages_through_every_licence_once(api: Api):
    numbers = [f"L-{index:02}" for index in range(7)]
    for number in numbers:
        assert issue(api, licence(number)).status_code == 201
    api.sync()
    seen, cursor = [], None
    while True:
        page = api.client.get("/v1/licences", params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                              headers=api.as_("admin")).json()
        seen += [item["number"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == numbers
    bad = api.client.get("/v1/licences", params={"cursor": "not-ours"}, headers=api.as_("admin"))
    assert bad.status_code == 422 and "query.cursor" in errors_of(bad)


def test_a_number_two_issuers_use_needs_the_issuer_unless_the_caller_sees_one(api: Api):
    assert issue(api, licence("X-1")).status_code == 201
    assert issue(api, licence("X-1", issuer="customs", holder=TRADER_B)).status_code == 201
    ambiguous = read(api, "X-1")
    assert ambiguous.status_code == 409 and "issuer" in ambiguous.json()["detail"]
    assert sorted(ambiguous.json()["issuers"]) == ["commerce", "customs"]
    assert read(api, "X-1", issuer="customs").json()["holder"] == TRADER_B
    mine = read(api, "X-1", "trader", party=TRADER_A)  # the trader sees only commerce's: no ambiguity for it
    assert mine.status_code == 200 and mine.json()["issuer"] == "commerce"
    assert read(api, "X-1", "trader", issuer="customs", party=TRADER_A).status_code == 404


# ---- revoking, suspending, reinstating ----------------------------------------------------------------------

def test_revocation_is_for_an_admin_or_the_issuers_officers_and_refuses_later_citations(api: Api):
    assert issue(api, licence("R-1", issuer="customs")).status_code == 201

    def revoke(role: str, **claims: str):
        return api.client.post("/v1/licences/R-1/revocation", json={"reason": "obtained by fraud"},
                               headers=api.as_(role, **claims))

    assert revoke("officer", agency="inspection").status_code == 403
    assert revoke("trader", party=TRADER_A).status_code == 403  # the holder sees it, but may not revoke it
    assert revoke("trader", party=TRADER_B).status_code == 404
    assert api.client.post("/v1/licences/R-1/revocation", json={"reason": ""},
                           headers=api.as_("admin")).status_code == 422
    done = revoke("officer", agency="customs")
    assert done.status_code == 200
    assert done.json()["status"] == "revoked"
    assert done.json()["revoked"]["by"] == "officer:customs"
    refused = api.client.post("/v1/declarations", json=citing("REV-1", "R-1", "1"),
                              headers=api.as_("trader", party=TRADER_A))
    assert refused.status_code == 422
    assert "revoked" in errors_of(refused)["$.items[0].licences[0].number"]
    reinstated = api.client.post("/v1/licences/R-1/reinstatement", json={"reason": "appeal"},
                                 headers=api.as_("admin"))
    assert reinstated.status_code == 409


def test_suspension_refuses_citations_until_reinstated(api: Api):
    assert issue(api, licence("S-1")).status_code == 201
    trader = api.as_("trader", party=TRADER_A)
    suspended = api.client.post("/v1/licences/S-1/suspension", json={"reason": "audit"}, headers=api.as_("admin"))
    assert suspended.json()["status"] == "suspended"
    refused = api.client.post("/v1/declarations", json=citing("SUS-1", "S-1", "1"), headers=trader)
    assert "suspended" in errors_of(refused)["$.items[0].licences[0].number"]
    assert api.client.post("/v1/licences/S-1/reinstatement", json={"reason": "audit passed"},
                           headers=api.as_("admin")).json()["status"] == "valid"
    assert api.client.post("/v1/declarations", json=citing("SUS-1", "S-1", "1"), headers=trader).status_code == 201


# ---- declarations citing licences through the API -----------------------------------------------------------

def test_refused_citations_come_out_as_422_by_path_on_submit_and_amend(api: Api):
    assert issue(api, licence("Q-1")).status_code == 201
    trader = api.as_("trader", party=TRADER_A)
    too_much = api.client.post("/v1/declarations", json=citing("Q-DEC", "Q-1", "11"), headers=trader)
    assert too_much.status_code == 422
    assert errors_of(too_much)["$.items[0].licences[0].quantity"].startswith("insufficient: 10 H87 remain")
    wrong_unit = api.client.post("/v1/declarations", json=citing("Q-DEC", "Q-1", "1", unit="KGM"), headers=trader)
    assert "$.items[0].licences[0].unit" in errors_of(wrong_unit)
    not_holder = api.client.post("/v1/declarations", json=citing("Q-B", "Q-1", "1", declarant=TRADER_B),
                                 headers=api.as_("trader", party=TRADER_B))
    assert "held by" in errors_of(not_holder)["$.items[0].licences[0].number"]
    unknown = api.client.post("/v1/declarations", json=citing("Q-DEC", "NOPE", "1"), headers=trader)
    assert "$.items[0].licences[0].number" in errors_of(unknown)
    created = api.client.post("/v1/declarations", json=citing("Q-DEC", "Q-1", "4"), headers=trader)
    assert created.status_code == 201
    amended = api.client.post(f"/v1/declarations/{created.json()['id']}/amendments", headers=trader,
                              json={"expected_version": 1, "declaration": citing("Q-DEC", "Q-1", "12")})
    assert amended.status_code == 422
    assert "$.declaration.items[0].licences[0].quantity" in errors_of(amended)
    assert read(api, "Q-1").json()["remaining"] == "6"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(["submit", "amend", "withdraw"]), st.integers(0, 2),
                                st.integers(1, 7)), min_size=1, max_size=8))
def test_remaining_is_always_quantity_less_reserved_and_consumed(api: Api, steps: list[tuple[str, int, int]]):
    """Random submissions, amendments and withdrawals through the API: after each, GET's remaining equals the
    quantity less reserved and consumed, and equals the quantity less what the open declarations cite."""
    number = f"P-{uuid.uuid4().hex[:12]}"
    assert issue(api, licence(number)).status_code == 201
    trader = api.as_("trader", party=TRADER_A)
    open_: dict[int, tuple[str, int, int]] = {}  # slot -> (declaration id, version, quantity cited)
    closed: set[int] = set()
    for action, slot, quantity in steps:
        others = sum(cited for other, (_, _, cited) in open_.items() if other != slot)
        reference = f"{number}-{slot}"
        if action == "submit" and slot not in open_ and slot not in closed:
            response = api.client.post("/v1/declarations", json=citing(reference, number, str(quantity)),
                                       headers=trader)
            assert response.status_code == (201 if quantity <= 10 - others else 422), response.text
            if response.status_code == 201:
                open_[slot] = (response.json()["id"], 1, quantity)
        elif action == "amend" and slot in open_:
            ident, version, _ = open_[slot]
            response = api.client.post(f"/v1/declarations/{ident}/amendments", headers=trader, json={
                "expected_version": version, "declaration": citing(reference, number, str(quantity))})
            assert response.status_code == (200 if quantity <= 10 - others else 422), response.text
            if response.status_code == 200:
                open_[slot] = (ident, response.json()["version"], quantity)
        elif action == "withdraw" and slot in open_:
            ident, _, _ = open_.pop(slot)
            closed.add(slot)
            response = api.client.post(f"/v1/declarations/{ident}/withdrawal", json={"reason": "changed plans"},
                                       headers=trader)
            assert response.status_code == 200, response.text
        followed(api.hub)  # the licensing process gives back what withdrawals free, and the view sees it
        body = read(api, number).json()
        assert remaining_of(body) == body["remaining"]
        assert body["remaining"] == str(10 - sum(cited for _, _, cited in open_.values()))
        [row] = api.client.get("/v1/licences", params={"number": number}, headers=api.as_("admin")).json()["items"]
        assert (row["remaining"], row["reserved"], row["consumed"]) == (body["remaining"], body["reserved"],
                                                                          body["consumed"])


def remaining_of(body: dict[str, Any]) -> str:
    from decimal import Decimal

    value = Decimal(body["quantity"]) - Decimal(body["reserved"]) - Decimal(body["consumed"])
    return format(value.normalize(), "f")


def test_the_ledger_is_read_from_the_store_at_once(api: Api):
    assert issue(api, licence("G-1")).status_code == 201
    created = api.client.post("/v1/declarations", json=citing("G-DEC", "G-1", "3"),
                              headers=api.as_("trader", party=TRADER_A))
    ledger = read(api, "G-1").json()["ledger"]  # no sync: not from the view
    assert [(entry["kind"], entry["declaration_id"], entry["quantity"]) for entry in ledger] == [
        ("reserved", created.json()["id"], "3")]


# ---- the import command ----------------------------------------------------------------------------------------

@pytest.fixture
def environment(store: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch, request) -> Settings:
    """The environment a `tradehub` command reads, naming a fresh store of each kind."""
    settings, _ = store
    if settings.database_url:
        settings = Settings(data_dir=settings.data_dir, database_url=request.getfixturevalue("postgres_database"))
    monkeypatch.setenv("TRADEHUB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TRADEHUB_DATABASE_URL", settings.database_url)
    return settings


def own_key(settings: Settings, issuer: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """An issuer's own key, its certificate registered with the hub: (key, fingerprint)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer} licensing")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    Registry(settings.keys_dir).register(issuer, certificate.public_bytes(serialization.Encoding.PEM))
    return key, hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def own_jws(key: ec.EllipticCurvePrivateKey, fingerprint: str, content: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'ES256', 'kid': fingerprint}).encode())}.{b64(canonical(content))}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def csv_file(path: Path, rows: list[dict[str, Any]]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["number", "type", "issuer", "holder", "hs_scope", "quantity", "unit", "valid_from",
                                  "valid_to", "signature"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "hs_scope": ";".join(row["hs_scope"]) if isinstance(row["hs_scope"], list)
                         else row["hs_scope"]})
    path.write_text(out.getvalue())
    return path


def test_the_import_stores_good_rows_and_reports_each_bad_one_by_row_and_field(
        environment: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    key, fingerprint = own_key(environment, "cnca")
    ccc = licence("CCC-2026-01", issuer="cnca", type="ccc_certificate", hs_scope=["8471", "847330"])
    forged = licence("CCC-2026-02", issuer="cnca", type="ccc_certificate")
    rows = [
        licence("IMP-1"),                                                    # line 2: good, the hub signs
        {**ccc, "signature": own_jws(key, fingerprint, ccc)},                # 3: good, cnca's own signature
        licence("IMP-2", type="fishing_permit"),                             # 4: type
        licence("IMP-3", hs_scope="84 7"),                                   # 5: hs_scope[1]
        licence("IMP-4", quantity="ten"),                                    # 6: quantity
        licence("IMP-5", unit="KILO"),                                       # 7: unit
        licence("IMP-6", valid_to=(TODAY - timedelta(days=365)).isoformat()),  # 8: valid_to before valid_from
        licence("IMP-7", holder="91350200MA2YQ4RK0X"),                       # 9: holder check digit
        licence("IMP-8", issuer="martians"),                                 # 10: issuer
        {**forged, "signature": own_jws(key, fingerprint, {**forged, "quantity": "99"})},  # 11: signature
        licence("IMP-9", quantity="5"),                                      # 12 and 13: one licence, two contents
        licence("IMP-9", quantity="6"),
        licence("IMP-1"),                                                    # 14: a repeat of row 2: fine
        {**licence("IMP-10"), "signature": "not a jws"},                     # 15: signature
    ]
    path = csv_file(tmp_path / "licences.csv", rows)
    assert main(["licences", "import", str(path)]) == 1
    captured = capsys.readouterr()
    reported = {(int(match[0]), match[1]) for match in re.findall(r"row (\d+): ([^:]+):", captured.err)}
    assert reported == {(4, "type"), (5, "hs_scope[1]"), (6, "quantity"), (7, "unit"), (8, "valid_to"),
                        (9, "holder"), (10, "issuer"), (11, "signature"), (12, "number"), (13, "number"),
                        (15, "signature")}, captured.err
    assert "14 row(s): 2 issued, 1 unchanged, 11 refused" in captured.out
    declarations = build_declarations(environment)
    try:
        stored = declarations.get_licence("CCC-2026-01", "cnca")
        assert stored.signature["key"] == fingerprint and stored.source == "import"
        assert stored.hs_scope == ["8471", "847330"]
        assert declarations.get_licence("IMP-1").issued_by == "import:licences.csv"
        assert declarations.get_licence("IMP-1").signature["key"] != fingerprint  # the hub's key for commerce
        for number in ("IMP-2", "IMP-3", "IMP-4", "IMP-5", "IMP-6", "IMP-7", "IMP-9", "IMP-10"):
            assert not list(declarations.events.get(licence_id("commerce", number)))
        assert not list(declarations.events.get(licence_id("cnca", "CCC-2026-02")))
    finally:
        declarations.close()
    assert main(["licences", "import", str(path)]) == 1  # again: the same refusals, nothing new
    assert "14 row(s): 0 issued, 3 unchanged, 11 refused" in capsys.readouterr().out


def test_the_import_reads_a_json_array_and_refuses_what_is_no_file_of_licences(
        environment: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "licences.json"
    path.write_text(json.dumps([licence("J-1"), "not an object", {**licence("J-2"), "colour": "red"}]))
    assert main(["licences", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert "row 2: row: is not a JSON object" in err and "row 3: colour:" in err
    for content, reason in [("{}", "array of objects"), ("number,type\n1,x\n", "lacks the column"),
                            ("\xff".encode("latin-1"), "not valid UTF-8")]:
        bad = tmp_path / "bad"
        bad.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert main(["licences", "import", str(bad)]) == 2
        assert reason in capsys.readouterr().err


# ---- the API clients: show and list ---------------------------------------------------------------------------

def test_show_and_list_print_what_the_api_gives_the_token(api: Api, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]):
    import tradehub.licences as commands

    assert issue(api, licence("SH-1")).status_code == 201
    assert issue(api, licence("SH-2", holder=TRADER_B)).status_code == 201
    api.client.post("/v1/declarations", json=citing("SH-DEC", "SH-1", "2"), headers=api.as_("trader", party=TRADER_A))
    api.sync()
    monkeypatch.setattr(commands, "_client", lambda url, token: TestClient(
        api.client.app, headers={"Authorization": f"Bearer {token}"}))
    token = api.as_("trader", party=TRADER_A)["Authorization"].split()[1]
    assert main(["licences", "show", "SH-1", "--token", token]) == 0
    out = capsys.readouterr().out
    assert "8 remaining, 2 reserved, 0 consumed" in out and "reserved" in out.splitlines()[-1]
    assert main(["licences", "list", "--token", token]) == 0
    out = capsys.readouterr().out
    assert "SH-1" in out and "SH-2" not in out
    assert main(["licences", "show", "SH-2", "--token", token]) == 2
    assert "404 No such licence" in capsys.readouterr().err


# ---- the pages -------------------------------------------------------------------------------------------------

@pytest.fixture
def browser(hub: Hub) -> Browser:
    return Browser(hub)


def test_the_licences_page_shows_the_bar_and_the_ledger_with_links(browser: Browser):
    app = browser.hub.declarations
    app.issue_licence(licence("W-1"), "admin:admin")
    app.issue_licence(licence("W-2", holder=TRADER_B), "admin:admin")
    kept = app.submit(citing("W-DEC-1", "W-1", "3")).declaration
    gone = app.submit(citing("W-DEC-2", "W-1", "2")).declaration
    app.withdraw(gone.id, "changed plans")
    app.settle_licences(kept.id, kept.version, "released", [licence_id("commerce", "W-1")])  # as release does
    followed(browser.hub)
    browser.sign_in("trader", party=TRADER_A)
    listing = browser.get("/licences")
    assert listing.status_code == 200 and CSP in listing.headers["content-security-policy"]
    assert "W-1" in listing.text and "W-2" not in listing.text
    assert 'class="licence-bar"' in listing.text
    assert re.findall(r"<script[^>]*>", listing.text) == ['<script src="/static/live.js" defer>']  # the one script
    assert re.search(r'class="q-consumed" x="0.0" y="0" width="30.0"', listing.text), listing.text
    assert re.search(r'class="q-remaining" x="30.0" y="0" width="70.0"', listing.text)
    detail = browser.get("/licences/W-1?issuer=commerce")
    assert detail.status_code == 200
    assert "7 H87" in detail.text and "verified" in detail.text
    for kind in ("reserved", "returned", "consumed"):
        assert f'<tr class="l-{kind}">' in detail.text
    assert f'href="/declarations/{kept.id}"' in detail.text and f'href="/declarations/{gone.id}"' in detail.text
    assert browser.get("/licences/W-2?issuer=commerce").status_code == 404
    assert browser.get("/licences/W-2").status_code == 404
    assert browser.get("/licences?holder=" + TRADER_B).text.count("W-2") == 0


def test_the_declaration_page_shows_each_cited_licence_with_its_verification(browser: Browser):
    app = browser.hub.declarations
    app.issue_licence(licence("V-1"), "admin:admin")
    declaration = app.submit(citing("V-DEC", "V-1", "1")).declaration
    browser.hub.runner.catch_up()
    browser.sign_in("admin")
    page = browser.get(f"/declarations/{declaration.id}")
    assert page.status_code == 200
    assert 'id="licences"' in page.text and 'href="/licences/V-1?issuer=commerce"' in page.text
    assert '<span class="verdict good">verified</span>' in page.text
    app.revoke_licence("V-1", "commerce", "admin:admin", "fraud")
    page = browser.get(f"/declarations/{declaration.id}")
    assert "not verified: the licence is revoked" in page.text
    board = browser.get("/board")
    assert '<a href="/licences"' in board.text


CSP = "default-src 'self'"
