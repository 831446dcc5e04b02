"""The one place where configuration becomes wired objects.

Configuration comes from the environment (docs/configuration.md): `TRADEHUB_DATABASE_URL`
(`postgresql://…` selects PostgreSQL; unset means SQLite under the data
directory), `TRADEHUB_DATA_DIR` (default `./var`), `TRADEHUB_ROUTING_FILE`
and `TRADEHUB_CIPHER_KEY`. Nothing connects at import time.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from psycopg.conninfo import conninfo_to_dict

from adapters.inspection.sps import signed_certificate_content
from adapters.keyring import Registry, create_once, hub_signer, keys_directory
from adapters.licences import JwsSeal
from followers.dispatch import Publisher, dispatches
from followers.enforcement import Enforcement
from followers.inbox import Inbox
from followers.licensing import Licensing
from followers.notifications import Notifications
from followers.runner import Follower, Followers
from followers.webhooks import DEFAULT_SCHEDULE, Schedule, ScheduleError, Sender, Webhooks
from hub.declarations import REGISTER_MODES, Declarations, MasterKeyError, RoutingRules
from hub.declarations.personal_data import master_key, new_master_key
from messaging.webhooks import Guard
from projections import dead_letters as dead_letter_record
from projections import dispatch_parking
from projections import messages as message_record
from projections import subscriptions as webhook_record
from projections.access_log import AccessLog
from projections.attachments import DirectoryStore, DocumentStore, S3Location, S3Store
from projections.database import PostgresViews, SQLiteViews, ViewDatabase
from projections.exchange import Exchange
from projections.recognition import Recognition
from projections.retention import Retention
from projections.sealing import Sealer, SealError
from projections.statistics import Statistics
from projections.status_board import StatusBoard


class ConfigurationError(ValueError):
    """A setting has a value the hub cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str = ""
    routing_file: str = ""
    cipher_key: str = ""
    secret: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    broker_url: str = ""  # NATS JetStream (nats://); empty: serve starts an embedded nats-server
    broker_credentials: str = ""  # the hub's NATS identity: a seed (.nk) or creds (.creds) file
    agency_credentials: str = ""  # a directory of <agency>.nk or .creds files, for the simulated agencies
    keys_dir_override: str = ""  # TRADEHUB_KEYS_DIR: the signing keys and the agencies' certificates
    party_register: str = "off"  # TRADEHUB_PARTY_REGISTER: "required" checks and fills parties from the register
    # Supporting documents (docs/configuration.md): empty, a directory under data_dir; s3://bucket[/prefix]
    document_store: str = ""  # TRADEHUB_DOCUMENT_STORE
    s3_endpoint: str = ""  # TRADEHUB_S3_ENDPOINT, http(s)://host[:port]
    s3_access_key: str = ""  # TRADEHUB_S3_ACCESS_KEY
    s3_secret_key: str = ""  # TRADEHUB_S3_SECRET_KEY
    s3_region: str = ""  # TRADEHUB_S3_REGION
    public_url: str = ""  # TRADEHUB_PUBLIC_URL: where the hub is reached from outside, for certificates' QR codes
    # Webhooks (docs/webhooks.md): http and private addresses allowed (development, tests); the retry schedule;
    # the deadline of one attempt, in seconds
    webhook_allow_private: bool = False  # TRADEHUB_WEBHOOK_ALLOW_PRIVATE=1
    webhook_retry: str = DEFAULT_SCHEDULE  # TRADEHUB_WEBHOOK_RETRY
    webhook_timeout: float = 10.0  # TRADEHUB_WEBHOOK_TIMEOUT
    # The master key of the declarations' data keys (docs/personal-data.md): base64 of 32 bytes; empty, the keys
    # directory's personal-data.key, made on first use
    personal_data_key: str = ""  # TRADEHUB_PERSONAL_DATA_KEY
    # Retention (docs/personal-data.md): erase a declaration's people this many days after its purpose was served
    # (a call's departure, a goods declaration's release, withdrawal or rejection); 0 keeps them
    personal_data_days: int = 0  # TRADEHUB_PERSONAL_DATA_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        limit = environ.get("TRADEHUB_MAX_BODY_BYTES", "") or str(cls.max_body_bytes)
        if not limit.isdigit() or int(limit) < 1024:
            raise ConfigurationError(f"TRADEHUB_MAX_BODY_BYTES must be a number of bytes >= 1024, got {limit!r}")
        return cls(
            data_dir=Path(environ.get("TRADEHUB_DATA_DIR") or "var"),
            database_url=environ.get("TRADEHUB_DATABASE_URL", ""),
            routing_file=environ.get("TRADEHUB_ROUTING_FILE", ""),
            cipher_key=environ.get("TRADEHUB_CIPHER_KEY", ""),
            secret=environ.get("TRADEHUB_SECRET", ""),
            max_body_bytes=int(limit),
            broker_url=_broker_url(environ.get("TRADEHUB_BROKER_URL", "")),
            broker_credentials=environ.get("TRADEHUB_BROKER_CREDENTIALS", ""),
            agency_credentials=environ.get("TRADEHUB_AGENCY_CREDENTIALS", ""),
            keys_dir_override=environ.get("TRADEHUB_KEYS_DIR", ""),
            party_register=_party_register(environ.get("TRADEHUB_PARTY_REGISTER", "")),
            document_store=environ.get("TRADEHUB_DOCUMENT_STORE", ""),
            s3_endpoint=environ.get("TRADEHUB_S3_ENDPOINT", ""),
            s3_access_key=environ.get("TRADEHUB_S3_ACCESS_KEY", ""),
            s3_secret_key=environ.get("TRADEHUB_S3_SECRET_KEY", ""),
            s3_region=environ.get("TRADEHUB_S3_REGION", ""),
            public_url=_public_url(environ.get("TRADEHUB_PUBLIC_URL", "")),
            webhook_allow_private=_flag("TRADEHUB_WEBHOOK_ALLOW_PRIVATE", environ),
            webhook_retry=_webhook_retry(environ.get("TRADEHUB_WEBHOOK_RETRY", "")),
            webhook_timeout=_webhook_timeout(environ.get("TRADEHUB_WEBHOOK_TIMEOUT", "")),
            personal_data_key=_personal_data_key(environ.get("TRADEHUB_PERSONAL_DATA_KEY", "")),
            personal_data_days=_personal_data_days(environ.get("TRADEHUB_PERSONAL_DATA_DAYS", "")),
        )

    @property
    def keys_dir(self) -> Path:
        """The hub's signing key and the agencies' registered certificates (docs/signing.md)."""
        return keys_directory(self.data_dir, self.keys_dir_override)

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        """Where the embedded store keeps its events."""
        if self.database_url:
            # As elsewhere: sqlite:///relative/path, sqlite:////absolute/path.
            return Path(unquote(self.database_url.removeprefix("sqlite:///")))
        return self.data_dir / "hub.sqlite"


