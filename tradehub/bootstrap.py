"""The one place where configuration becomes wired objects.

Configuration comes from the environment (docs/configuration.md): `TRADEHUB_DATABASE_URL`
(`postgresql://…` selects PostgreSQL; unset means SQLite under the data
directory), `TRADEHUB_DATA_DIR` (default `./var`), `TRADEHUB_ROUTING_FILE`
and `TRADEHUB_CIPHER_KEY`. Nothing connects at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict

from followers.dispatch import Publisher, dispatches
from followers.enforcement import Enforcement
from followers.inbox import Inbox
from followers.runner import Follower, Followers
from hub.declarations import Declarations, RoutingRules
from projections import messages as message_record
from projections.database import PostgresViews, SQLiteViews, ViewDatabase
from projections.exchange import Exchange
from projections.recognition import Recognition
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
        )

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
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path),
               "SQLITE_LOCK_TIMEOUT": "30"}
    else:
        raise ConfigurationError(
            "TRADEHUB_DATABASE_URL must start with postgresql:// or sqlite:///, "
            f"got {url.split(':', 1)[0]!r}"
        )
    if settings.cipher_key:
        env |= {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
                "CIPHER_KEY": settings.cipher_key}
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
        "POSTGRES_CONNECT_TIMEOUT": "10",
    }
    if schema:
        env["POSTGRES_SCHEMA"] = schema
    return env


def routing_rules(settings: Settings) -> RoutingRules:
    return RoutingRules.load(settings.routing_file or None)


def build_declarations(settings: Settings | None = None, *, schema: str = "") -> Declarations:
    settings = settings or Settings.from_env()
    return Declarations(persistence_env(settings, schema), routing=routing_rules(settings))


def build_views(settings: Settings, *, schema: str = "") -> ViewDatabase:
    """The read models' database: beside the SQLite events, or in the hub's PostgreSQL schema."""
    if settings.uses_postgres:
        return PostgresViews(settings.database_url, schema)
    events = settings.sqlite_path
    return SQLiteViews(events.with_name(f"{events.stem}-views.sqlite"))


def read_models(declarations: Declarations) -> list[Follower]:
    """Every view `worker project` runs and `projections rebuild` rebuilds, in `VIEW_NAMES` order.

    The enforcement process is among them: it writes the alerts view, and placing holds in the same pass over
    the log as the views is what lets it settle releases safely (docs/lifecycle.md, I3).
    """
    return [StatusBoard(declarations), Exchange(), Recognition(declarations), Statistics(),
            Enforcement(declarations)]


VIEW_NAMES = (StatusBoard.name, Exchange.name, Recognition.name, Statistics.name, Enforcement.name)


@dataclass
class Hub:
    """Everything a hub process runs on, wired once."""

    settings: Settings
    declarations: Declarations
    views: ViewDatabase
    runner: Followers

    def close(self) -> None:
        self.runner.stop()
        self.views.close()
        self.declarations.close()


def build_hub(settings: Settings | None = None, *, schema: str = "") -> Hub:
    settings = settings or Settings.from_env()
    declarations = build_declarations(settings, schema=schema)
    views = build_views(settings, schema=schema)
    runner = Followers(declarations, views, read_models(declarations))
    views.create(message_record.TABLES)  # the API lists what dispatch records, whichever process starts first
    return Hub(settings, declarations, views, runner)


def build_dispatch(hub: Hub, agencies: Sequence[str], publisher: Publisher) -> Followers:
    """The followers that publish each agency's messages, as `worker dispatch` runs them."""
    return Followers(hub.declarations, hub.views, dispatches(hub.declarations, agencies, publisher))


def build_inbox(hub: Hub) -> Inbox:
    """What applies agencies' answers, as `worker consume` runs it behind the broker's consumers."""
    return Inbox(hub.declarations, hub.views)
