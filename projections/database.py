"""Where read models live, and how they track their place in the event log.

On the embedded default the views are a SQLite file beside the events
(`hub-views.sqlite` beside `hub.sqlite`); on PostgreSQL they are tables in the hub's own database and
schema. Statements are written once with `?` placeholders; a statement over
many rows is written once too, set-based, with `{rows}` for its row source
(`Cursor.bulk`). Each view commits
its rows together with its tracking position, and the position only moves
forward from the value the view started from, so two runners racing on one
view cannot both apply the same events.

On PostgreSQL a connection the server dropped (a failover, `pg_terminate_backend`)
is found when it fails, not by a ping before every use: the pool's idle
connections are then checked and the dead ones replaced, and a read runs once
more on a fresh one. A writer's transaction is not run again here: it raises
`StoreUnavailable`, and the follower that wrote it steps again from its tracked
position. No connection within `POOL_WAIT` seconds is `StoreUnavailable` too.

A rebuild is blue/green (docs/rebuilds.md): the views are built afresh in a
shadow space beside the live ones (`rebuilding`: a schema of their own on
PostgreSQL, a file of their own on SQLite), then swapped in, rows and position,
in one transaction (`swap`) that the live views' writers wait for (`guard`).
Readers keep reading the old views until that transaction commits, and the
new ones after it: never an empty or half-built view.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from hub.storage import StoreUnavailable, connection_lost, pool_exhausted

POOL_WAIT = 5.0  # seconds a caller waits for a connection before the store is called unavailable
CONNECT_TIMEOUT = 5  # seconds libpq tries one server, unless the URL says otherwise (its default is forever)
COPY_ROWS = 1000  # from this many rows `Cursor.bulk` loads them with COPY on PostgreSQL; fewer go as arrays

TRACKING_TABLES = (
    "CREATE TABLE IF NOT EXISTS projection_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    # A view that keeps failing says so here, for /healthz in whichever process serves it.
    "CREATE TABLE IF NOT EXISTS projection_failures (name TEXT PRIMARY KEY, error TEXT NOT NULL,"
    " since TEXT NOT NULL)",
)


class Cursor(Protocol):
    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[tuple]: ...
    def fetchone(self) -> tuple | None: ...

    def bulk(self, sql: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `sql` once for a set of rows: its `{rows}` is a row source named `batch`, with `columns`.

        `columns` declares them, as in a table ("declaration_id text, seconds double precision"). On
        PostgreSQL the rows go as one array per column, unnested in one statement; on SQLite, which is
        in-process, the statement runs once per row. A statement must mean the same either way: no key
        may appear twice in one call where order would matter (see `rounds`).
        """


def rounds(rows: Sequence[Sequence[Any]], key: Any) -> list[list[Sequence[Any]]]:
    """Rows split so that no key comes twice in one round; a key's rows stay in their order across rounds.

    Run one set-based statement per round, in order, and each key sees its rows one after the other, as
    the log gave them; different keys never depend on each other.
    """
    split: list[list[Sequence[Any]]] = []
    seen: dict[Any, int] = {}
    for row in rows:
        index = seen[key(row)] = seen.get(key(row), -1) + 1
        if index == len(split):
            split.append([])
        split[index].append(row)
    return split


def _columns(columns: str) -> tuple[list[str], list[str]]:
    """`"a text, b double precision"` as names and types."""
    names, types = [], []
    for column in columns.split(","):
        name, _, kind = column.strip().partition(" ")
        names.append(name)
        types.append(kind.strip())
    return names, types


_CREATE_LOCK = 0x7472616465687562  # "tradehub": the advisory lock that serialises creating view tables


class StaleTracking(Exception):
    """Another runner moved this view's position first; the transaction is rolled back."""


class RebuildRunning(RuntimeError):
    """Another rebuild of these views is under way; one at a time."""


# Given the live views' positions, the shadow's followers caught up to at least them: the shadow's positions.
CatchUp = Callable[[Mapping[str, int]], Mapping[str, int]]


