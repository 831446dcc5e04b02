"""Personal data sealed under a key of its declaration's own, so that deleting the key erases it everywhere.

This is crypto-shredding (docs/personal-data.md). The people a vessel call
names (its `crew` and `passengers`, every field of each) never reach the
store in the clear: `PersonalDataMapper` replaces each list, in the stored
state of `Submitted` and `Amended` and of a declaration's snapshots, by its
length, and keeps the lists beside it as one AES-256-GCM box under the
declaration's data key. The box is bound to the declaration and the event's
version, so it opens nowhere else. Everything else stays readable without
the key: routing, the views and the statistics keep working.

Data keys are random, one per declaration, and kept wrapped (AES-GCM under
the master key, bound to the declaration and the key's id) in the event
store's table `personal_data_keys`, inserted in the same transaction as the
`Submitted` that introduces the key (`KeyedStoredEvent`). Erasure overwrites
the wrapped key with nothing and marks the row erased: every copy of the
sealed lists, in events, snapshots, recorded message bodies and whatever
copied them (backups, replicas), is then noise. A key's row that is missing
means the declaration never had one (stored before keys existed); an erased
row means its document can no longer be stored: an amendment that raced the
erasure is refused rather than stored in the clear.

Reading after erasure gives each list back as so many erased people
(`erased_people`), so counts and positions keep their meaning.

Whole-event encryption (`TRADEHUB_CIPHER_KEY`, eventsourcing's cipher) is
applied after this, to the state this mapper makes: the two are independent.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.utils import get_topic, resolve_topic

from .domainmodel import ERASED, PEOPLE, PersonalDataGone, erased_people

SEALED = "sealed_people"  # the stored state's entry that holds the sealed lists: {"key", "box"}
_NONCE = 12
_CACHE_SIZE = 4096  # data keys kept unwrapped in a process
_CACHE_SECONDS = 60.0  # how long an unwrapped key is trusted before its row is read again
_ERASED_KEPT = 100_000  # erased declarations remembered without asking the store again


class MasterKeyError(ValueError):
    """The personal-data master key is missing or malformed."""


class PersonalDataUnreadable(MapperDeserialisationError):
    """Sealed people did not open under their declaration's key: the stored bytes were changed or moved."""


@dataclass(frozen=True)
class KeyedStoredEvent(StoredEvent):
    """A stored event that introduces its declaration's data key: the recorder inserts `new_key` (its id and the
    wrapped key) in the same transaction as the event, so neither is ever stored without the other."""

    new_key: tuple[str, bytes] | None = None


class KeyTable(Protocol):
    """Where the wrapped data keys are kept: the event store's recorders (hub/storage.py)."""

    def select_data_key(self, declaration_id: UUID) -> tuple[str, bytes | None] | None:
        """(key id, wrapped key), the wrapped key None once erased; None if the declaration never had a key."""

    def erase_data_key(self, declaration_id: UUID) -> bool:
        """Destroy the wrapped key; False when there was none to destroy (never had one, or already erased)."""

    def select_some_data_key(self) -> tuple[UUID, str, bytes] | None:
        """(declaration id, key id, wrapped key) of any key not erased: to check the master key on start."""


