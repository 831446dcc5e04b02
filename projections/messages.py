"""The message record: every message the hub sent to or took from an agency, in one table owned here.

Dispatch records what it published (followers.dispatch) and the inbox what it
applied (followers.inbox), both through `record`; the API, the pages and the
exchange view read it through the queries below. A message is recorded once
per (direction, agency, message id): recording it again, after a redelivery
or a dispatch batch published twice, changes nothing.

Bodies name people (the border's crew and passenger lists) and carry what agencies said, so with
`TRADEHUB_CIPHER_KEY` set each is sealed (projections.sealing, purpose "messages") before it is written and
opened when read, bound to its row: a body copied into another row (another agency's, another declaration's)
does not open. A sealed body is kept as text (`TEXT_MARK` and base64), so the column stays TEXT on both stores
and rows recorded before the key, or by a hub without one, read as they are. The process's sealer is
installed once by tradehub.bootstrap (`seal_bodies`); `record` and `recorded_messages` take another for a test.

What the hub sends about a declaration that names people is sealed under that declaration's own data key
instead (hub/declarations/personal_data.py; mark `PEOPLE_MARK` and the key's id), whatever the cipher key: once
its personal data is erased, those bodies read as erased (`body` None, `body_error` saying so), on every
store and in every copy of it. The agencies' answers stay under the cipher key: they point at people by
position, never by name.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from cryptography.exceptions import InvalidTag

from hub.declarations.personal_data import DataKeys, message_key

from .database import Cursor
from .sealing import Sealer, SealError

OUTBOUND, INBOUND = "outbound", "inbound"
TABLES = (
    "CREATE TABLE IF NOT EXISTS agency_messages ("
    " direction TEXT NOT NULL, agency TEXT NOT NULL, message_id TEXT NOT NULL,"
    " declaration_id TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, function_code TEXT NOT NULL,"
    " time TEXT NOT NULL, body TEXT NOT NULL, recorded_at TEXT NOT NULL,"
    " PRIMARY KEY (direction, agency, message_id))",
    "CREATE INDEX IF NOT EXISTS agency_messages_by_declaration ON agency_messages (declaration_id, recorded_at)",
)


PURPOSE = "messages"
PEOPLE_MARK = "sealed:PD1:"  # then the data key's id, ":", and base64 of nonce + ciphertext and tag
ERASED_BODY = "erased with the declaration's personal data"
_bodies = Sealer(None, PURPOSE)  # a pass-through until bootstrap installs the configured one
_data_keys: DataKeys | None = None  # the declarations' data keys, once bootstrap installs them


def seal_bodies(sealer: Sealer, data_keys: DataKeys | None = None) -> None:
    """Seal the bodies this process records, and open those it reads, with `sealer`, and what the hub sends about
    a declaration with a data key under that key (tradehub.bootstrap)."""
    global _bodies, _data_keys
    _bodies = sealer
    if data_keys is not None:
        _data_keys = data_keys


def _seal(sealer: Sealer, row: Record, data_keys: DataKeys | None) -> str:
    context = body_context(row.direction, row.agency, row.message_id, row.declaration_id)
    if row.direction == OUTBOUND and data_keys is not None:
        found = data_keys.current(UUID(row.declaration_id))
        if found:
            key_id, raw = found
            nonce = os.urandom(12)
            sealed = nonce + message_key(raw).encrypt(nonce, row.body.encode(), context)
            return f"{PEOPLE_MARK}{key_id}:{base64.b64encode(sealed).decode()}"
    return sealer.seal_text(row.body, context)


def _open(sealer: Sealer, body: str, context: bytes, declaration_id: str, data_keys: DataKeys | None,
          keys: dict[str, bytes | None]) -> str | None:
    """A recorded body opened: under its declaration's data key (None once erased) or the sealer's."""
    if not body.startswith(PEOPLE_MARK):
        return sealer.open_text(body, context)
    key_id, _, encoded = body[len(PEOPLE_MARK):].partition(":")
    if key_id not in keys:  # read afresh once per call: an erasure in another process counts at once
        keys[key_id] = data_keys.opener(UUID(declaration_id), key_id, fresh=True) if data_keys else None
    raw = keys[key_id]
    if raw is None:
        return None
    try:
        sealed = base64.b64decode(encoded, validate=True)
        return message_key(raw).decrypt(sealed[:12], sealed[12:], context).decode()
    except (binascii.Error, ValueError, InvalidTag):
        raise SealError("the message body does not open under its declaration's data key: it was changed, or "
                        "moved from where it was sealed") from None


def sealed_under_data_keys(database: Any, declaration_id: str) -> int:
    """How many recorded bodies of a declaration are sealed under its data key (erasure says so)."""
    rows = database.query("SELECT COUNT(*) FROM agency_messages WHERE declaration_id = ? AND body LIKE ?",
                          (declaration_id, PEOPLE_MARK + "%"))
    return int(rows[0][0]) if rows else 0


def body_context(direction: str, agency: str, message_id: str, declaration_id: str) -> bytes:
    """What a sealed body is bound to: its row's key and its declaration (none of them holds a NUL)."""
    return "\0".join((direction, agency, message_id, declaration_id)).encode()


