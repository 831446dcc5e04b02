"""Dead letters: every answer the hub refused, kept for an admin to read and replay, in one table owned here.

The consumers record what they dead-letter (messaging.outcomes.decide, through
the inbox) before they settle the delivery, so a crash in between delivers it
again and it is recorded then. A letter is keyed on its agency and a keyed
digest of its bytes: the same refused message, delivered again or sent again,
is one dead letter whose delivery count and last refusal move on. Bodies are
sealed (projections.sealing, purpose "dead-letters") when the hub has a cipher
key, and the digest is then keyed by it too, so neither tells a guessed body
apart. docs/dead-letters.md is the reference; the replay states are:

    none -> requested -> running -> applied | unchanged | dead | failed
                 ^                                        |        |
                 +---------------- requested again -------+--------+
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .database import Cursor, ViewDatabase
from .sealing import Sealer, SealError

TABLES = (
    "CREATE TABLE IF NOT EXISTS dead_letters ("
    " id TEXT PRIMARY KEY, agency TEXT NOT NULL, digest TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL,"
    " declaration_id TEXT NOT NULL, refused_at TEXT NOT NULL, last_refused_at TEXT NOT NULL,"
    " deliveries INTEGER NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL, body_bytes INTEGER NOT NULL,"
    " body_complete INTEGER NOT NULL, replay_state TEXT NOT NULL, replay_requested_at TEXT NOT NULL,"
    " replay_requested_by TEXT NOT NULL, replay_started_at TEXT NOT NULL, replayed_at TEXT NOT NULL,"
    " replays INTEGER NOT NULL, replay_code TEXT NOT NULL, replay_reason TEXT NOT NULL,"
    " UNIQUE (agency, digest))",
    "CREATE INDEX IF NOT EXISTS dead_letters_newest ON dead_letters (refused_at, id)",
    "CREATE INDEX IF NOT EXISTS dead_letters_replays ON dead_letters (replay_state)",
)

NONE, REQUESTED, RUNNING = "none", "requested", "running"
APPLIED, UNCHANGED, DEAD, FAILED = "applied", "unchanged", "dead", "failed"  # what a replay came to
REPLAY_STATES = (NONE, REQUESTED, RUNNING, APPLIED, UNCHANGED, DEAD, FAILED)
REPLAYABLE = (NONE, DEAD, FAILED)  # a replay may be asked for; APPLIED and UNCHANGED are in effect already
IN_EFFECT = (APPLIED, UNCHANGED)

# The XML gate admits at most 1 MiB (adapters.xml.MAX_MESSAGE_BYTES), so anything it could ever accept is kept
# whole. A larger body was refused as too large and would be again: only its start is kept, to read, not replay.
KEPT_BODY_BYTES = 1024 * 1024
EXCERPT_BYTES = 64 * 1024
MAX_HEADERS, MAX_HEADER_CHARS = 8, 256
RUNNING_LEASE = timedelta(seconds=60)  # a replay claimed this long ago by a worker that died is claimed again


class Refusal(NamedTuple):
    """One refused delivery, as the consumer knows it."""

    body: bytes
    code: str
    reason: str
    declaration_id: str = ""
    deliveries: int = 1
    headers: Mapping[str, str] = {}


class Claimed(NamedTuple):
    """A dead letter a worker has claimed to replay."""

    id: str
    agency: str
    body: bytes


class InvalidCursor(ValueError):
    """A listing cursor this table never gave out."""


@dataclass(frozen=True)
class ReplayRequest:
    """What asking for a replay did: `state` is the letter's replay state afterwards, `requested` whether this
    call asked for it (False: it was asked for already, is in effect, or its body is not kept whole)."""

    state: str
    requested: bool
    body_complete: bool


_COLUMNS = ("id, agency, code, reason, declaration_id, refused_at, last_refused_at, deliveries, headers,"
            " body_bytes, body_complete, replay_state, replay_requested_at, replay_requested_by, replayed_at,"
            " replays, replay_code, replay_reason")
_INSERT = (
    "INSERT INTO dead_letters (id, agency, digest, code, reason, declaration_id, refused_at, last_refused_at,"
    " deliveries, headers, body, body_bytes, body_complete, replay_state, replay_requested_at,"
    " replay_requested_by, replay_started_at, replayed_at, replays, replay_code, replay_reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'none', '', '', '', '', 0, '', '')"
    " ON CONFLICT (agency, digest) DO UPDATE SET last_refused_at = excluded.last_refused_at,"
    " deliveries = CASE WHEN excluded.deliveries > dead_letters.deliveries"
    " THEN excluded.deliveries ELSE dead_letters.deliveries END"
)


def now() -> str:
    """A time as the table writes it: fixed width, so that text order is time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DeadLetters:
    """The dead-letter table of one view database, sealing bodies with the hub's cipher key when it has one."""

    def __init__(self, database: ViewDatabase, cipher_key: str | None = None) -> None:
        self.database = database
        self.sealer = Sealer(cipher_key or None, purpose="dead-letters")  # raises SealError for a bad key
        self._digest_key = b"tradehub dead letters"
        if cipher_key:
            self._digest_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                    info=b"tradehub dead-letter digests").derive(base64.b64decode(cipher_key))

    def digest(self, agency: str, body: bytes) -> str:
        return hmac.new(self._digest_key, agency.encode() + b"\0" + body, hashlib.sha256).hexdigest()

    def record(self, cursor: Cursor, agency: str, refusals: Sequence[Refusal]) -> None:
        """Record refused deliveries inside the caller's transaction; one recorded before only moves on."""
        rows = []
        for refusal in refusals:
            size = len(refusal.body)
            complete = size <= KEPT_BODY_BYTES
            kept = refusal.body if complete else refusal.body[:EXCERPT_BYTES]
            moment, digest = now(), self.digest(agency, refusal.body)
            rows.append((str(uuid.uuid4()), agency, digest, refusal.code[:64],
                         refusal.reason[:1000], refusal.declaration_id[:64], moment, moment,
                         max(1, refusal.deliveries), json.dumps(_bounded(refusal.headers), sort_keys=True),
                         base64.b64encode(self.sealer.seal(kept, _context(agency, digest))).decode("ascii"), size, int(complete)))
        if rows:
            cursor.executemany(_INSERT, rows)

    def listed(self, *, agency: str | None = None, code: str | None = None, state: str | None = None,
               limit: int = 50, after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Dead letters newest first, filtered, `limit` at a time: (items, cursor of the next page or None)."""
        where, params = [], []
        for column, value in (("agency", agency), ("code", code), ("replay_state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            refused_at, last_id = _cursor_position(after)
            where.append("(refused_at < ? OR (refused_at = ? AND id < ?))")
            params += [refused_at, refused_at, last_id]
        rows = self.database.query(
            f"SELECT {_COLUMNS} FROM dead_letters {'WHERE ' + ' AND '.join(where) if where else ''}"
            " ORDER BY refused_at DESC, id DESC LIMIT ?", (*params, limit + 1))
        items = [_letter(row) for row in rows[:limit]]
        following = _cursor(items[-1]) if len(rows) > limit else None
        return items, following

    def get(self, letter_id: str, *, with_body: bool = True) -> dict[str, Any] | None:
        """One dead letter, with its body as kept (`body`: bytes, or None if it does not open with this key)."""
        body = ", digest, body" if with_body else ""
        rows = self.database.query(f"SELECT {_COLUMNS}{body} FROM dead_letters WHERE id = ?", (letter_id,))
        if not rows:
            return None
        if not with_body:
            return _letter(rows[0])
        letter = _letter(rows[0][:-2])
        try:
            letter["body"] = self._open(letter["agency"], *rows[0][-2:])
        except SealError:
            letter["body"] = None
        return letter

    def request_replay(self, letter_id: str, by: str) -> ReplayRequest | None:
        """Ask for a replay, once however many ask at the same time; None if there is no such letter."""
        with self.database.transaction() as cursor:
            cursor.execute(
                "UPDATE dead_letters SET replay_state = 'requested', replay_requested_at = ?,"
                " replay_requested_by = ? WHERE id = ? AND body_complete = 1"
                f" AND replay_state IN ({', '.join('?' * len(REPLAYABLE))})", (now(), by[:200], letter_id, *REPLAYABLE))
            requested = cursor.rowcount == 1
            cursor.execute("SELECT replay_state, body_complete FROM dead_letters WHERE id = ?", (letter_id,))
            rows = cursor.fetchall()
        if not rows:
            return None
        return ReplayRequest(rows[0][0], requested, bool(rows[0][1]))

    def requested(self, agencies: Sequence[str], limit: int = 16) -> list[str]:
        """The ids of letters awaiting a replay for these agencies, oldest request first: a cheap, indexed read."""
        lease = (datetime.now(UTC) - RUNNING_LEASE).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        marks = ", ".join("?" * len(agencies))
        rows = self.database.query(
            "SELECT id FROM dead_letters WHERE replay_state IN ('requested', 'running')"
            f" AND (replay_state = 'requested' OR replay_started_at < ?) AND agency IN ({marks})"
            " ORDER BY replay_requested_at LIMIT ?", (lease, *agencies, limit))
        return [row[0] for row in rows]

    def claim(self, letter_id: str) -> Claimed | None:
        """Take a requested replay for this worker; None if another worker took it first."""
        lease = (datetime.now(UTC) - RUNNING_LEASE).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.database.transaction() as cursor:
            cursor.execute(
                "UPDATE dead_letters SET replay_state = 'running', replay_started_at = ? WHERE id = ?"
                " AND (replay_state = 'requested' OR (replay_state = 'running' AND replay_started_at < ?))",
                (now(), letter_id, lease))
            if cursor.rowcount != 1:
                return None
            cursor.execute("SELECT agency, digest, body FROM dead_letters WHERE id = ?", (letter_id,))
            [(agency, digest, body)] = cursor.fetchall()
        try:
            return Claimed(letter_id, agency, self._open(agency, digest, body))
        except SealError as error:  # another key, or a changed row: nothing to replay, and it is said
            self.replayed(letter_id, FAILED, "sealed", str(error))
            return None

    def _open(self, agency: str, digest: str, body: str) -> bytes:
        return self.sealer.open(base64.b64decode(body), _context(agency, digest))

    def replayed(self, letter_id: str, outcome: str, code: str = "", reason: str = "") -> None:
        """Record what a claimed replay came to."""
        with self.database.transaction() as cursor:
            cursor.execute(
                "UPDATE dead_letters SET replay_state = ?, replayed_at = ?, replays = replays + 1,"
                " replay_code = ?, replay_reason = ? WHERE id = ? AND replay_state = 'running'",
                (outcome, now(), code[:64], reason[:1000], letter_id))


def counts(database: ViewDatabase) -> dict[str, dict[str, int]]:
    """Per agency: dead letters in all, and those awaiting a replay (requested or running)."""
    rows = database.query(
        "SELECT agency, COUNT(*), SUM(CASE WHEN replay_state IN ('requested', 'running') THEN 1 ELSE 0 END)"
        " FROM dead_letters GROUP BY agency")
    return {agency: {"total": int(total), "awaiting_replay": int(awaiting or 0)} for agency, total, awaiting in rows}


def _context(agency: str, digest: str) -> bytes:
    """What a sealed body is bound to: a body copied into another letter's row does not open there."""
    return f"dead-letter\0{agency}\0{digest}".encode()


def _bounded(headers: Mapping[str, str]) -> dict[str, str]:
    """The broker headers worth keeping, bounded: the consumer names them, an agency may still fill them."""
    return {str(name)[:64]: str(value)[:MAX_HEADER_CHARS] for name, value in list(headers.items())[:MAX_HEADERS]}


def _letter(row: Sequence[Any]) -> dict[str, Any]:
    (letter_id, agency, code, reason, declaration_id, refused_at, last_refused_at, deliveries, headers, body_bytes,
     body_complete, state, requested_at, requested_by, replayed_at, replays, replay_code, replay_reason) = row
    return {
        "id": letter_id, "agency": agency, "code": code, "reason": reason, "declaration_id": declaration_id or None,
        "refused_at": refused_at, "last_refused_at": last_refused_at, "deliveries": deliveries,
        "headers": json.loads(headers), "body_bytes": body_bytes, "body_complete": bool(body_complete),
        "replay": {"state": state, "requested_at": requested_at or None, "requested_by": requested_by or None,
                   "replayed_at": replayed_at or None, "replays": replays, "code": replay_code or None,
                   "reason": replay_reason or None},
    }


def _cursor(letter: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{letter['refused_at']}|{letter['id']}".encode()).decode("ascii").rstrip("=")


def _cursor_position(cursor: str) -> tuple[str, str]:
    try:
        refused_at, letter_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        datetime.strptime(refused_at, "%Y-%m-%dT%H:%M:%S.%fZ")
        uuid.UUID(letter_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("not a cursor this listing gave out") from None
    return refused_at, letter_id
