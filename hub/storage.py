"""Storage tuned for group commit, as eventsourcing recorder subclasses.

eventsourcing inserts a batch as one array of composite values, which psycopg
dumps as text in Python, hex-encoding every payload: for a batch of
declarations that costs more than the database work. This recorder sends the
same batch as four binary arrays (ids, versions, topics, payloads) in the
same statement shape, keeping everything else the library guarantees: the
table lock that makes commit order match notification order, the NOTIFY that
wakes followers, and the returned notification ids.

It also reads several aggregates' events in one query (`select_streams`),
for callers that act on a batch of aggregates at once.

Each recorder also keeps the declarations' data keys (hub/declarations/
personal_data.py) in `personal_data_keys`, beside the events: a key comes in
with the `Submitted` that introduces it, in the same transaction, and its
erasure overwrites the wrapped key and marks the row, leaving no copy in the
table's storage (SQLite's `secure_delete`; `VACUUM` of the table on
PostgreSQL).

On SQLite, eventsourcing runs one INSERT per event. Each releases the GIL, and
the thread committing for a whole group then waits for it again behind every
thread validating the next declarations: under load a batch's commit costs
several times its work. `BatchInsertSQLiteRecorder` inserts a batch with one
`executemany`.

A lost connection (a failover, `pg_terminate_backend`, a restarted server)
costs one retry, not an error: the pool's idle connections are checked, the
dead ones replaced, and the call runs once more on a fresh one. Should that
fail too, or no connection come within the pool's wait, the store is
unavailable (`StoreUnavailable`), which callers answer with "try again
later". eventsourcing's own policy, ten attempts each waiting up to the
pool's timeout, would hold a request for minutes while the database is down.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from hub.declarations.personal_data import new_keys as _new_keys

KEY_TABLE = "personal_data_keys"
_CREATE_LOCK = 0x7472616465657673  # the advisory lock that serialises creating the event tables ("tradeevs")

# SQLSTATEs that mean the session is gone, not that the statement was wrong: class 08 (connection exception),
# admin_shutdown (pg_terminate_backend, a failover), crash_shutdown, cannot_connect_now (starting or stopping).
_SESSION_GONE = ("08", "57P01", "57P02", "57P03")


class StoreUnavailable(Exception):
    """The database cannot be reached now: its connections were lost and a fresh one failed too, or none came
    within the pool's wait. Nothing was changed by the call that raised it, or (for a write whose commit was
    under way) it is as if the call had not returned; try again later."""

    retry_after = 5  # seconds a client is told to wait before trying again


def connection_lost(error: BaseException) -> bool:
    """Whether `error` (psycopg's, or eventsourcing's wrapping of it) says the connection died under the call."""
    cause = error if isinstance(error, psycopg.Error) else error.__cause__
    if not isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError) or pool_exhausted(cause):
        return False
    state = cause.sqlstate
    return state is None or state.startswith(_SESSION_GONE)


def pool_exhausted(error: BaseException) -> bool:
    """No connection within the pool's wait: the server is down or unreachable, or every connection is busy.

    psycopg_pool's PoolTimeout, known by its module: the hub core imports no pool library (pyproject's contracts).
    """
    cause = error if isinstance(error, psycopg.Error) else error.__cause__
    return isinstance(cause, psycopg.OperationalError) and type(cause).__module__.startswith("psycopg_pool")


Method = TypeVar("Method", bound=Callable[..., Any])


def _once_more(method: Method) -> Method:
    """eventsourcing's undecorated recorder method, run again once after a lost connection (module docstring)."""
    method = getattr(method, "__wrapped__", method)

    @functools.wraps(method)
    def again(self: ArrayInsertRecorder, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (InterfaceError, OperationalError, psycopg.OperationalError, psycopg.InterfaceError) as error:
            if pool_exhausted(error):
                raise StoreUnavailable(f"no database connection: {error}") from error
            if not connection_lost(error):
                raise
            self.datastore.pool.check()  # every idle connection the server closed too is replaced
        try:
            return method(self, *args, **kwargs)
        except (InterfaceError, OperationalError, psycopg.OperationalError, psycopg.InterfaceError) as error:
            if pool_exhausted(error) or connection_lost(error):
                raise StoreUnavailable(f"the database connection was lost twice: {error}") from error
            raise

    return again  # type: ignore[return-value]


class ArrayInsertRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        names = {"schema": Identifier(datastore.schema), "table": Identifier(events_table_name),
                 "id_type": Identifier(datastore.originator_id_type)}
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(**names)
        self.select_streams_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s::{id_type}[]) ORDER BY originator_id, originator_version"
        ).format(**names)
        keys = {"schema": Identifier(datastore.schema), "keys": Identifier(KEY_TABLE)}
        self.create_keys_statement = SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.{keys} (declaration_id uuid PRIMARY KEY, key_id text NOT NULL, "
            "wrapped bytea, created_at timestamptz NOT NULL DEFAULT now(), erased_at timestamptz)").format(**keys)
        self.insert_keys_statement = SQL(
            "INSERT INTO {schema}.{keys} (declaration_id, key_id, wrapped) "
            "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::bytea[])").format(**keys)
        self.select_key_statement = SQL(
            "SELECT key_id, wrapped FROM {schema}.{keys} WHERE declaration_id = %s").format(**keys)
        self.erase_key_statement = SQL(
            "UPDATE {schema}.{keys} SET wrapped = NULL, erased_at = now() "
            "WHERE declaration_id = %s AND wrapped IS NOT NULL").format(**keys)
        self.vacuum_keys_statement = SQL("VACUUM {schema}.{keys}").format(**keys)
        self.some_key_statement = SQL(
            "SELECT declaration_id, key_id, wrapped FROM {schema}.{keys} WHERE wrapped IS NOT NULL LIMIT 1"
        ).format(**keys)

    def create_table(self) -> None:
        """eventsourcing's tables, index, NOTIFY function and trigger, one process at a time.

        `CREATE OR REPLACE FUNCTION` and `CREATE ... IF NOT EXISTS` race when processes start together
        (serve's workers do): PostgreSQL then fails one with "tuple concurrently updated" or a unique
        violation in its catalogue. A session advisory lock, held on a connection of its own while the
        library creates everything, makes the others wait instead.
        """
        with self.datastore.get_connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (_CREATE_LOCK,))
            try:
                super().create_table()
                with self.datastore.transaction(commit=True) as cursor:
                    cursor.execute(self.create_keys_statement)
                # The snapshots' table too, which eventsourcing's own recorder for them creates without a lock
                # right after: it then finds the table there and changes no catalogue.
                snapshots = self.events_table_name.removesuffix("_events") + "_snapshots"
                PostgresAggregateRecorder(self.datastore, events_table_name=snapshots).create_table()
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK,))

    insert_events = _once_more(PostgresApplicationRecorder.insert_events)
    select_events = _once_more(PostgresApplicationRecorder.select_events)
    select_notifications = _once_more(PostgresApplicationRecorder.select_notifications)
    max_notification_id = _once_more(PostgresApplicationRecorder.max_notification_id)

    @_once_more
    def select_streams(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of these aggregates, in one query: each aggregate's in version order."""
        with self.datastore.get_connection() as connection, connection.cursor() as cursor:
            cursor.execute(self.select_streams_statement, (list(originator_ids),), prepare=True)
            return [StoredEvent(originator_id=row["originator_id"], originator_version=row["originator_version"],
                                topic=row["topic"], state=bytes(row["state"])) for row in cursor.fetchall()]

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        keyed = _new_keys(stored_events)
        if keyed:  # first: the events' INSERT must be the last statement, whose returned ids eventsourcing fetches
            curs.execute(self.insert_keys_statement, ([ident for ident, _, _ in keyed], [key for _, key, _ in keyed],
                                                      [wrapped for _, _, wrapped in keyed]))
        curs.execute(
            self.insert_events_statement,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
        )

    @_once_more
    def select_data_key(self, declaration_id: UUID) -> tuple[str, bytes | None] | None:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.select_key_statement, (declaration_id,), prepare=True)
            row = cursor.fetchone()
        if row is None:
            return None
        return row["key_id"], None if row["wrapped"] is None else bytes(row["wrapped"])

    @_once_more
    def select_some_data_key(self) -> tuple[UUID, str, bytes] | None:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self.some_key_statement)
            row = cursor.fetchone()
        return None if row is None else (row["declaration_id"], row["key_id"], bytes(row["wrapped"]))

    @_once_more
    def erase_data_key(self, declaration_id: UUID) -> bool:
        """Overwrite the key, then VACUUM the table, so that the old row's bytes are not left in its pages."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self.erase_key_statement, (declaration_id,))
            erased = cursor.rowcount > 0
        with self.datastore.get_connection() as connection:
            autocommit = connection.autocommit
            connection.autocommit = True  # VACUUM runs outside a transaction
            try:
                connection.execute(self.vacuum_keys_statement)
            finally:
                connection.autocommit = autocommit
        return erased


class BatchInsertSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite recorder, inserting a batch of events with as few statement executions as it can.

    The sqlite3 module lets go of the GIL around every step of a statement, and `executemany` steps once per row.
    The thread that commits for a whole group (`GroupCommit`) then waits to get the GIL back once per row,
    behind every thread busy validating the next declarations: a commit of 25 rows took six milliseconds,
    mostly waiting. One multi-row INSERT is one step, so the committing thread waits once."""

    ROWS_PER_STATEMENT = 200  # 800 parameters: under SQLite's oldest limit on them (999)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} (declaration_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
                "wrapped BLOB, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')), erased_at TEXT)"]

    def select_data_key(self, declaration_id: UUID) -> tuple[str, bytes | None] | None:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT key_id, wrapped FROM {KEY_TABLE} WHERE declaration_id = ?", (declaration_id.hex,))
            row = cursor.fetchone()
        return None if row is None else (row[0], row[1])

    def select_some_data_key(self) -> tuple[UUID, str, bytes] | None:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT declaration_id, key_id, wrapped FROM {KEY_TABLE} WHERE wrapped IS NOT NULL LIMIT 1")
            row = cursor.fetchone()
        return None if row is None else (UUID(row[0]), row[1], row[2])

    def erase_data_key(self, declaration_id: UUID) -> bool:
        """Overwrite the key with SQLite's secure_delete on, then checkpoint the WAL into the database file, so
        that neither file keeps the old row's bytes (a checkpoint that readers hold back finishes later)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.execute(f"UPDATE {KEY_TABLE} SET wrapped = NULL, erased_at = strftime('%Y-%m-%dT%H:%M:%fZ') "
                           "WHERE declaration_id = ? AND wrapped IS NOT NULL RETURNING key_id", (declaration_id.hex,))
            erased = cursor.fetchone() is not None
        with self.datastore.get_connection(commit=True) as connection:
            connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # outside a transaction, or it waits
        return erased

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        keyed = _new_keys(stored_events)
        if keyed:  # first: the events' last INSERT gives the rowids below
            c.executemany(f"INSERT INTO {KEY_TABLE} (declaration_id, key_id, wrapped) VALUES (?,?,?)",
                          [(ident.hex, key, wrapped) for ident, key, wrapped in keyed])
        rows = self.ROWS_PER_STATEMENT
        for start in range(0, len(stored_events), rows):
            chunk = stored_events[start:start + rows]
            c.execute(_insert_rows(self.events_table_name, len(chunk)), [
                value for event in chunk
                for value in (event.originator_id.hex if isinstance(event.originator_id, UUID)
                              else event.originator_id, event.originator_version, event.topic, event.state)])
        # Rowids are the notification ids. Inside this write transaction nobody else inserts, and SQLite gives a
        # new row the largest rowid plus one, so the batch's rows are the last len(stored_events) ids.
        last = c.lastrowid
        return list(range(last - len(stored_events) + 1, last + 1))


@functools.lru_cache(maxsize=256)
def _insert_rows(table: str, count: int) -> str:
    return f"INSERT INTO {table} VALUES " + ",".join(["(?,?,?,?)"] * count)
