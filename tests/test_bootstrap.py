"""Configuration from the environment becomes the right store, or a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradehub.bootstrap import ConfigurationError, Settings, build_declarations, persistence_env


def test_the_default_is_sqlite_under_the_data_directory(tmp_path: Path):
    env = persistence_env(Settings.from_env({"TRADEHUB_DATA_DIR": str(tmp_path / "data")}))
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(tmp_path / "data" / "hub.sqlite")
    assert (tmp_path / "data").is_dir()


def test_the_data_directory_defaults_to_var():
    assert Settings.from_env({}).data_dir == Path("var")


@pytest.mark.parametrize("url, path", [
    ("sqlite:///relative/hub.db", "relative/hub.db"),
    ("sqlite:////absolute/hub.db", "/absolute/hub.db"),
])
def test_sqlite_urls(url: str, path: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if path.startswith("/"):
        url, path = url.replace("/absolute", str(tmp_path)), path.replace("/absolute", str(tmp_path))
    assert persistence_env(Settings(database_url=url))["SQLITE_DBNAME"] == path


@pytest.mark.parametrize("url, expected", [
    ("postgresql://hub:s3cret@db.example:6543/trade",
     {"POSTGRES_HOST": "db.example", "POSTGRES_PORT": "6543", "POSTGRES_USER": "hub",
      "POSTGRES_PASSWORD": "s3cret", "POSTGRES_DBNAME": "trade"}),
    ("postgresql://postgres@/tradehub?host=/run/postgresql",
     {"POSTGRES_HOST": "/run/postgresql", "POSTGRES_PORT": "5432", "POSTGRES_USER": "postgres",
      "POSTGRES_PASSWORD": "", "POSTGRES_DBNAME": "tradehub"}),
])
def test_postgresql_urls(url: str, expected: dict[str, str]):
    env = persistence_env(Settings(database_url=url), schema="hub")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert {key: env[key] for key in expected} == expected
    assert env["POSTGRES_SCHEMA"] == "hub"


@pytest.mark.parametrize("url, message", [
    ("mysql://root@localhost/hub", "must start with postgresql:// or sqlite:///, got 'mysql'"),
    ("postgresql://host:notaport/db", "not a valid PostgreSQL URL"),
])
def test_unusable_database_urls_are_refused_by_name(url: str, message: str):
    with pytest.raises(ConfigurationError, match=message):
        persistence_env(Settings(database_url=url))


def test_a_cipher_key_turns_on_encryption(tmp_path: Path):
    env = persistence_env(Settings(tmp_path, cipher_key="k"))
    assert env["CIPHER_TOPIC"] == "eventsourcing.cryptography:AESCipher" and env["CIPHER_KEY"] == "k"


def test_a_store_written_with_a_key_cannot_be_read_without_it(tmp_path: Path):
    from eventsourcing.cryptography import AESCipher
    from eventsourcing.persistence import MapperDeserialisationError

    from . import samples

    keyed = build_declarations(Settings(tmp_path, cipher_key=AESCipher.create_key(32)))
    declaration_id = keyed.submit(samples.goods()).declaration.id
    keyed.close()
    plain = build_declarations(Settings(tmp_path))
    try:
        with pytest.raises(MapperDeserialisationError):
            plain.get(declaration_id)
    finally:
        plain.close()
