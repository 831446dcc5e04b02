"""Who connects to the broker, and what each may do there.

One NATS identity (an nkey) for the hub and one per agency. The embedded
nats-server (messaging.embedded) is configured from `permissions`; an external
server is configured by hand from docs/examples/nats-server.conf, which a test
starts with the same checks. Each identity keeps its own inbox prefix
(`_INBOX_<name>`) and may subscribe to that prefix only: pulled JetStream
messages and request replies travel to the requester's inbox, so a shared
`_INBOX.>` would let one agency read another's messages.

Seeds are files of mode 0600 in a directory of mode 0700, created with that
mode (never widened and narrowed afterwards), and a seed another user could
read is refused, as ssh refuses a private key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nkeys

from hub.declarations import AGENCIES

from .broker import (
    CREDS_SUFFIX,
    DEAD_STREAM,
    HUB,
    INBOUND_STREAM,
    OUTBOUND_STREAM,
    SEED_SUFFIX,
    agency_durable,
    dead_subject,
    inbound_subject,
    inbox_prefix,
    outbound_subject,
)
from .contract import durable_name as hub_durable


class CredentialsError(ValueError):
    """A credentials file the broker client cannot, or must not, use."""


@dataclass(frozen=True)
class Permissions:
    """The subjects an identity may publish on and subscribe to; everything else is refused."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def hub_permissions(agencies: Sequence[str] = AGENCIES) -> Permissions:
    """What dispatch, the consumers of answers and stream management use, and nothing more.

    The hub never publishes on `tradehub.in.*`: only an agency speaks as that agency.
    """
    publish = [f"$JS.API.STREAM.{action}.{stream}"
               for stream in (OUTBOUND_STREAM, INBOUND_STREAM, DEAD_STREAM) for action in ("UPDATE", "CREATE")]
    for agency in agencies:
        inbound, outbound = hub_durable(agency), agency_durable(agency)
        publish += [
            outbound_subject(agency), dead_subject(agency),
            # its own consumer of the agency's answers: made, pulled, settled
            f"$JS.API.CONSUMER.INFO.{INBOUND_STREAM}.{inbound}",
            f"$JS.API.CONSUMER.CREATE.{INBOUND_STREAM}.{inbound}.{inbound_subject(agency)}",
            f"$JS.API.CONSUMER.MSG.NEXT.{INBOUND_STREAM}.{inbound}",
            f"$JS.ACK.{INBOUND_STREAM}.{inbound}.>",
            # the agency's consumer of its messages, which the hub makes so the agency needs no API rights
            f"$JS.API.CONSUMER.INFO.{OUTBOUND_STREAM}.{outbound}",
            f"$JS.API.CONSUMER.CREATE.{OUTBOUND_STREAM}.{outbound}.{outbound_subject(agency)}",
        ]
    return Permissions(tuple(publish), (f"{inbox_prefix(HUB)}.>",))


def agency_permissions(agency: str) -> Permissions:
    """An agency answers on its own inbound subject and pulls its own durable consumer; nothing else."""
    durable = agency_durable(agency)
    return Permissions(
        (inbound_subject(agency),
         f"$JS.API.CONSUMER.INFO.{OUTBOUND_STREAM}.{durable}",
         f"$JS.API.CONSUMER.MSG.NEXT.{OUTBOUND_STREAM}.{durable}",
         f"$JS.ACK.{OUTBOUND_STREAM}.{durable}.>"),
        (f"{inbox_prefix(agency)}.>",))


def permissions(identity: str) -> Permissions:
    return hub_permissions() if identity == HUB else agency_permissions(identity)


def _quoted(subjects: Iterable[str]) -> str:
    return ", ".join(f'"{subject}"' for subject in subjects)


def user_entry(public_key: str, granted: Permissions) -> str:
    """One user of a nats-server `users` list: its public nkey and its permissions."""
    return (f'{{nkey: "{public_key}", permissions: {{publish: {{allow: [{_quoted(granted.publish)}]}}, '
            f'subscribe: {{allow: [{_quoted(granted.subscribe)}]}}}}}}')


# ---- files -------------------------------------------------------------------------------------------------