def master_key(encoded: str) -> bytes:
    """The master key from its base64 text (TRADEHUB_PERSONAL_DATA_KEY, or the keys directory's file)."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError("the personal-data master key must be base64 of 32 random bytes") from None
    if len(raw) != 32:
        raise MasterKeyError(f"the personal-data master key decodes to {len(raw)} bytes; it must be 32")
    return raw


def new_master_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


class DataKeys:
    """The declarations' data keys: made for a submission, found for a read, destroyed on erasure."""

    def __init__(self, master: bytes, table: KeyTable | None = None) -> None:
        self._master = AESGCM(master)
        self.table = table
        self._fresh: dict[str, bytes] = {}  # key id -> raw key, from `new` until its submission is saved
        # declaration -> (key id, raw key, until when); ("", b"", …) for a declaration that has no key
        self._cache: OrderedDict[UUID, tuple[str, bytes, float]] = OrderedDict()
        self._erased: set[UUID] = set()  # erasure is for ever: remembered without asking again
        self._lock = threading.Lock()

    # ---- making and keeping -------------------------------------------------------------------

    def new(self) -> str:
        """A fresh key's id; the key waits here for the `Submitted` that names it (`to_stored_event`)."""
        key_id = secrets.token_hex(8)
        self._fresh[key_id] = AESGCM.generate_key(bit_length=256)
        return key_id

    def saved(self, declaration_id: UUID, key_id: str) -> None:
        """The submission naming `key_id` is stored (or failed): the key is the store's now."""
        raw = self._fresh.pop(key_id, None)
        if raw is not None:
            self._remember(declaration_id, key_id, raw)

    def discard(self, key_id: str) -> None:
        self._fresh.pop(key_id, None)

    def fresh(self, key_id: str) -> bytes:
        try:
            return self._fresh[key_id]
        except KeyError:
            raise PersonalDataGone(f"data key {key_id} is not a fresh key of this process") from None

    def wrap(self, declaration_id: UUID, key_id: str, raw: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._master.encrypt(nonce, raw, _key_context(declaration_id, key_id))

    def check(self) -> None:
        """`MasterKeyError` now, rather than on the first read, when the store's keys were wrapped by another."""
        some = self._table().select_some_data_key()
        if some is not None:
            declaration_id, key_id, wrapped = some
            self._unwrap(declaration_id, key_id, wrapped)

    # ---- finding -----------------------------------------------------------------------------

    def current(self, declaration_id: UUID) -> tuple[str, bytes] | None | bool:
        """(key id, raw key); None if the declaration never had a key; False once it was erased."""
        if declaration_id in self._erased:
            return False
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(declaration_id)
            if cached is not None and cached[2] > now:
                self._cache.move_to_end(declaration_id)
                return (cached[0], cached[1]) if cached[0] else None
        row = self._table().select_data_key(declaration_id)
        if row is None:
            # Remembered too: a key comes only with the `Submitted` it is stored with, so a stored declaration
            # without one never gets one (dispatch asks for each message it records).
            self._remember(declaration_id, "", b"")
            return None
        key_id, wrapped = row
        if wrapped is None:
            self._remember_erased(declaration_id)
            return False
        raw = self._unwrap(declaration_id, key_id, wrapped)
        self._remember(declaration_id, key_id, raw)
        return key_id, raw

    def _unwrap(self, declaration_id: UUID, key_id: str, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _key_context(declaration_id, key_id))
        except InvalidTag:
            raise MasterKeyError(f"the data key of declaration {declaration_id} does not open under this master "
                                 "key: it is not the one the store was written with") from None

    def opener(self, declaration_id: UUID, key_id: str, *, fresh: bool = False) -> bytes | None:
        """The raw key `key_id` of the declaration, or None when it is gone (erased). `fresh` reads the row again
        even when a copy is cached, for reads that must not outlive an erasure made by another process."""
        if fresh:
            self.forget(declaration_id)
        found = self.current(declaration_id)
        if not found:
            return None
        return found[1] if found[0] == key_id else None

    # ---- destroying --------------------------------------------------------------------------

    def erase(self, declaration_id: UUID) -> bool:
        """Destroy the declaration's key in the store; False if there was none left to destroy."""
        self.forget(declaration_id)
        destroyed = self._table().erase_data_key(declaration_id)
        self._remember_erased(declaration_id)
        return destroyed

    def forget(self, declaration_id: UUID) -> None:
        with self._lock:
            self._cache.pop(declaration_id, None)

    def _remember_erased(self, declaration_id: UUID) -> None:
        if len(self._erased) >= _ERASED_KEPT:
            self._erased.clear()  # read again from the store when asked: erased rows stay erased
        self._erased.add(declaration_id)

    def _remember(self, declaration_id: UUID, key_id: str, raw: bytes) -> None:
        with self._lock:
            self._cache[declaration_id] = (key_id, raw, time.monotonic() + _CACHE_SECONDS)
            self._cache.move_to_end(declaration_id)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)

    def _table(self) -> KeyTable:
        if self.table is None:
            raise RuntimeError("DataKeys has no key table")
        return self.table


def _key_context(declaration_id: UUID, key_id: str) -> bytes:
    return b"tradehub data key\x00" + declaration_id.bytes + key_id.encode()


def _box_context(declaration_id: UUID, version: int) -> bytes:
    return b"tradehub people\x00" + declaration_id.bytes + version.to_bytes(8, "big")


def message_key(raw: bytes) -> AESGCM:
    """The key that seals a declaration's recorded message bodies: derived from its data key for that purpose
    alone (projections/messages.py), so erasing the one erases the other."""
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"tradehub personal data: message bodies").derive(raw))


def _holder(state: dict[str, Any]) -> dict[str, Any] | None:
    """The dict of a stored state that holds a vessel call's document: an event's own, or a snapshot's state."""
    for holder in (state, state.get("state")):
        if isinstance(holder, dict):
            document = holder.get("document")
            if isinstance(document, dict) and (SEALED in holder or any(
                    isinstance(document.get(people), list) for people in PEOPLE)):
                return holder
    return None


def _scrubbed(people: Mapping[str, Any]) -> bool:
    """Whether every person in these lists reads erased already (a snapshot taken after erasure)."""
    return all(person.get("family_name") == ERASED for persons in people.values() for person in persons
               if isinstance(person, dict))