def _lock_key(purpose: str, space: str) -> int:
    """A PostgreSQL advisory lock key of its own for each purpose and hub schema (hubs may share a database)."""
    return int.from_bytes(hashlib.blake2b(f"tradehub {purpose} {space}".encode(), digest_size=8).digest(),
                          "big", signed=True)


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class ViewDatabase:
    """A database of read models: transactions for writers, queries for readers."""

    def transaction(self) -> Any:  # a context manager yielding a Cursor
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.transaction() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def create(self, statements: Sequence[str]) -> None:
        with self.transaction() as cursor:
            for statement in (*TRACKING_TABLES, *statements):
                cursor.execute(statement)

    def positions(self, prefix: str) -> dict[str, int]:
        """The tracked position of every view whose name starts with `prefix`."""
        return dict(self.query("SELECT name, position FROM projection_tracking WHERE name LIKE ?", (prefix + "%",)))

    def position(self, name: str) -> int:
        rows = self.query("SELECT position FROM projection_tracking WHERE name = ?", (name,))
        return rows[0][0] if rows else 0

    def report_failure(self, name: str, error: str | None) -> None:
        """Record that a view is stuck (with why), or that it runs again (None)."""
        with self.transaction() as cursor:
            if error is None:
                cursor.execute("DELETE FROM projection_failures WHERE name = ?", (name,))
            else:
                cursor.execute(
                    "INSERT INTO projection_failures (name, error, since) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET error = excluded.error",
                    (name, error, datetime.now(timezone.utc).isoformat()))

    def failures(self) -> dict[str, str]:
        return dict(self.query("SELECT name, error FROM projection_failures"))

    def guard(self, cursor: Cursor) -> None:
        """First thing in a transaction that writes views: wait while a rebuild swaps views in (and keep it
        waiting until this transaction ends). SQLite's one writer at a time does this by itself."""

    def rebuilding(self) -> Any:  # a context manager yielding the shadow ViewDatabase
        """A fresh, empty space for views built beside these; one rebuild at a time (RebuildRunning), and the
        space is removed afterwards, swapped in or not. A rebuild that died left its space behind: it is
        emptied first."""
        raise NotImplementedError

    def swap(self, shadow: ViewDatabase, views: Mapping[str, Sequence[str]], catch_up: CatchUp) -> dict[str, int]:
        """In one transaction: the shadow's `views` (name: its tables) caught up to at least the live ones'
        positions with `catch_up`, then their tables and positions put in place of the live ones'. Readers
        see the old views until it commits, the new ones after; the live views' writers wait (`guard`), then
        find their position moved (StaleTracking) and read on from it. The positions now live."""
        raise NotImplementedError

    @staticmethod
    def _live_positions(cursor: Cursor, names: Sequence[str]) -> dict[str, int]:
        cursor.execute(f"SELECT name, position FROM projection_tracking WHERE name IN "
                       f"({', '.join('?' for _ in names)})", list(names))
        return dict(cursor.fetchall())

    @staticmethod
    def _track(cursor: Cursor, positions: Mapping[str, int]) -> None:
        for name, position in positions.items():
            cursor.execute("INSERT INTO projection_tracking (name, position) VALUES (?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET position = excluded.position", (name, position))
            cursor.execute("DELETE FROM projection_failures WHERE name = ?", (name,))

    @staticmethod
    def advance(cursor: Cursor, name: str, start: int, end: int) -> None:
        """Move `name` from `start` to `end` inside the caller's transaction, or raise StaleTracking."""
        if start == 0:
            cursor.execute("INSERT INTO projection_tracking (name, position) VALUES (?, 0) "
                           "ON CONFLICT (name) DO NOTHING", (name,))
        cursor.execute("UPDATE projection_tracking SET position = ? WHERE name = ? AND position = ?",
                       (end, name, start))
        if cursor.rowcount != 1:
            raise StaleTracking(name)