def private_directory(path: Path) -> Path:
    """`path`, created mode 0700 (with its parents) if missing; an existing one others can enter is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise CredentialsError(
                f"{path} is open to other users (mode {mode:04o}); it holds broker credentials: chmod 700 it"
            ) from None
    return path


def write_private(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write `data` to a new file of mode 0600, then move it into place: no reader sees it half written
    or with a wider mode. Without `replace`, an existing file is kept (FileExistsError)."""
    if not replace and path.exists():
        raise FileExistsError(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(partial, path)
        else:
            os.link(partial, path)  # fails if another process made it first: theirs stays
    finally:
        partial.unlink(missing_ok=True)


def read_private(path: Path, what: str) -> bytes:
    """A secret file's bytes; missing, unreadable, or readable by other users is a CredentialsError."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as error:
        raise CredentialsError(f"{what}: cannot read {path}: {error.strerror}") from None
    if mode & 0o077:
        raise CredentialsError(f"{what}: {path} is readable by other users (mode {mode:04o}): chmod 600 it")
    return data


def check_credentials_file(path: Path, what: str) -> None:
    """A seed (`.nk`) or a creds file (`.creds`) the client can use, and no one else can read."""
    data = read_private(path, what)
    if path.suffix == CREDS_SUFFIX:
        if b"BEGIN USER NKEY SEED" not in data:
            raise CredentialsError(f"{what}: {path} is not a NATS creds file (no user nkey seed in it)")
        return
    try:
        nkeys.from_seed(data.strip())
    except Exception:  # noqa: BLE001 - nkeys raises several unrelated types for a bad seed
        raise CredentialsError(f"{what}: {path} holds no valid nkey seed (expected a line starting SU)") from None
    if not data.strip().startswith(b"SU"):
        raise CredentialsError(f"{what}: {path} holds a seed that is not a user's (expected SU…)")


PASSWORD_SUFFIX = ".password"  # a RabbitMQ user's password (tradehub agencies provision)


def agency_credentials(directory: Path, agencies: Sequence[str], *, rabbit: bool = False) -> dict[str, Path]:
    """Each agency's credentials file in `directory`: on NATS `<agency>.creds` or else `<agency>.nk`, on
    RabbitMQ `<agency>.password`; a missing or unusable one is a CredentialsError naming it."""
    found = {}
    for agency in agencies:
        if rabbit:
            path = directory / f"{agency}{PASSWORD_SUFFIX}"
            read_private(path, f"the {agency} RabbitMQ password")
        else:
            path = directory / f"{agency}{CREDS_SUFFIX}"
            if not path.exists():
                path = directory / f"{agency}{SEED_SUFFIX}"
            check_credentials_file(path, f"the {agency} broker identity")
        found[agency] = path
    return found


@dataclass(frozen=True)
class Identities:
    """The embedded broker's identities: one seed file per identity in `directory`."""

    directory: Path
    public_keys: dict[str, str]

    @classmethod
    def ensure(cls, directory: Path, agencies: Sequence[str] = AGENCIES) -> Identities:
        """Load every identity's seed from `directory`, generating the missing ones; existing ones are kept."""
        private_directory(directory)
        public_keys = {}
        for identity in (HUB, *agencies):
            path = directory / f"{identity}{SEED_SUFFIX}"
            if not path.exists():
                seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
                try:
                    write_private(path, seed + b"\n", replace=False)
                except FileExistsError:  # another process was first: use its key
                    pass
            check_credentials_file(path, f"the {identity} broker identity")
            public_keys[identity] = nkeys.from_seed(path.read_bytes().strip()).public_key.decode()
        return cls(directory, public_keys)

    @classmethod
    def load(cls, directory: Path, agencies: Sequence[str] = AGENCIES) -> Identities:
        """The identities in `directory`, generating none: a missing one is a CredentialsError."""
        if not directory.is_dir():
            raise CredentialsError(f"no broker identities in {directory}: `tradehub serve` makes them on its "
                                   "first start with the embedded broker")
        public_keys = {}
        for identity in (HUB, *agencies):
            path = directory / f"{identity}{SEED_SUFFIX}"
            check_credentials_file(path, f"the {identity} broker identity")
            public_keys[identity] = nkeys.from_seed(path.read_bytes().strip()).public_key.decode()
        return cls(directory, public_keys)

    def seed(self, identity: str) -> Path:
        return self.directory / f"{identity}{SEED_SUFFIX}"

    def users(self) -> str:
        """The `users` list of a nats-server `authorization` block: public keys and permissions only."""
        entries = ",\n    ".join(user_entry(key, permissions(identity)) for identity, key in self.public_keys.items())
        return f"[\n    {entries}\n  ]"


def nats_access(agency: str, identities: Identities, url: str | None) -> list[tuple[str, str]]:
    """What an agency's system needs to talk to the hub over NATS, as (label, value) lines."""
    durable = agency_durable(agency)
    return [
        ("agency", agency),
        ("url", url or "unknown: start `tradehub serve` (it records its broker's URL)"),
        ("seed file", f"{identities.seed(agency).resolve()} (its nkey seed: for {agency} alone, over a safe channel)"),
        ("public key", identities.public_keys[agency]),
        ("inbox prefix", f"{inbox_prefix(agency)} (connect with it: the only inbox {agency} may subscribe to)"),
        ("receives on", f"{outbound_subject(agency)}, stream {OUTBOUND_STREAM}"),
        ("durable consumer", f"{durable} (the hub makes it; pull it and acknowledge each message)"),
        ("publishes on", f"{inbound_subject(agency)}, stream {INBOUND_STREAM} (Nats-Msg-Id: the reply id)"),
    ]