def _public_url(value: str) -> str:
    """http(s)://host[:port][/path], without a query or fragment: the base of the verification links."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment):
        raise ConfigurationError(f"TRADEHUB_PUBLIC_URL must be http(s)://host[:port][/path], got {value[:80]!r}")
    return url


def _flag(name: str, environ: Mapping[str, str]) -> bool:
    value = environ.get(name, "").strip()
    if value not in ("", "0", "1"):
        raise ConfigurationError(f"{name} must be 1 (on) or 0 (off), got {value[:20]!r}")
    return value == "1"


def _webhook_retry(value: str) -> str:
    """The schedule as given, once it is known to parse (followers.webhooks.Schedule.parse)."""
    try:
        Schedule.parse(value or DEFAULT_SCHEDULE)
    except ScheduleError as error:
        raise ConfigurationError(f"TRADEHUB_WEBHOOK_RETRY: {error} (e.g. {DEFAULT_SCHEDULE})") from None
    return value or DEFAULT_SCHEDULE


def _webhook_timeout(value: str) -> float:
    try:
        seconds = float(value or Settings.webhook_timeout)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 60:
        raise ConfigurationError(f"TRADEHUB_WEBHOOK_TIMEOUT must be seconds from 1 to 60, got {value[:20]!r}")
    return seconds


def _personal_data_key(value: str) -> str:
    if value:
        try:
            master_key(value)
        except MasterKeyError as error:
            raise ConfigurationError(f"TRADEHUB_PERSONAL_DATA_KEY: {error}") from None
    return value.strip()


def _personal_data_days(value: str) -> int:
    days = value.strip() or "0"
    if not days.isdigit() or int(days) > 36500:
        raise ConfigurationError(f"TRADEHUB_PERSONAL_DATA_DAYS must be a whole number of days from 0 (keep) to 36500, "
                                 f"got {value[:20]!r}")
    return int(days)


PERSONAL_DATA_KEY_FILE = "personal-data.key"


def personal_data_key(settings: Settings) -> str:
    """The master key that wraps every declaration's data key: TRADEHUB_PERSONAL_DATA_KEY, or the keys
    directory's `personal-data.key`, made (0600, random) by whichever process needs it first. Losing it loses
    every sealed person, as an erasure would; every process of a hub must have the same one."""
    if settings.personal_data_key:
        return settings.personal_data_key
    path = settings.keys_dir / PERSONAL_DATA_KEY_FILE
    if not path.exists():
        # Never seen half written: processes starting together each write their own and link it in place;
        # the first wins and the others read it.
        create_once(path, (new_master_key() + "\n").encode(), 0o600)
    try:
        encoded = path.read_text()
        master_key(encoded)
    except (OSError, MasterKeyError) as error:
        raise ConfigurationError(f"{path}: {getattr(error, 'strerror', None) or error}") from None
    return encoded.strip()


def _party_register(value: str) -> str:
    mode = value.strip().lower() or "off"
    if mode not in REGISTER_MODES:
        raise ConfigurationError(
            f"TRADEHUB_PARTY_REGISTER must be one of {', '.join(REGISTER_MODES)}, got {value[:40]!r}")
    return mode


BROKER_SCHEMES = ("nats://", "tls://", "amqp://", "amqps://")


def _broker_url(url: str) -> str:
    if url and not url.startswith(BROKER_SCHEMES):
        raise ConfigurationError(
            f"TRADEHUB_BROKER_URL must be a NATS URL (nats://host:4222) or a RabbitMQ one "
            f"(amqp://user:password@host:5672/), got {url.split(':', 1)[0]!r}")
    return url


def persistence_env(settings: Settings, schema: str = "") -> dict[str, str]:
    """eventsourcing's environment for the configured store."""
    url = settings.database_url
    if settings.uses_postgres:
        env = _postgres_env(url, schema)
    elif not url or url.startswith("sqlite:///"):
        path = settings.sqlite_path
        path.parent.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
        private_file(path)
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path),
               "APPLICATION_RECORDER_TOPIC": "hub.storage:BatchInsertSQLiteRecorder", "SQLITE_LOCK_TIMEOUT": "30"}
    else:
        raise ConfigurationError(
            "TRADEHUB_DATABASE_URL must start with postgresql:// or sqlite:///, "
            f"got {url.split(':', 1)[0]!r}"
        )
    if settings.cipher_key:
        env |= {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
                "CIPHER_KEY": settings.cipher_key}
    # Declarations are read from their latest snapshot, taken every SNAPSHOT_INTERVAL versions
    # (hub/declarations/snapshots.py, docs/long-streams.md); reading them is on whatever the interval.
    env["IS_SNAPSHOTTING_ENABLED"] = "y"
    return env