class _SQLiteCursor(sqlite3.Cursor):
    def bulk(self, sql: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            names, _ = _columns(columns)
            source = f"(SELECT {', '.join(f'? AS {name}' for name in names)}) AS batch"
            self.executemany(sql.replace("{rows}", source), rows)


class SQLiteViews(ViewDatabase):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                         check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteCursor]:
        connection = self._connection()
        cursor = connection.cursor(_SQLiteCursor)
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            connection.rollback()
            raise
        connection.commit()

    @contextmanager
    def rebuilding(self) -> Iterator[SQLiteViews]:
        lock = self.path.with_name(f"{self.path.name}.rebuild-lock").open("a")
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RebuildRunning(f"another rebuild of the views in {self.path} is under way") from None
            path = self.path.with_name(f"{self.path.stem}-rebuild.sqlite")
            _remove_sqlite(path)
            shadow = SQLiteViews(path)
            try:
                yield shadow
            finally:
                shadow.close()
                _remove_sqlite(path)
        finally:
            lock.close()  # and with it the lock

    def swap(self, shadow: ViewDatabase, views: Mapping[str, Sequence[str]], catch_up: CatchUp) -> dict[str, int]:
        assert isinstance(shadow, SQLiteViews)
        connection = self._connection()
        connection.execute("ATTACH DATABASE ? AS rebuilt", (str(shadow.path),))  # not allowed in a transaction
        try:
            cursor = connection.cursor(_SQLiteCursor)
            # Deferred, then a write to the live file only: BEGIN IMMEDIATE would lock the attached shadow for
            # writing too, and `catch_up` writes it on a connection of its own. From this write on, the live
            # views' writers wait; the shadow is only read, after it has caught up.
            cursor.execute("BEGIN")
            try:
                cursor.execute("UPDATE main.projection_tracking SET position = position WHERE false")
                positions = dict(catch_up(self._live_positions(cursor, list(views))))
                for table in (table for tables in views.values() for table in tables):
                    cursor.execute("SELECT sql FROM rebuilt.sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL"
                                   " ORDER BY type = 'index'", (table,))  # the table, then its indexes
                    definitions = [sql for (sql,) in cursor.fetchall()]
                    cursor.execute(f"DROP TABLE IF EXISTS main.{quoted(table)}")
                    for sql in definitions:
                        cursor.execute(sql)  # unqualified: created in main
                    cursor.execute(f"INSERT INTO main.{quoted(table)} SELECT * FROM rebuilt.{quoted(table)}")
                self._track(cursor, positions)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            connection.execute("DETACH DATABASE rebuilt")
        return positions

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._connection().execute(sql, params).fetchall()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class _PostgresCursor:
    """Lets statements written with `?` run on psycopg."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(sql.replace("?", "%s"), rows)

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def bulk(self, sql: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        names, types = _columns(columns)
        if len(rows) >= COPY_ROWS:
            self._cursor.execute(sql.replace("{rows}", f"{self._copied(columns, names, rows)} AS batch"))
            return
        source = f"unnest({', '.join(f'%b::{kind}[]' for kind in types)}) AS batch ({', '.join(names)})"
        self._cursor.execute(sql.replace("{rows}", source), [list(column) for column in zip(*rows, strict=True)])

    def _copied(self, columns: str, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        """The rows COPYed into a temporary table of these columns (the connection's own, emptied first and at
        commit); its name. For a rebuild's batches: COPY takes rows at a third of the client's CPU that arrays
        of each column cost, and the server's time falls too."""
        table = "bulk_" + hashlib.blake2b(columns.encode(), digest_size=6).hexdigest()
        self._cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DELETE ROWS")
        self._cursor.execute(f"TRUNCATE {table}")  # the same columns may be loaded twice in one transaction
        with self._cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return table


class _ConnectionLost(StoreUnavailable):
    """The connection died under a transaction; the pool has been checked, so a read may run once more."""


