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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

_CREATE_LOCK = 0x7472616465657673  # the advisory lock that serialises creating the event tables ("tradeevs")


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
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK,))

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
        curs.execute(
            self.insert_events_statement,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
        )
