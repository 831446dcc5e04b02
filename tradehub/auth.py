"""Bearer tokens: who the caller is. What a caller may see and do is tradehub/visibility.py's to decide.

Tokens are JWTs signed with HS256 and the hub's secret; issuer, audience,
expiry, subject and role are required and the algorithm is pinned, so
`alg=none`, algorithm confusion, expired and tampered tokens are all refused.
A trader is bound to a USCC, an officer to an agency, an admin to neither.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt

from hub.declarations import AGENCIES
from hub.declarations.values import uscc

ISSUER = "tradehub"
AUDIENCE = "tradehub-api"
ALGORITHM = "HS256"
ROLES = ("trader", "officer", "admin")
MIN_SECRET_LENGTH = 32
_WEAK = {"secret", "changeme", "change-me", "default", "tradehub", "password"}


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired, or not signed by this hub."""


class SecretError(ValueError):
    """The signing secret is missing or too weak to run a real hub."""


@dataclass(frozen=True)
class Caller:
    role: str
    subject: str
    party: str | None = None
    agency: str | None = None
    expires: float = 0.0  # POSIX time the token stops being valid


def issue_token(secret: str, role: str, *, party: str | None = None, agency: str | None = None,
                ttl: timedelta = timedelta(hours=8), now: datetime | None = None) -> str:
    """A signed token for one role; raises ValueError naming what is wrong."""
    claims = _role_claims(role, party, agency)
    issued = now or datetime.now(timezone.utc)
    if ttl <= timedelta(0):
        raise ValueError("the token lifetime must be positive")
    subject = claims.get("party") or claims.get("agency") or "admin"
    claims |= {"iss": ISSUER, "aud": AUDIENCE, "sub": f"{role}:{subject}", "iat": issued,
               "exp": issued + ttl, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Caller:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                            options={"require": ["exp", "iat", "iss", "aud", "sub", "role"]})
        role_claims = _role_claims(claims["role"], claims.get("party"), claims.get("agency"))
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except (jwt.InvalidTokenError, ValueError, TypeError) as error:
        raise InvalidToken(f"the token is not valid: {error}") from None
    return Caller(subject=claims["sub"], expires=float(claims["exp"]), **role_claims)


class TokenVerifier:
    """Verifies tokens, remembering recent good ones until they expire.

    A client sends the same token with every request, and checking an HMAC
    signature and its claims costs more than the rest of a small request.
    Only tokens that passed `verify_token` with this secret are remembered,
    and expiry is checked again on every use.
    """

    def __init__(self, secret: str, size: int = 4096) -> None:
        self.secret = secret
        self.size = size
        self._known: OrderedDict[str, Caller] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Caller:
        now = time.time()
        with self._lock:
            caller = self._known.get(token)
            if caller is not None and caller.expires > now:
                self._known.move_to_end(token)
                return caller
        caller = verify_token(self.secret, token)
        with self._lock:
            self._known[token] = caller
            if len(self._known) > self.size:
                self._known.popitem(last=False)
        return caller


def _role_claims(role: str, party: str | None, agency: str | None) -> dict[str, str]:
    if role == "trader":
        if not party or agency:
            raise ValueError("a trader token needs --party USCC and no agency")
        return {"role": role, "party": uscc(party)}
    if role == "officer":
        if agency not in AGENCIES or party:
            raise ValueError(f"an officer token needs --agency, one of {', '.join(AGENCIES)}")
        return {"role": role, "agency": agency}
    if role == "admin":
        if party or agency:
            raise ValueError("an admin token takes neither party nor agency")
        return {"role": role}
    raise ValueError(f"role must be one of {', '.join(ROLES)}")


def check_secret(secret: str) -> str:
    if not secret:
        raise SecretError("TRADEHUB_SECRET is not set")
    if secret.lower() in _WEAK or len(secret) < MIN_SECRET_LENGTH:
        raise SecretError(f"TRADEHUB_SECRET is too weak: use at least {MIN_SECRET_LENGTH} random "
                          "characters (python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    return secret


def demo_secret(data_dir: Path) -> str:
    """The local demo's secret: generated once, kept in the data directory (mode 0600)."""
    path = data_dir / "secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def resolve_secret(configured: str, data_dir: Path, *, demo: bool) -> str:
    """TRADEHUB_SECRET if set and strong; for a local demo, the data directory's own secret."""
    if configured or not demo:
        return check_secret(configured)
    return check_secret(demo_secret(data_dir))