class PostgresViews(ViewDatabase):
    """Views in the hub's PostgreSQL schema (`schema`; "" for the server's default). `shadow_of`: the live
    views' schema, when this is a rebuild's shadow (in a schema of its own)."""

    def __init__(self, url: str, schema: str = "", max_size: int = 16, *, shadow_of: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self.shadow_of = shadow_of
        extra = {} if "connect_timeout" in conninfo_to_dict(url) else {"connect_timeout": CONNECT_TIMEOUT}
        if schema:
            extra["options"] = f"-c search_path={schema}"
        self._pool = ConnectionPool(make_conninfo(url, **extra), min_size=1, max_size=max_size, open=True,
                                    name="views", timeout=POOL_WAIT)

    @contextmanager
    def transaction(self) -> Iterator[_PostgresCursor]:
        try:
            with self._pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
                yield _PostgresCursor(cursor)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            if pool_exhausted(error):
                raise StoreUnavailable(f"no connection to the views' database within {POOL_WAIT:g} s") from error
            if not connection_lost(error):
                raise
            self._pool.check()  # the server dropped this one; its idle siblings are likely dead too
            raise _ConnectionLost(f"the connection to the views' database was lost: {error}") from error

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read, run once more on a fresh connection if the first one was lost under it."""
        try:
            return super().query(sql, params)
        except _ConnectionLost:
            pass
        try:
            return super().query(sql, params)
        except _ConnectionLost as error:
            raise StoreUnavailable(f"the views' database lost two connections in a row: {error}") from error

    def create(self, statements: Sequence[str]) -> None:
        # CREATE TABLE IF NOT EXISTS races between processes starting together (a unique violation in
        # pg_type): one at a time, under a transaction-scoped advisory lock.
        with self.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(?)", (_CREATE_LOCK,))
            for statement in (*TRACKING_TABLES, *statements):
                cursor.execute(statement)

    def guard(self, cursor: Cursor) -> None:
        if self.shadow_of is None:  # a shadow's writers are the rebuild's own
            cursor.execute("SELECT pg_advisory_xact_lock_shared(?)", (self._key("swap"),))

    def _key(self, purpose: str) -> int:
        return _lock_key(purpose, self.schema)

    @contextmanager
    def rebuilding(self) -> Iterator[PostgresViews]:
        with self._pool.connection() as holder:  # holds the session lock for the rebuild's length
            holder.autocommit = True
            try:
                if not holder.execute("SELECT pg_try_advisory_lock(%s)", (self._key("rebuild"),)).fetchone()[0]:
                    raise RebuildRunning(f"another rebuild of the views in schema {self.schema or 'public'} is "
                                         "under way")
                try:
                    yield from self._shadow(holder)
                finally:
                    holder.execute("SELECT pg_advisory_unlock(%s)", (self._key("rebuild"),))
            finally:
                holder.autocommit = False  # as the pool's other users expect it

    def _shadow(self, holder: psycopg.Connection) -> Iterator[PostgresViews]:
        """A fresh schema `<live>_rebuild` and views in it, dropped afterwards (and first: a dead rebuild's)."""
        live = holder.execute("SELECT current_schema()").fetchone()[0]
        name = f"{live}_rebuild"
        holder.execute(f"DROP SCHEMA IF EXISTS {quoted(name)} CASCADE")
        holder.execute(f"CREATE SCHEMA {quoted(name)}")
        shadow = PostgresViews(self.url, name, max_size=4, shadow_of=live)
        try:
            yield shadow
        finally:
            shadow.close()
            holder.execute(f"DROP SCHEMA IF EXISTS {quoted(name)} CASCADE")

    def swap(self, shadow: ViewDatabase, views: Mapping[str, Sequence[str]], catch_up: CatchUp) -> dict[str, int]:
        assert isinstance(shadow, PostgresViews) and shadow.shadow_of is not None
        with self.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(?)", (self._key("swap"),))  # the live writers wait
            positions = dict(catch_up(self._live_positions(cursor, list(views))))
            live, rebuilt = quoted(shadow.shadow_of), quoted(shadow.schema)
            for table in (quoted(table) for tables in views.values() for table in tables):
                # Moved, not copied: the indexes go with the table, and a reader waiting on the old one's
                # lock looks its name up again once this commits, finding the new one.
                cursor.execute(f"DROP TABLE IF EXISTS {live}.{table}")
                cursor.execute(f"ALTER TABLE {rebuilt}.{table} SET SCHEMA {live}")
            self._track(cursor, positions)
        return positions

    def close(self) -> None:
        self._pool.close()


def _remove_sqlite(path: Path) -> None:
    """A SQLite database and its write-ahead log."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        try:
            os.unlink(path.with_name(name))
        except FileNotFoundError:
            pass