def _postgres_env(url: str, schema: str) -> dict[str, str]:
    try:
        params = conninfo_to_dict(url)
    except Exception as error:  # psycopg raises ProgrammingError for malformed URLs
        raise ConfigurationError(f"TRADEHUB_DATABASE_URL is not a valid PostgreSQL URL: {error}") from None
    port = str(params.get("port") or "5432")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"TRADEHUB_DATABASE_URL is not a valid PostgreSQL URL: port {port!r}")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "hub.storage:ArrayInsertRecorder",
        "POSTGRES_DBNAME": str(params.get("dbname") or params.get("user") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": port,
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_POOL_SIZE": "8",
        "POSTGRES_MAX_OVERFLOW": "24",
        "POSTGRES_CONNECT_TIMEOUT": "5",  # seconds to wait for a pooled connection: then 503, try again
    }
    if schema:
        env["POSTGRES_SCHEMA"] = schema
    return env


def routing_rules(settings: Settings) -> RoutingRules:
    return RoutingRules.load(settings.routing_file or None)


def build_declarations(settings: Settings | None = None, *, schema: str = "") -> Declarations:
    settings = settings or Settings.from_env()
    env = persistence_env(settings, schema) | {"PERSONAL_DATA_KEY": personal_data_key(settings)}
    declarations = Declarations(env, routing=routing_rules(settings), party_register=settings.party_register,
                                seal=licence_seal(settings))
    try:
        declarations.data_keys.check()
    except MasterKeyError as error:
        declarations.close()
        where = "TRADEHUB_PERSONAL_DATA_KEY" if settings.personal_data_key else (
            f"{settings.keys_dir / PERSONAL_DATA_KEY_FILE} (or TRADEHUB_PERSONAL_DATA_KEY)")
        raise ConfigurationError(f"{where}: {error}") from None
    return declarations