class Record(NamedTuple):
    """One row of the message record; `recorded_at` is filled in by `record`."""

    direction: str  # OUTBOUND or INBOUND
    agency: str
    message_id: str
    declaration_id: str
    version: int  # the declaration version the message reports (outbound) or answers (inbound)
    type: str  # the message's name, or for an answer "reply " and its codes
    function_code: str
    time: str  # the message's own time, ISO 8601
    body: str


_INSERT = (
    "INSERT INTO agency_messages (direction, agency, message_id, declaration_id, version, type, function_code,"
    " time, body, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (direction, agency, message_id) DO NOTHING"
)


def record(cursor: Cursor, records: Sequence[Record], sealer: Sealer | None = None,
           data_keys: DataKeys | None = None) -> None:
    """Record messages inside the caller's transaction, bodies sealed; one already recorded stays as it was."""
    sealer, data_keys = sealer or _bodies, data_keys or _data_keys
    if records:  # each its own moment, in the order given: what the record's order falls back on
        cursor.executemany(_INSERT, [(*row[:-1], _seal(sealer, row, data_keys), recorded_now()) for row in records])


def recorded_now() -> str:
    """When the hub recorded a message: the record's order, since agencies' clocks keep whole seconds at best."""
    return datetime.now(UTC).isoformat()


def first_sent(database: Any, declaration_id: str) -> list[tuple[str, str, str, int]]:
    """(agency, type, first recorded at, count) of the messages sent about a declaration."""
    return database.query(
        "SELECT agency, type, MIN(recorded_at), COUNT(*) FROM agency_messages"
        " WHERE declaration_id = ? AND direction = 'outbound' GROUP BY agency, type", (declaration_id,))


def sent_of_types(database: Any, declaration_id: str, types: Sequence[str]) -> list[tuple[str, str, str]]:
    """(agency, type, recorded at) of the messages of these types sent about a declaration."""
    marks = ", ".join("?" * len(types))
    return database.query(
        "SELECT agency, type, recorded_at FROM agency_messages WHERE declaration_id = ? AND direction = 'outbound'"
        f" AND type IN ({marks})", (declaration_id, *types))


def recorded_messages(database: Any, declaration_id: str, history: Sequence[dict[str, Any]] | None = None,
                      sealer: Sealer | None = None, data_keys: DataKeys | None = None) -> list[dict[str, Any]]:
    """Every message recorded for a declaration, oldest first, in the order it happened (docs/api.md).

    Neither clock gives that order: an inbound message's `time` is the agency's, and `recorded_at` is when the
    hub wrote the record, which dispatch does once the broker acknowledged a message, and the inbox once it has
    applied a whole batch, so a message caused by an answer can be recorded before that answer. The declaration's
    own log does: an outbound message happened at the event it reports (its `version`); an inbound one at the
    first event it caused (its replies' events in `history`, the declaration's events as the hub describes them),
    before what that event sent; one that changed nothing (a notice's acknowledgement, say) right after the
    messages of the version it answers, whenever it was recorded: a batch of answers is recorded at once. Without
    `history`, every inbound message comes there, which is the same causal order (an answer is about a version it
    got, and what it causes comes at a later version) less exact.

    Bodies come opened. One that does not open (another key, or the row was tampered with) comes as None with
    `body_error` saying so: the rest of the declaration's messages are still worth reading.
    """
    sealer, data_keys = sealer or _bodies, data_keys or _data_keys
    rows = database.query(
        "SELECT direction, agency, message_id, type, time, body, version, recorded_at FROM agency_messages"
        " WHERE declaration_id = ?", (declaration_id,))
    keys: dict[str, bytes | None] = {}
    messages = [{"direction": direction, "agency": agency, "message_id": message_id, "type": kind, "time": time,
                 "version": version,
                 **_opened(sealer, body, body_context(direction, agency, message_id, declaration_id), declaration_id,
                           data_keys, keys)}
                for direction, agency, message_id, kind, time, body, version, _ in rows]
    order = sorted(zip(log_places(messages, history or ()), rows, messages, strict=True),
                   key=lambda entry: (entry[0], entry[1][7], entry[1][1], entry[1][2]))
    return [message for _, _, message in order]


def _opened(sealer: Sealer, body: str, context: bytes, declaration_id: str, data_keys: DataKeys | None,
            keys: dict[str, bytes | None]) -> dict[str, str | None]:
    try:
        opened = _open(sealer, body, context, declaration_id, data_keys, keys)
    except SealError as error:
        return {"body": None, "body_error": str(error)}
    return {"body": opened, "body_error": None if opened is not None else ERASED_BODY}


def log_places(messages: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Where each message happened in the declaration's log (`recorded_messages` says why): (version, rank).

    Outbound at the event it reports (rank 1); inbound at the first event of `history` its replies made (rank 0,
    before what that event sent), else right after the messages of the version it answers (rank 2).
    """
    caused: dict[tuple[str, str], int] = {}
    for event in history:
        if "message_id" in event and "agency" in event:
            caused.setdefault((event["agency"], str(event["message_id"]).split(":")[0]), event["version"])
    places = []
    for message in messages:
        key = (message["agency"], message["message_id"])
        if message["direction"] == OUTBOUND:
            places.append((message["version"], 1))
        elif key in caused:
            places.append((caused[key], 0))
        else:
            places.append((message["version"], 2))
    return places
