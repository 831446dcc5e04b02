"""Token ids, revocation and lifetime ceilings: a revoked token is refused by the API and the pages, in every
process, and no token lives longer than its kind allows, whoever issued it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradehub.api.app import create_app
from tradehub.auth import (
    AUDIENCE,
    CEILINGS,
    ISSUER,
    InvalidToken,
    Revocations,
    issue_token,
    parse_ttl,
    token_id,
    verify_token,
)
from tradehub.bootstrap import Hub
from tradehub.web import install_pages
from tradehub.web.pages import SESSION_COOKIE

from . import samples
from .conftest import SECRET


@pytest.fixture(autouse=True)
def quick_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests read the revocations every 50 ms rather than every second."""
    monkeypatch.setattr(Revocations, "REFRESH", 0.05)


def tradehub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradehub.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- revocation -----------------------------------------------------------------------------------

def test_a_revoked_token_is_refused_by_the_api_and_the_pages_and_others_are_not(hub: Hub):
    client = TestClient(install_pages(create_app(hub), hub))
    revoked, kept = issue_token(SECRET, "admin"), issue_token(SECRET, "admin")
    for token in (revoked, kept):  # both verified, and remembered by the verifier's cache
        assert client.get("/v1/declarations", headers=bearer(token)).status_code == 200
        client.cookies.set(SESSION_COOKIE, token)
        assert client.get("/board", follow_redirects=False).status_code == 200
    # Another process's view of the same database: as `tradehub token revoke` writes it.
    assert Revocations(hub.views).revoke(token_id(revoked)) is True
    assert Revocations(hub.views).revoke(token_id(revoked)) is False  # twice is once
    time.sleep(2 * Revocations.REFRESH)

    refused = client.get("/v1/declarations", headers=bearer(revoked))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert refused.headers["content-type"] == "application/problem+json"
    client.cookies.set(SESSION_COOKIE, revoked)
    page = client.get("/board", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")
    client.cookies.clear()
    again = client.post("/sign-in", data={"token": revoked}, follow_redirects=False)
    assert again.status_code == 401 and "revoked" in again.text

    assert client.get("/v1/declarations", headers=bearer(kept)).status_code == 200
    client.cookies.set(SESSION_COOKIE, kept)
    assert client.get("/board", follow_redirects=False).status_code == 200


def test_revocations_older_than_every_ceiling_are_forgotten(hub: Hub):
    revocations = Revocations(hub.views)
    long_ago = datetime.now(timezone.utc) - max(CEILINGS.values()) - timedelta(hours=1)
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    revocations.revoke(old, now=long_ago)
    revocations.revoke(recent)
    revocations.refresh()
    assert recent in revocations and old not in revocations


def test_token_issue_prints_the_bare_token_and_its_id_apart_and_revoke_takes_either(tmp_path: Path):
    env = dict(os.environ, TRADEHUB_SECRET=SECRET, TRADEHUB_DATA_DIR=str(tmp_path))
    env.pop("TRADEHUB_DATABASE_URL", None)
    issued = tradehub("token", "issue", "--role", "trader", "--party", samples.TRADER_A, "--kind", "machine",
                      "--ttl", "30d", env=env)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert token_id(token) in issued.stderr

    revoked = tradehub("token", "revoke", token_id(token), env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stderr, revoked.stderr
    again = tradehub("token", "revoke", token, env=env)
    assert again.returncode == 0 and "already revoked" in again.stderr
    garbage = tradehub("token", "revoke", "not-an-id", env=env)
    assert garbage.returncode == 2 and "neither a token id" in garbage.stderr and "Traceback" not in garbage.stderr


# ---- ceilings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, claims, kind, ttl, refusal", [
    ("officer", {"agency": "customs"}, "person", "12h", None),
    ("officer", {"agency": "customs"}, "person", "721m", "over the ceiling for a person's token, 12 hours"),
    ("trader", {"party": samples.TRADER_A}, "machine", "30d", None),
    ("trader", {"party": samples.TRADER_A}, "machine", "31d", "over the ceiling for a machine's token, 30 days"),
    ("admin", {}, "machine", "1h", "always a person's"),
    ("admin", {}, "person", "13h", "12 hours"),
])
def test_token_issue_refuses_a_lifetime_over_its_kinds_ceiling(tmp_path: Path, role: str, claims: dict[str, str],
                                                               kind: str, ttl: str, refusal: str | None):
    env = dict(os.environ, TRADEHUB_SECRET=SECRET, TRADEHUB_DATA_DIR=str(tmp_path))
    flags = [f"--{name}={value}" for name, value in claims.items()]
    result = tradehub("token", "issue", "--role", role, *flags, "--kind", kind, "--ttl", ttl, env=env)
    if refusal is None:
        assert result.returncode == 0, result.stderr
        caller = verify_token(SECRET, result.stdout.strip())
        assert caller.expires - time.time() == pytest.approx(parse_ttl(ttl).total_seconds(), abs=30)
    else:
        assert result.returncode == 2 and refusal in result.stderr and not result.stdout
        assert "Traceback" not in result.stderr