def licence_seal(settings: Settings) -> JwsSeal:
    """What signs licences for their issuers and verifies every licence's signature (docs/licences.md)."""
    return JwsSeal(settings.keys_dir, Registry(settings.keys_dir), extract=signed_certificate_content)


def build_views(settings: Settings, *, schema: str = "") -> ViewDatabase:
    """The read models' database: beside the SQLite events, or in the hub's PostgreSQL schema."""
    if settings.uses_postgres:
        return PostgresViews(settings.database_url, schema)
    events = settings.sqlite_path
    views = events.with_name(f"{events.stem}-views.sqlite")
    private_file(views)
    return SQLiteViews(views)


def read_models(declarations: Declarations) -> list[Follower]:
    """Every view `worker project` runs and `projections rebuild` rebuilds, in `VIEW_NAMES` order.

    The enforcement process is among them: it writes the alerts view, and placing holds in the same pass over
    the log as the views is what lets it settle releases safely (docs/lifecycle.md, I3).
    """
    return [StatusBoard(declarations), Exchange(), Recognition(declarations), Statistics(),
            Licensing(declarations), Notifications(declarations), AccessLog(), Retention(),
            Enforcement(declarations)]


VIEW_NAMES = (StatusBoard.name, Exchange.name, Recognition.name, Statistics.name, Licensing.name,
              Notifications.name, AccessLog.name, Retention.name, Enforcement.name)


@dataclass
class Hub:
    """Everything a hub process runs on, wired once."""

    settings: Settings
    declarations: Declarations
    views: ViewDatabase
    runner: Followers
    documents: DocumentStore | None = None  # supporting documents' bytes (projections/attachments.py)

    def close(self) -> None:
        self.runner.stop()
        self.views.close()
        self.declarations.close()


def build_hub(settings: Settings | None = None, *, schema: str = "") -> Hub:
    settings = settings or Settings.from_env()
    declarations = build_declarations(settings, schema=schema)
    message_record.seal_bodies(message_sealer(settings), declarations.data_keys)
    views = build_views(settings, schema=schema)
    declarations.sealed_messages = lambda ident: message_record.sealed_under_data_keys(views, str(ident))
    runner = Followers(declarations, views, read_models(declarations))
    views.create(message_record.TABLES)  # the API lists what dispatch records, whichever process starts first
    views.create(dead_letter_record.TABLES)  # and what the consumers dead-letter
    views.create(dispatch_parking.TABLES)  # and what dispatch parks (healthz, metrics, the admin's retry)
    views.create(webhook_record.TABLES)  # and the webhook subscriptions, whichever of the API or the worker is first
    return Hub(settings, declarations, views, runner, document_store(settings))


def document_store(settings: Settings) -> DocumentStore:
    """Where supporting documents are kept: TRADEHUB_DOCUMENT_STORE, by default `<data>/documents`."""
    url = settings.document_store
    if not url:
        return DirectoryStore(settings.data_dir / "documents")
    if url.startswith("file://"):
        return DirectoryStore(Path(unquote(url.removeprefix("file://"))))
    if url.startswith("s3://"):
        try:
            return S3Store(S3Location.parse(url, settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                                            settings.s3_region))
        except ValueError as error:
            raise ConfigurationError(f"TRADEHUB_DOCUMENT_STORE: {error}") from None
    raise ConfigurationError(f"TRADEHUB_DOCUMENT_STORE must be empty, file:///path or s3://bucket[/prefix], "
                             f"got {url.split(':', 1)[0]!r}")


