"""The declarations application on each store: SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from hub.declarations import (
    DeclarationNotFound,
    Declarations,
    DuplicateReference,
    InvalidDeclaration,
    VersionConflict,
)
from hub.declarations.domainmodel import DeclarationClosed
from tradehub.bootstrap import Settings, build_declarations

from . import samples


def test_submit_stores_the_declaration_with_its_routes(app: Declarations):
    submission = app.submit(samples.goods())
    assert submission.created
    stored = app.get(submission.declaration.id)
    assert stored.version == 1
    assert stored.status == "submitted"
    assert set(stored.routed_agencies) == {"customs", "port"}
    assert stored.document["items"][0]["value"] == "240000.00"


def test_resubmitting_the_same_content_returns_the_existing_declaration(app: Declarations):
    first = app.submit(samples.goods())
    again = app.submit(samples.goods())
    assert not again.created
    assert again.declaration.id == first.declaration.id
    assert len(app.history(first.declaration.id)) == 1


def test_the_same_reference_with_other_content_is_a_conflict(app: Declarations):
    app.submit(samples.goods())
    with pytest.raises(DuplicateReference):
        app.submit(samples.goods(customs_office="3701"))


def test_the_same_reference_from_another_declarant_is_another_declaration(app: Declarations):
    first = app.submit(samples.goods(declarant=samples.TRADER_A))
    second = app.submit(samples.goods(declarant=samples.TRADER_B))
    assert second.created and second.declaration.id != first.declaration.id


def test_an_invalid_document_stores_nothing(app: Declarations):
    with pytest.raises(InvalidDeclaration) as raised:
        app.submit(samples.goods(items=[]))
    assert [e.path for e in raised.value.errors] == ["$.items"]
    assert app.recorder.max_notification_id() in (None, 0)


def test_amend_with_the_current_version_reroutes(app: Declarations):
    declaration = app.submit(samples.goods()).declaration
    shrimp = dict(samples.goods()["items"][0], hs_code="0306170000", description="Frozen shrimps")
    amended = app.amend(declaration.id, 1, samples.goods(items=[shrimp]))
    assert amended.version == 2
    assert set(app.get(declaration.id).routed_agencies) == {"customs", "inspection", "port"}


def test_amend_with_a_stale_version_is_a_conflict(app: Declarations):
    declaration = app.submit(samples.goods()).declaration
    app.amend(declaration.id, 1, samples.goods(customs_office="3701"))
    with pytest.raises(VersionConflict) as raised:
        app.amend(declaration.id, 1, samples.goods(customs_office="3703"))
    assert (raised.value.expected, raised.value.actual) == (1, 2)


def test_repeating_an_amendment_already_in_effect_changes_nothing(app: Declarations):
    declaration = app.submit(samples.goods()).declaration
    app.amend(declaration.id, 1, samples.goods(customs_office="3701"))
    again = app.amend(declaration.id, 1, samples.goods(customs_office="3701"))
    assert again.version == 2


def test_withdrawal_then_no_amendment(app: Declarations):
    declaration = app.submit(samples.goods()).declaration
    withdrawn = app.withdraw(declaration.id, "order cancelled")
    assert withdrawn.status == "withdrawn"
    with pytest.raises(DeclarationClosed):
        app.amend(declaration.id, 2, samples.goods(customs_office="3701"))


def test_responses_apply_once_and_release(app: Declarations):
    declaration = app.submit(samples.goods()).declaration
    for _ in range(2):
        app.record_response(declaration.id, "customs", "c-1", "released", "2026-12-01T09:00:00Z", code="08")
    app.record_response(declaration.id, "port", "p-1", "released", "2026-12-01T09:10:00Z")
    assert app.get(declaration.id).status == "in_progress"  # every agency released: the enforcement process decides
    [settled] = app.settle({declaration.id: app.get(declaration.id).version})
    assert settled.status == app.get(declaration.id).status == "released"
    assert [e["type"] for e in app.history(declaration.id)] == [
        "Submitted", "AgencyResponded", "AgencyResponded", "GateOutAllowed", "Released"]
    assert app.settle({declaration.id: app.get(declaration.id).version}) == []  # settled once


def test_settling_many_declarations_saves_them_together_and_refuses_none(app: Declarations):
    ids = [app.submit(samples.goods(reference=f"S-{n}")).declaration.id for n in range(3)]
    for ident in ids[:2]:
        app.record_response(ident, "customs", f"c-{ident}", "released", "2026-12-01T09:00:00Z")
    settled = app.settle({ident: app.get(ident).version for ident in ids})
    assert sorted(d.id for d in settled) == sorted(ids[:2])
    assert [app.get(ident).gate_out for ident in ids] == [True, True, False]


def test_history_is_readable(app: Declarations):
    declaration = app.submit(samples.goods()).declaration
    app.withdraw(declaration.id, "duplicate shipment")
    history = app.history(declaration.id)
    assert history[0]["type"] == "Submitted" and history[0]["routes"]["customs"]
    assert history[1] == {"type": "Withdrawn", "version": 2, "time": history[1]["time"],
                          "reason": "duplicate shipment"}


@pytest.mark.parametrize("unknown", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_an_unknown_id_is_not_found(app: Declarations, unknown: str):
    with pytest.raises(DeclarationNotFound):
        app.get(unknown)
    with pytest.raises(DeclarationNotFound):
        app.history(unknown)


def test_declarations_survive_a_restart(store):
    settings, schema = store
    first = build_declarations(settings, schema=schema)
    declaration_id = first.submit(samples.vessel_call()).declaration.id
    first.close()
    second = build_declarations(settings, schema=schema)
    try:
        assert second.get(declaration_id).kind == "vessel_call"
    finally:
        second.close()


def test_payloads_are_encrypted_at_rest_with_a_cipher_key(store):
    from eventsourcing.cryptography import AESCipher  # noqa: PLC0415 - only this test needs it

    settings, schema = store
    settings = Settings(settings.data_dir, settings.database_url, cipher_key=AESCipher.create_key(32))
    app = build_declarations(settings, schema=schema)
    try:
        declaration_id = app.submit(samples.goods()).declaration.id
        stored = app.recorder.select_events(declaration_id)[0].state
        assert b"Mixing" not in stored and b"HLXU" not in stored
        assert app.get(declaration_id).document["containers"] == ["HLXU8000014"]
    finally:
        app.close()


def test_with_history_replays_the_same_declaration_as_get(app: Declarations):
    declaration_id = app.submit(samples.goods()).declaration.id
    app.record_response(declaration_id, "customs", "c-1", "accepted", "2026-12-01T09:00:00Z")
    declaration, events = app.with_history(declaration_id)
    stored = app.get(declaration_id)
    assert (declaration.version, declaration.status, declaration.agencies) == (
        stored.version, stored.status, stored.agencies)
    assert events == app.history(declaration_id)


def test_get_many_reads_the_same_declarations_as_get_and_leaves_unknown_ids_out(app: Declarations):
    first = app.submit(samples.goods()).declaration.id
    second = app.submit(samples.goods(reference="TEST-GOODS-0002")).declaration.id
    app.record_response(first, "customs", "c-1", "accepted", "2026-12-01T09:00:00Z")
    app.withdraw(second, "duplicate shipment")
    unknown = "00000000-0000-0000-0000-000000000000"
    found = app.get_many([str(second), first, unknown, first])
    assert set(found) == {first, second}
    for ident, declaration in found.items():
        stored = app.get(ident)
        assert (declaration.version, declaration.status, declaration.agencies, declaration.document) == (
            stored.version, stored.status, stored.agencies, stored.document)


class Response:
    """An answer as the inbox applies it."""

    def __init__(self, message_id: str, status: str) -> None:
        self.message_id, self.status = message_id, status

    def apply_to(self, declaration) -> bool:
        return declaration.record_response("customs", self.message_id, self.status, "2026-12-01T09:00:00Z")


def test_an_answer_given_a_stale_current_declaration_is_decided_again_on_a_fresh_read(app: Declarations):
    ident = app.submit(samples.goods()).declaration.id
    stale = app.get_many([ident])[ident]
    app.record_response(ident, "customs", "c-1", "accepted", "2026-12-01T09:00:00Z")  # saved meanwhile
    declaration, changed = app.answer(ident, [Response("c-2", "released")], current=stale)
    assert changed and declaration.version == 3
    assert [event["type"] for event in app.history(ident)] == ["Submitted", "AgencyResponded", "AgencyResponded"]
    assert app.get(ident).agencies["customs"]["status"] == "released"
