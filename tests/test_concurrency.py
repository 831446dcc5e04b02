"""R1 and R2 (docs/guarantees.md) with real threads, on SQLite and PostgreSQL."""

from __future__ import annotations

from hub.declarations import Declarations, DuplicateReference, VersionConflict

from . import samples
from .racing import race

WRITERS = 16


def test_r1_concurrent_identical_submissions_make_one_declaration(app: Declarations):
    def submit(n: int):  # a quarter reuse the reference with other content
        return app.submit(samples.goods(customs_office=submit_content(n)))

    outcomes = race(WRITERS, submit)
    created = [n for n, o in enumerate(outcomes) if not isinstance(o, Exception) and o.created]
    assert len(created) == 1
    winner = created[0]
    stored = app.get(outcomes[winner].declaration.id)
    assert len(app.history(stored.id)) == 1
    for n, outcome in enumerate(outcomes):
        # Whoever won the race decides: its content is stored, every submission with the
        # same content gets that declaration, every other content gets the conflict.
        if submit_content(n) == submit_content(winner):
            assert outcome.declaration.id == stored.id
        else:
            assert isinstance(outcome, DuplicateReference)


def submit_content(n: int) -> str:
    return f"37{n:02d}" if n % 4 == 3 else "3702"


def test_r1_identical_submissions_all_succeed_and_agree(app: Declarations):
    outcomes = race(WRITERS, lambda n: app.submit(samples.goods()))
    assert sum(o.created for o in outcomes) == 1
    assert len({o.declaration.id for o in outcomes}) == 1


def test_r1_a_conflicting_duplicate_does_not_fail_its_batch(app: Declarations):
    app.submit(samples.goods(reference="TAKEN"))
    outcomes = race(WRITERS, lambda n: app.submit(
        samples.goods(reference="TAKEN", customs_office="3701") if n == 0
        else samples.goods(reference=f"FREE-{n}")))
    assert isinstance(outcomes[0], DuplicateReference)
    assert all(o.created for o in outcomes[1:])
    assert all(app.get(o.declaration.id).version == 1 for o in outcomes[1:])


def test_r2_many_writers_amending_one_version_exactly_one_wins(app: Declarations):
    declaration_id = app.submit(samples.goods()).declaration.id
    outcomes = race(WRITERS, lambda n: app.amend(
        declaration_id, 1, samples.goods(customs_office=f"38{n:02d}")))
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(winners) == 1
    assert all(isinstance(o, VersionConflict) for o in outcomes if o not in winners)
    stored = app.get(declaration_id)
    assert stored.version == 2
    assert stored.document["customs_office"] == winners[0].document["customs_office"]


def test_concurrent_responses_to_one_declaration_are_all_applied_once(app: Declarations):
    declaration_id = app.submit(samples.goods()).declaration.id
    # Each of 8 distinct messages is delivered twice, all at once.
    race(WRITERS, lambda n: app.record_response(
        declaration_id, "customs", f"msg-{n % 8}", "received", "2026-12-01T09:00:00Z"))
    history = app.history(declaration_id)
    applied = [e["message_id"] for e in history if e["type"] == "AgencyResponded"]
    assert sorted(applied) == [f"msg-{n}" for n in range(8)]
