"""Bearer tokens: who the caller is. What a caller may see and do is tradehub/visibility.py's to decide.

Tokens are JWTs signed with HS256 and the hub's secret; issuer, audience,
expiry, subject and role are required and the algorithm is pinned, so
`alg=none`, algorithm confusion, expired and tampered tokens are all refused.
A trader is bound to a USCC, an officer to an agency, an admin to neither.

Every token has an id (`jti`) and a kind: a person's (the default: someone at
a terminal or the pages) lives at most 12 hours, a machine's (a trader's or
an agency's system calling the API) at most 30 days; admin tokens are always
a person's. A token whose lifetime (`exp - iat`) is over its kind's ceiling
is refused, whoever signed it. `tradehub token revoke ID` records an id in
the views database; every API process reads the revoked ids again at most
once a second (`Revocations`), so a revoked token is refused everywhere
within about a second (docs/api.md, "Tokens").
"""

from __future__ import annotations

import re
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
from projections.database import ViewDatabase

ISSUER = "tradehub"
AUDIENCE = "tradehub-api"
ALGORITHM = "HS256"
ROLES = ("trader", "officer", "admin")
MIN_SECRET_LENGTH = 32
_WEAK = {"secret", "changeme", "change-me", "default", "tradehub", "password"}
KINDS = ("person", "machine")
# The longest a token of each kind may live. A person's covers a working day; a machine's is rotated monthly.
CEILINGS = {"person": timedelta(hours=12), "machine": timedelta(days=30)}
_TTL = re.compile(r"([0-9]{1,7})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


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
    token_id: str = ""  # the token's jti, which `tradehub token revoke` names


def parse_ttl(text: str) -> timedelta:
    """`90s`, `30m`, `8h` or `7d` as a lifetime; ValueError naming --ttl for anything else."""
    match = _TTL.fullmatch(text)
    if match is None:
        raise ValueError(f"--ttl must look like 90s, 30m, 8h or 7d, got {text[:40]!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _spoken(lifetime: timedelta) -> str:
    seconds = int(lifetime.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def kind_of(role: str, kind: str | None) -> str:
    """The token's kind: as asked, or (for a token without one) a person's for an admin, else a machine's."""
    if kind is None:
        return "person" if role == "admin" else "machine"
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if role == "admin" and kind != "person":
        raise ValueError("an admin token is always a person's (--kind person, at most 12 hours)")
    return kind


def issue_token(secret: str, role: str, *, party: str | None = None, agency: str | None = None,
                ttl: timedelta = timedelta(hours=8), kind: str = "person", now: datetime | None = None) -> str:
    """A signed token for one role; raises ValueError naming what is wrong."""
    claims = _role_claims(role, party, agency)
    kind = kind_of(role, kind)
    issued = now or datetime.now(timezone.utc)
    if ttl <= timedelta(0):
        raise ValueError("the token lifetime must be positive")
    if ttl > CEILINGS[kind]:
        raise ValueError(f"--ttl {_spoken(ttl)} is over the ceiling for a {kind}'s token, "
                         f"{_spoken(CEILINGS[kind])}" + (" (a system's token: --kind machine)"
                                                         if kind == "person" and role != "admin" else ""))
    subject = claims.get("party") or claims.get("agency") or "admin"
    claims |= {"iss": ISSUER, "aud": AUDIENCE, "sub": f"{role}:{subject}", "iat": issued,
               "exp": issued + ttl, "jti": str(uuid.uuid4()), "kind": kind}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_id(token: str) -> str:
    """The id a token claims, read without checking its signature: for showing and revoking, never trusting."""
    try:
        return str(uuid.UUID(str(jwt.decode(token, options={"verify_signature": False})["jti"])))
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise InvalidToken("that is not a token with an id") from None


def verify_token(secret: str, token: str) -> Caller:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                            options={"require": ["exp", "iat", "iss", "aud", "sub", "role", "jti"]})
        role_claims = _role_claims(claims["role"], claims.get("party"), claims.get("agency"))
        kind = kind_of(claims["role"], claims.get("kind"))
        identifier = str(uuid.UUID(str(claims["jti"])))
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except (jwt.InvalidTokenError, ValueError, TypeError) as error:
        raise InvalidToken(f"the token is not valid: {error}") from None
    lifetime = timedelta(seconds=float(claims["exp"]) - float(claims["iat"]))
    if lifetime > CEILINGS[kind]:
        raise InvalidToken(f"the token lives {_spoken(lifetime)}, over the ceiling for a {kind}'s token, "
                           f"{_spoken(CEILINGS[kind])}")
    return Caller(subject=claims["sub"], expires=float(claims["exp"]), token_id=identifier, **role_claims)


class Revocations:
    """The ids of revoked tokens, in the views database: written by `tradehub token revoke`, read by every API
    process.

    A process reads the whole set again when it is older than `REFRESH` seconds: a revocation reaches every
    worker within about that, at the cost of one small query per second per process, whatever the load.
    Ids revoked longer ago than the longest ceiling are deleted: every token they could name has expired.
    If the set cannot be read, `StoreUnavailable` is raised and the request is refused (503), never let
    through on a stale set.
    """

    REFRESH = 1.0  # seconds
    TABLES = ("CREATE TABLE IF NOT EXISTS token_revocations (token_id TEXT PRIMARY KEY, revoked_at TEXT NOT NULL)",)

    def __init__(self, views: ViewDatabase) -> None:
        self.views = views
        views.create(self.TABLES)
        self._ids: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def revoke(self, token: str, now: datetime | None = None) -> bool:
        """Revoke a token by its id; False if it was already revoked."""
        now = now or datetime.now(timezone.utc)
        with self.views.transaction() as cursor:
            cursor.execute("INSERT INTO token_revocations (token_id, revoked_at) VALUES (?, ?) "
                           "ON CONFLICT (token_id) DO NOTHING", (token, now.isoformat()))
            added = cursor.rowcount == 1
            cursor.execute("DELETE FROM token_revocations WHERE revoked_at < ?",
                           ((now - max(CEILINGS.values())).isoformat(),))
        self._read_at = float("-inf")
        return added

    def due(self) -> bool:
        return time.monotonic() - self._read_at >= self.REFRESH

    def refresh(self) -> None:
        """Read the set again if it is due; callers racing here wait for one read."""
        with self._lock:
            if self.due():
                self._ids = frozenset(row[0] for row in self.views.query("SELECT token_id FROM token_revocations"))
                self._read_at = time.monotonic()

    def __contains__(self, token: str) -> bool:
        if self.due():
            self.refresh()
        return token in self._ids


class TokenVerifier:
    """Verifies tokens, remembering recent good ones until they expire.

    A client sends the same token with every request, and checking an HMAC
    signature and its claims costs more than the rest of a small request.
    Only tokens that passed `verify_token` with this secret are remembered,
    and expiry and revocation are checked again on every use.
    """

    def __init__(self, secret: str, revocations: Revocations | None = None, size: int = 4096) -> None:
        self.secret = secret
        self.revocations = revocations
        self.size = size
        self._known: OrderedDict[str, Caller] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Caller:
        now = time.time()
        with self._lock:
            caller = self._known.get(token)
            if caller is not None and caller.expires > now:
                self._known.move_to_end(token)
        if caller is None or caller.expires <= now:
            caller = verify_token(self.secret, token)
            with self._lock:
                self._known[token] = caller
                if len(self._known) > self.size:
                    self._known.popitem(last=False)
        if self.revocations is not None and caller.token_id in self.revocations:
            raise InvalidToken("the token has been revoked")
        return caller

    def due(self) -> bool:
        """Whether the next call reads the revocations from the database (async callers do it on a thread)."""
        return self.revocations is not None and self.revocations.due()


def _role_claims(role: str, party: str | None, agency: str | None) -> dict[str, str]:
    if role == "trader":
        if not party or agency:
            raise ValueError("a trader token needs --party USCC and no agency")
        return {"role": role, "party": uscc(party)}
    if role == "officer":
        if party:
            raise ValueError("an officer token takes no --party: it is bound to its --agency")
        if agency not in AGENCIES:
            given = f"{str(agency)[:40]!r} is not an agency: " if agency else ""
            raise ValueError(f"{given}an officer token needs --agency, one of {', '.join(AGENCIES)}")
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
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def resolve_secret(configured: str, data_dir: Path, *, demo: bool) -> str:
    """TRADEHUB_SECRET if set and strong; for a local demo, the data directory's own secret. Without either,
    the error says where a demo's secret would be, since a newcomer's usual mistake is another directory."""
    if configured or not demo:
        if not configured:
            raise SecretError(missing_secret(data_dir))
        return check_secret(configured)
    return check_secret(demo_secret(data_dir))


def missing_secret(data_dir: Path) -> str:
    """What to do when no secret is configured: set one, or use the demo's in this data directory."""
    path = (data_dir / "secret").absolute()
    if path.exists():
        return (f"TRADEHUB_SECRET is not set; {path} holds a local demo's secret: pass --demo to use it, "
                "or set TRADEHUB_SECRET")
    return (f"TRADEHUB_SECRET is not set, and there is no demo secret at {path}: set TRADEHUB_SECRET "
            "(at least 32 random characters), or run `tradehub serve --demo`, which makes one there; every "
            "command finds it through the same TRADEHUB_DATA_DIR (default ./var)")