class PersonalDataMapper(Mapper):
    """eventsourcing's mapper, sealing the people of a document under its declaration's data key.

    `keys` is set by the application once its recorder exists (the recorder keeps the keys)."""

    keys: DataKeys | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = get_topic(domain_event.__class__)
        event_state = dict(vars(domain_event))
        originator_id = event_state.pop("originator_id")
        originator_version = event_state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            event_state["class_version"] = class_version
        new_key = None
        holder = _holder(event_state) if self.keys is not None else None
        if holder is not None:
            new_key = self._seal(event_state, holder, originator_id, originator_version)
        stored_state = self.transcoder.encode(event_state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        if new_key is not None:
            return KeyedStoredEvent(originator_id=originator_id, originator_version=originator_version,
                                    topic=topic, state=stored_state, new_key=new_key)
        return StoredEvent(originator_id=originator_id, originator_version=originator_version, topic=topic,
                           state=stored_state)

    def _seal(self, state: dict[str, Any], holder: dict[str, Any], declaration_id: UUID,
              version: int) -> tuple[str, bytes] | None:
        """Replace `holder`'s document's people by their counts and a sealed box; return the key to insert with
        the event if it introduces one. In place on copies: `state` and `holder` are the mapper's own."""
        assert self.keys is not None
        document = holder["document"]
        people = {name: document[name] for name in PEOPLE if isinstance(document.get(name), list)}
        if not any(people.values()):
            return None
        new_key = None
        key_id = state.get("data_key") if holder is state else None
        if key_id:  # a submission: its key is fresh, and goes into the store with it
            raw = self.keys.fresh(key_id)
            new_key = (key_id, self.keys.wrap(declaration_id, key_id, raw))
        else:
            found = self.keys.current(declaration_id)
            if found is None:
                return None  # stored before data keys: its amendments stay as its submission was
            if found is False:
                if _scrubbed(people):
                    return None  # a snapshot after erasure: nobody is left in it
                raise PersonalDataGone(f"the personal data of declaration {declaration_id} was erased: "
                                       "no document naming people can be stored for it")
            key_id, raw = found
        nonce = os.urandom(_NONCE)
        box = nonce + AESGCM(raw).encrypt(nonce, orjson.dumps(people), _box_context(declaration_id, version))
        if holder is not state:
            holder = state["state"] = dict(holder)
        holder["document"] = {**document, **{name: len(persons) for name, persons in people.items()}}
        holder[SEALED] = {"key": key_id, "box": base64.b64encode(box).decode()}
        return new_key

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls = resolve_topic(stored_event.topic)
        stored_state = stored_event.state
        try:
            if self.cipher:
                stored_state = self.cipher.decrypt(stored_state)
            if self.compressor:
                stored_state = self.compressor.decompress(stored_state)
            event_state: dict[str, Any] = self.transcoder.decode(stored_state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic '{stored_event.topic}', originator_id "
                f"'{stored_event.originator_id}' and originator_version {stored_event.originator_version}: "
                f"{error}") from error
        originator_id = stored_event.originator_id
        if not isinstance(originator_id, UUID):
            originator_id = UUID(str(originator_id))
        holder = _holder(event_state)
        if holder is not None and SEALED in holder:
            self._open(holder, originator_id, stored_event.originator_version)
        event_state["originator_id"] = originator_id
        event_state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event

    def _open(self, holder: dict[str, Any], declaration_id: UUID, version: int) -> None:
        sealed = holder.pop(SEALED)
        document = holder["document"]
        counts = {name: document[name] for name in PEOPLE if isinstance(document.get(name), int)}
        raw = self.keys.opener(declaration_id, sealed["key"]) if self.keys is not None else None
        if raw is None:
            people = {name: erased_people(name, count) for name, count in counts.items()}
        else:
            box = base64.b64decode(sealed["box"])
            try:
                people = orjson.loads(AESGCM(raw).decrypt(box[:_NONCE], box[_NONCE:],
                                                          _box_context(declaration_id, version)))
            except InvalidTag:
                raise PersonalDataUnreadable(f"the people of declaration {declaration_id} version {version} do "
                                             "not open under its data key: the stored event was changed or "
                                             "moved") from None
        holder["document"] = {**document, **people}


class KeyedPOPORecorder(POPOApplicationRecorder):
    """eventsourcing's in-memory recorder, keeping data keys in memory beside the events (tests, demos)."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[UUID, tuple[str, bytes | None]] = {}

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)  # under the database lock, after the uniqueness check
        for ident, key, wrapped in new_keys(stored_events):
            self._keys[ident] = (key, wrapped)
        return ids

    def select_data_key(self, declaration_id: UUID) -> tuple[str, bytes | None] | None:
        return self._keys.get(declaration_id)

    def select_some_data_key(self) -> tuple[UUID, str, bytes] | None:
        return next(((ident, key, wrapped) for ident, (key, wrapped) in self._keys.items() if wrapped), None)

    def erase_data_key(self, declaration_id: UUID) -> bool:
        with self._database_lock:
            row = self._keys.get(declaration_id)
            if row is None or row[1] is None:
                return False
            self._keys[declaration_id] = (row[0], None)
            return True


def new_keys(stored_events: Sequence[StoredEvent]) -> list[tuple[UUID, str, bytes]]:
    """The data keys these events introduce (`KeyedStoredEvent`), for the recorder to insert with them."""
    keyed = []
    for event in stored_events:
        new_key = getattr(event, "new_key", None)
        if new_key is not None:
            ident = event.originator_id
            keyed.append((ident if isinstance(ident, UUID) else UUID(str(ident)), new_key[0], new_key[1]))
    return keyed