def forged(lifetime: timedelta, **claims: object) -> str:
    """A token signed with the hub's secret (as an older hub issued them) with any lifetime."""
    now = datetime.now(timezone.utc)
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "admin:admin", "role": "admin", "iat": now,
            "exp": now + lifetime, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode({key: value for key, value in body.items() if value is not None}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("token, refusal", [
    (forged(timedelta(days=7)), "over the ceiling for a person's token"),  # an admin's, from before kinds
    (forged(timedelta(hours=13), kind="person"), "over the ceiling for a person's token"),
    (forged(timedelta(days=31), role="trader", party=samples.TRADER_A, sub="trader:x"),
     "over the ceiling for a machine's token"),
    (forged(timedelta(days=365), role="trader", party=samples.TRADER_A, kind="machine"), "365 days"),
    (forged(timedelta(hours=1), kind="machine"), "always a person's"),
    (forged(timedelta(hours=1), kind="robot"), "kind must be one of"),
    (forged(timedelta(hours=1), jti=None), "jti"),
    (forged(timedelta(hours=1), jti="not-a-uuid"), "not valid"),
])
def test_the_api_refuses_a_token_living_longer_than_its_ceiling_or_without_an_id(api, token: str, refusal: str):
    with pytest.raises(InvalidToken, match=refusal):
        verify_token(SECRET, token)
    answer = api.client.get("/v1/declarations", headers=bearer(token))
    assert answer.status_code == 401 and refusal in answer.json()["detail"]


def test_tokens_of_an_older_hub_within_the_ceilings_still_work(api):
    trader = forged(timedelta(days=20), role="trader", party=samples.TRADER_A, sub="trader:x")
    admin = forged(timedelta(hours=8))
    assert api.client.get("/v1/declarations", headers=bearer(trader)).status_code == 200
    assert api.client.get("/v1/declarations", headers=bearer(admin)).status_code == 200


# ---- --ttl parsing and the ceilings, as properties ------------------------------------------------

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@given(st.text(max_size=12))
def test_any_ttl_text_is_a_lifetime_or_a_refusal_naming_ttl(text: str):
    try:
        lifetime = parse_ttl(text)
    except ValueError as error:
        assert str(error).startswith("--ttl must look like")
    else:
        assert lifetime.total_seconds() == int(text[:-1]) * UNITS[text[-1]]


@given(st.integers(min_value=0, max_value=9_999_999), st.sampled_from(sorted(UNITS)))
def test_every_well_formed_ttl_parses_to_its_seconds(number: int, unit: str):
    assert parse_ttl(f"{number}{unit}").total_seconds() == number * UNITS[unit]


@given(seconds=st.integers(min_value=1, max_value=40 * 86400), kind=st.sampled_from(["person", "machine"]))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_a_token_is_issued_exactly_when_its_lifetime_is_within_the_ceiling_and_then_verifies(seconds: int, kind: str):
    lifetime = timedelta(seconds=seconds)
    try:
        token = issue_token(SECRET, "officer", agency="customs", ttl=lifetime, kind=kind)
    except ValueError as error:
        assert lifetime > CEILINGS[kind] and "over the ceiling" in str(error)
    else:
        assert lifetime <= CEILINGS[kind]
        assert verify_token(SECRET, token).token_id == token_id(token)


# ---- across processes -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.postgres
def test_a_revocation_reaches_every_worker_process_of_serve(postgres_database: str, tmp_path: Path):
    from .test_server import Server, free_port

    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET=SECRET,
               TRADEHUB_DATABASE_URL=postgres_database)
    env.pop("TRADEHUB_BROKER_URL", None)
    server = Server(env, free_port(), "--workers", "2", "--no-dispatch")
    try:
        token = server.token("--role", "admin")
        # Fresh connections spread over both workers, each of which verifies and remembers the token.
        assert {httpx.get(f"{server.url}/v1/declarations", headers=bearer(token)).status_code
                for _ in range(20)} == {200}
        revoked = tradehub("token", "revoke", token_id(token), env=env)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(Revocations.REFRESH * 20 + 1.5)  # the served hub reads them every second (not patched there)
        answers = [httpx.get(f"{server.url}/v1/declarations", headers=bearer(token)) for _ in range(20)]
        assert {answer.status_code for answer in answers} == {401}
        assert all("revoked" in answer.json()["detail"] for answer in answers)
    finally:
        server.stop()
