"""Tokens: what is accepted, and every way a forged or stale one is refused."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest

from tradehub.auth import (
    AUDIENCE,
    ISSUER,
    InvalidToken,
    SecretError,
    issue_token,
    resolve_secret,
    verify_token,
)

from . import samples

SECRET = "k" * 48


def test_a_trader_token_carries_its_party():
    caller = verify_token(SECRET, issue_token(SECRET, "trader", party=samples.TRADER_A))
    assert (caller.role, caller.party, caller.agency) == ("trader", samples.TRADER_A, None)


def test_an_officer_token_carries_its_agency():
    caller = verify_token(SECRET, issue_token(SECRET, "officer", agency="customs"))
    assert (caller.role, caller.agency) == ("officer", "customs")


@pytest.mark.parametrize("role, claims, message", [
    ("trader", {}, "needs --party"),
    ("trader", {"party": "91350200MA2YQ4RK0X"}, "check digit"),
    ("officer", {"agency": "police"}, "needs --agency"),
    ("admin", {"agency": "customs"}, "neither"),
    ("king", {}, "role must be one of"),
])
def test_tokens_are_only_issued_for_well_formed_roles(role, claims, message):
    with pytest.raises(ValueError, match=message):
        issue_token(SECRET, role, **claims)


def _claims(**changes):
    now = datetime.now(timezone.utc)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "admin:admin", "role": "admin", "iat": now,
              "exp": now + timedelta(hours=1), "jti": "3f1c1d6e-8d0e-4f43-9d55-6a8f2b2f1e11"}
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize("token, reason", [
    (issue_token(SECRET, "admin", ttl=timedelta(seconds=1), now=datetime(2020, 1, 1, tzinfo=timezone.utc)),
     "expired"),
    (jwt.encode(_claims(), "another-secret-of-enough-length-000000", algorithm="HS256"), "Signature"),
    (jwt.encode(_claims(aud="someone-else"), SECRET, algorithm="HS256"), "Audience"),
    (jwt.encode(_claims(iss="someone-else"), SECRET, algorithm="HS256"), "issuer"),
    (jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"), "exp"),
    (jwt.encode(_claims(role=None), SECRET, algorithm="HS256"), "role"),
    (jwt.encode(_claims(role="officer"), SECRET, algorithm="HS256"), "agency"),
    (jwt.encode(_claims(), SECRET * 2, algorithm="HS512"), "alg value is not allowed"),
    ("not.a.token", "not valid"),
])
def test_forged_stale_and_malformed_tokens_are_refused(token, reason):
    with pytest.raises(InvalidToken, match=reason):
        verify_token(SECRET, token)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, default=str).encode()).decode().rstrip("=")


def test_alg_none_is_refused():
    claims = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in _claims().items()}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_a_tampered_payload_is_refused():
    header, _, signature = issue_token(SECRET, "trader", party=samples.TRADER_A).split(".")
    claims = {k: int(v.timestamp()) if isinstance(v, datetime) else v
              for k, v in _claims(role="admin").items()}
    with pytest.raises(InvalidToken, match="Signature"):
        verify_token(SECRET, f"{header}.{_b64(claims)}.{signature}")


@pytest.mark.parametrize("secret", ["", "secret", "changeme", "short-but-not-in-the-list"])
def test_a_missing_or_weak_secret_is_refused_outside_a_demo(secret: str, tmp_path: Path):
    with pytest.raises(SecretError):
        resolve_secret(secret, tmp_path, demo=False)
    assert not (tmp_path / "secret").exists()


def test_a_demo_generates_its_secret_once_and_keeps_it_private(tmp_path: Path):
    first = resolve_secret("", tmp_path, demo=True)
    assert resolve_secret("", tmp_path, demo=True) == first and len(first) >= 32
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_a_configured_secret_wins_over_the_demo(tmp_path: Path):
    assert resolve_secret(SECRET, tmp_path, demo=True) == SECRET
    assert not (tmp_path / "secret").exists()
