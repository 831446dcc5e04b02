"""The PostgreSQL recorder that inserts batches as binary arrays keeps the library's promises."""

from __future__ import annotations

import pytest

from hub.declarations import Declaration, content_hash, validate_document
from hub.storage import ArrayInsertRecorder, BatchInsertSQLiteRecorder
from tradehub.bootstrap import Settings, build_declarations

from . import samples


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request, tmp_path):
    if request.param == "postgres":
        url, schema = request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_schema")
        application = build_declarations(Settings(tmp_path, url), schema=schema)
    else:
        application = build_declarations(Settings(tmp_path))
    yield application
    application.close()


def _declaration(app, reference: str) -> Declaration:
    document = validate_document(samples.goods(reference=reference))
    return Declaration(kind="goods", declarant=samples.TRADER_A, reference=reference, document=document,
                       content_hash=content_hash(document), routes=app.routing.route(document))


# SQLite inserts up to ROWS_PER_STATEMENT rows per statement: batches of one statement, and of several
SIZES = [25, 2 * BatchInsertSQLiteRecorder.ROWS_PER_STATEMENT + 7]


@pytest.mark.parametrize("size", SIZES)
def test_a_batch_gets_ascending_notification_ids_in_event_order(app, size):
    assert isinstance(app.recorder, ArrayInsertRecorder | BatchInsertSQLiteRecorder)
    app.save(_declaration(app, "BEFORE"))  # ids must follow the rows already there, not start at 1
    batch = [_declaration(app, f"BATCH-{n}") for n in range(size)]
    recordings = app.save(*batch)
    ids = [recording.notification.id for recording in recordings]
    assert ids == sorted(ids) and len(set(ids)) == size
    notifications = app.recorder.select_notifications(start=ids[0], limit=size + 10)
    assert [n.originator_id for n in notifications] == [d.id for d in batch]
    assert [n.id for n in notifications] == ids
    assert app.get(batch[7].id).reference == "BATCH-7"


@pytest.mark.parametrize("size", SIZES)
def test_a_duplicate_in_a_batch_rolls_the_whole_batch_back(app, size):
    from eventsourcing.persistence import IntegrityError

    app.save(_declaration(app, "TAKEN"))
    before = app.recorder.max_notification_id()
    with pytest.raises(IntegrityError):  # the duplicate last: in the last statement of a batch of several
        app.save(*[_declaration(app, f"FRESH-{n}") for n in range(size - 1)], _declaration(app, "TAKEN"))
    after = [n.originator_id for n in app.recorder.select_notifications(start=1, limit=10)]
    assert len(after) == 1 and app.recorder.max_notification_id() == before


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_starting_together_create_the_event_tables_without_a_catalogue_race(postgres_url, tmp_path):
    """serve starts its workers at once, and each creates eventsourcing's tables, function and trigger."""
    import subprocess
    import sys

    import psycopg

    schema = "race_" + tmp_path.name[-8:].lower().replace("-", "_")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    code = ("import sys; from pathlib import Path; from tradehub.bootstrap import Settings, build_declarations; "
            "build_declarations(Settings(data_dir=Path(sys.argv[1]), database_url=sys.argv[2]), "
            "schema=sys.argv[3]).close()")
    try:
        for _ in range(3):  # a race needs a few tries to show
            processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), postgres_url, schema],
                                          stderr=subprocess.PIPE, text=True) for _ in range(6)]
            failures = [process.communicate(timeout=60)[1] for process in processes if process.wait(60)]
            assert not failures, failures[0]
            with psycopg.connect(postgres_url, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema} CASCADE")
                connection.execute(f"CREATE SCHEMA {schema}")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