def message_sealer(settings: Settings) -> Sealer:
    """What seals the message bodies the hub records: under TRADEHUB_CIPHER_KEY, or none without it."""
    try:
        return Sealer(settings.cipher_key or None, message_record.PURPOSE)
    except SealError as error:
        raise ConfigurationError(str(error)) from None


# ---- the data directory: the hub's files are its user's alone ---------------------------------------

PRIVATE_UMASK = 0o077  # files 0600, directories 0700: SQLite and its -wal/-shm, the NATS store, keys, secret
PRIVATE_DIRECTORY = 0o700


def keep_private(data_dir: Path) -> None:
    """Make what this process (and every process it starts) creates its user's alone, and close the data
    directory if an older hub, or someone, left it open to others.

    Called first by the processes that write the data directory (`serve`, the workers, `projections
    rebuild`). Only the directory is tightened, not the files already in it: a 0700 directory already keeps
    others from them, and a data directory set to a shared path must not have its whole tree rewritten. A
    directory this user does not own, or a sticky one (/tmp), is left as it is, with a warning.
    """
    os.umask(PRIVATE_UMASK)
    try:
        status = data_dir.stat()
    except FileNotFoundError:
        return  # created by whatever writes first, under the umask
    if not stat.S_ISDIR(status.st_mode) or not status.st_mode & 0o077:
        return
    mode = stat.S_IMODE(status.st_mode)
    if status.st_uid != os.geteuid() or status.st_mode & stat.S_ISVTX:
        print(f"tradehub: warning: the data directory {data_dir} is mode {mode:04o}, open to other users, and "
              "is not this user's own private directory; leaving it as it is: choose another TRADEHUB_DATA_DIR",
              file=sys.stderr)
        return
    data_dir.chmod(PRIVATE_DIRECTORY)
    print(f"tradehub: warning: the data directory {data_dir} was mode {mode:04o}, open to other users; "
          f"changed it to {PRIVATE_DIRECTORY:04o}", file=sys.stderr)


def private_file(path: Path) -> None:
    """Create a SQLite file empty and 0600 if it does not exist, whatever the umask of the command opening it
    first (`token revoke`, say): SQLite gives its -wal and -shm files the database file's mode."""
    if path.name.startswith((":", "file:")):
        return  # an in-memory or URI database: no file of ours
    path.parent.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def build_dispatch(hub: Hub, agencies: Sequence[str], publisher: Publisher) -> Followers:
    """The followers that publish each agency's messages, as `worker dispatch` runs them."""
    return Followers(hub.declarations, hub.views,
                     dispatches(hub.declarations, agencies, publisher, signer=hub_signer(hub.settings.keys_dir)))


def build_webhooks(hub: Hub) -> tuple[Followers, Sender]:
    """What `worker webhooks` runs: the follower that turns notifications into deliveries, in a runner of its
    own (a rebuild of the views must never reach it), and the sender (docs/webhooks.md)."""
    settings = hub.settings
    sender = Sender(webhook_record.Deliveries(hub.views, settings.cipher_key), webhook_guard(settings),
                    Schedule.parse(settings.webhook_retry), timeout=settings.webhook_timeout)
    return Followers(hub.declarations, hub.views, [Webhooks(hub.views)]), sender


def webhook_guard(settings: Settings) -> Guard:
    """Where webhooks may go: public https endpoints, or with TRADEHUB_WEBHOOK_ALLOW_PRIVATE=1 anywhere local."""
    return Guard(allow_private=settings.webhook_allow_private)


def build_inbox(hub: Hub) -> Inbox:
    """What applies agencies' answers, as `worker consume` runs it behind the broker's consumers."""
    return Inbox(hub.declarations, hub.views, dead_letter_record.DeadLetters(hub.views, hub.settings.cipher_key),
                 signatures=Registry(hub.settings.keys_dir))
