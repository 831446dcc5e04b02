"""The officer views as projections: enforcement holds, recognition, exchange, statistics, and rebuild."""

from __future__ import annotations

import pytest

from hub.declarations import AlertInvalid, AlertNotFound
from projections.alerts import alerts_view
from projections.exchange import exchange_view
from projections.recognition import recognition_view
from projections.statistics import clearance_percentile, statistics_view
from tradehub.bootstrap import VIEW_NAMES, Hub

from . import samples
from .ledger import DAY, licence_fields

FOOD = samples.goods()["items"][0] | {"hs_code": "0306170000", "description": "Frozen shrimps"}
CONTAINER = "HLXU8000014"  # in every samples.goods()
OTHER_CONTAINER = "CSQU3054383"


def release_everywhere(hub: Hub, declaration_id, prefix: str = "r") -> None:
    declaration = hub.declarations.get(declaration_id)
    for agency in declaration.routed_agencies:
        hub.declarations.record_response(declaration_id, agency, f"{prefix}-{agency}", "released",
                                         "2026-12-01T10:00:00Z", code="REL")


def snapshot(hub: Hub) -> dict[str, list[tuple]]:
    """Every row of every view, sorted: what a rebuild must give again."""
    tables = ("board_declarations", "board_agencies", "exchange_agencies", "recognition_routes",
              "recognition_inspections", "recognitions", "recognition_documents", "recognition_licences", "clearance",
              "alerts", "alert_subjects", "alert_holds", "personal_data_reads")
    return {table: sorted(hub.views.query(f"SELECT * FROM {table}")) for table in tables}


def test_an_alert_holds_open_declarations_on_its_subject_and_every_later_one_until_cleared(hub: Hub):
    app = hub.declarations
    open_one = app.submit(samples.goods(reference="OPEN-1")).declaration.id
    released = app.submit(samples.goods(reference="DONE-1")).declaration.id
    elsewhere = app.submit(samples.goods(reference="ELSE-1", containers=[OTHER_CONTAINER])).declaration.id
    release_everywhere(hub, released)
    samples.followed(hub)  # settled as released before the alert: it stays so
    alert = app.raise_alert("container", CONTAINER, "tip-off: undeclared cargo", "officer:customs")
    later = app.submit(samples.goods(reference="LATER-1")).declaration.id
    hub.runner.catch_up()
    hub.runner.catch_up()  # the holds the first round placed are events too
    assert app.get(open_one).status == "held" and app.get(later).status == "held"
    assert app.get(released).status == "released" and not app.get(released).holds
    assert app.get(elsewhere).status == "submitted"
    assert app.get(open_one).holds[str(alert.id)]["reason"] == "tip-off: undeclared cargo"

    release_everywhere(hub, open_one)
    assert app.get(open_one).status == "held"  # every agency released, yet the hold stands
    [listed] = alerts_view(hub.views)["alerts"]
    assert (listed["status"], listed["subject"], listed["raised_by"]) == ("open", CONTAINER, "officer:customs")
    assert {row["reference"] for row in listed["declarations"]} == {"OPEN-1", "LATER-1"}

    app.clear_alert(alert.id, "officer:customs")
    samples.followed(hub)
    assert app.get(open_one).status == "released" and app.get(later).status == "submitted"
    [listed] = alerts_view(hub.views)["alerts"]
    assert listed["status"] == "cleared" and all(row["lifted_at"] for row in listed["declarations"])
    after_clearing = app.submit(samples.goods(reference="AFTER-1")).declaration.id
    hub.runner.catch_up()
    assert not app.get(after_clearing).holds


def test_a_declaration_is_held_by_its_parties_and_its_ship_too(hub: Hub):
    app = hub.declarations
    by_party = app.submit(samples.goods(reference="PARTY-1", declarant=samples.TRADER_B)).declaration.id
    call = app.submit(samples.vessel_call()).declaration.id
    app.raise_alert("party", samples.TRADER_B.lower(), "sanctions list", "admin")
    app.raise_alert("vessel", "IMO 9321483", "detained elsewhere", "admin")
    hub.runner.catch_up()
    assert [hold["subject_kind"] for hold in app.get(by_party).holds.values()] == ["party", "vessel"]
    assert [hold["subject"] for hold in app.get(call).holds.values()] == ["9321483"]


@pytest.mark.parametrize("kind, subject, reason, field", [
    ("ship", "9321483", "x", "subject_kind"),
    ("container", "HLXU8000015", "x", "subject"),  # wrong check digit
    ("party", "91350200MA2YQ4RK0X", "x", "subject"),
    ("vessel", "9321483", "  ", "reason"),
    ("vessel", "9321483", "two\nlines", "reason"),
])
def test_a_bad_alert_names_its_field_and_stores_nothing(hub: Hub, kind, subject, reason, field):
    head = hub.declarations.recorder.max_notification_id() or 0
    with pytest.raises(AlertInvalid) as raised:
        hub.declarations.raise_alert(kind, subject, reason, "admin")
    assert raised.value.field == field
    assert (hub.declarations.recorder.max_notification_id() or 0) == head


def test_clearing_an_unknown_alert_or_a_declaration_id_is_not_found(hub: Hub):
    declaration = hub.declarations.submit(samples.goods()).declaration
    for ident in (declaration.id, "not-an-id", "0f6f1d8e-3c52-4b7a-8e21-6a4c2d9b7e13"):
        with pytest.raises(AlertNotFound):
            hub.declarations.clear_alert(ident, "admin")
    alert = hub.declarations.raise_alert("container", CONTAINER, "x", "admin")
    with pytest.raises(Exception, match="no declaration"):
        hub.declarations.get(alert.id)


def test_recognition_lists_each_inspection_who_recognised_it_and_the_inspections_saved(hub: Hub):
    app = hub.declarations
    shrimp = app.submit(samples.goods(reference="SHRIMP-1", items=[FOOD])).declaration.id
    assert set(app.get(shrimp).routed_agencies) == {"customs", "inspection", "port"}
    app.record_response(shrimp, "customs", "c-1", "inspection_required", "2026-12-01T09:00:00Z", code="05")
    app.record_inspection(shrimp, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z", findings="no findings")
    app.record_response(shrimp, "customs", "c-2", "released", "2026-12-01T09:40:00Z", code="08")
    hub.runner.catch_up()
    view = recognition_view(hub.views)
    [inspection] = view["inspections"]
    assert (inspection["reference"], inspection["agency"], inspection["result"]) == ("SHRIMP-1", "inspection", "pass")
    assert [(r["agency"], r["saved"]) for r in inspection["recognised_by"]] == [("customs", True)]
    assert view["totals"] == {"inspections": 1, "recognitions": 1, "inspections_saved": 1, "documents_recognised": 0}
    # The port does not recognise inspection (only maritime), so its officer's view shows no recognition.
    assert recognition_view(hub.views, "port")["inspections"][0]["recognised_by"] == [
        {"agency": "customs", "notified_at": inspection["recognised_by"][0]["notified_at"],
         "released_at": inspection["recognised_by"][0]["released_at"], "saved": True}]
    assert recognition_view(hub.views, "border") == {
        "inspections": [], "documents": [],
        "totals": {"inspections": 0, "recognitions": 0, "inspections_saved": 0, "documents_recognised": 0}}


def test_documents_customs_recognises_are_listed_per_declaration_and_rebuilt_alike(hub: Hub):
    """A certificate issued by inspection and cited on a declaration routed to customs is recognised by customs
    (adapters/citations.py); one of commerce's is not. An amendment replaces the declaration's documents, a
    revocation shows on them, and a rebuild gives the same rows."""
    app = hub.declarations
    app.today = lambda: DAY
    for number, issuer, kind, scope in (("PHY-1", "inspection", "phytosanitary_certificate", ["03"]),
                                        ("VET-1", "inspection", "veterinary_certificate", ["03"]),
                                        ("IL-1", "commerce", "import_licence", ["03"])):
        app.issue_licence(licence_fields(number, issuer=issuer, type=kind, hs_scope=scope, quantity="99999"),
                          f"officer:{issuer}")
    cite = lambda number, kg="10": {"number": number, "quantity": kg, "unit": "KGM"}  # noqa: E731
    first = app.submit(samples.goods(reference="CITING-1", items=[
        FOOD | {"licences": [cite("PHY-1"), cite("IL-1")]}, FOOD | {"licences": [cite("PHY-1", "5")]}])).declaration
    other = app.submit(samples.goods(reference="CITING-2", items=[FOOD | {"licences": [cite("IL-1")]}])).declaration
    hub.runner.catch_up()
    view = recognition_view(hub.views)
    assert view["totals"]["documents_recognised"] == 1
    [listed] = view["documents"]
    assert (listed["reference"], listed["version"], listed["recognised_by"]) == ("CITING-1", 1, "customs")
    assert listed["documents"] == [{"number": "PHY-1", "issuer": "inspection", "type": "phytosanitary_certificate",
                                    "items": [1, 2], "revoked_at": None}]
    app.amend(first.id, app.get(first.id).version, samples.goods(reference="CITING-1", items=[
        FOOD | {"licences": [cite("VET-1"), cite("PHY-1")]}]))
    app.revoke_licence("VET-1", "inspection", "officer:inspection", "issued in error")
    hub.runner.catch_up()
    [listed] = recognition_view(hub.views)["documents"]
    assert listed["version"] == 2
    assert [(document["number"], document["items"], document["revoked_at"] is not None)
            for document in listed["documents"]] == [("PHY-1", [1], False), ("VET-1", [1], True)]
    assert recognition_view(hub.views, "customs")["totals"]["documents_recognised"] == 2
    assert recognition_view(hub.views, "border") == {
        "inspections": [], "documents": [],
        "totals": {"inspections": 0, "recognitions": 0, "inspections_saved": 0, "documents_recognised": 0}}
    assert str(other.id) not in {row["declaration_id"] for row in recognition_view(hub.views)["documents"]}
    before = snapshot(hub)
    assert before["recognition_documents"] and before["recognition_licences"]
    hub.runner.rebuild(["recognition"])
    assert snapshot(hub) == before


def test_a_recognising_agency_that_inspects_anyway_saves_nothing(hub: Hub):
    app = hub.declarations
    shrimp = app.submit(samples.goods(reference="SHRIMP-2", items=[FOOD])).declaration.id
    app.record_inspection(shrimp, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    app.record_inspection(shrimp, "customs", "c-1", "pass", "2026-12-01T09:35:00Z")
    app.record_response(shrimp, "customs", "c-2", "released", "2026-12-01T09:40:00Z", code="08")
    hub.runner.catch_up()
    view = recognition_view(hub.views)
    assert view["totals"] == {"inspections": 2, "recognitions": 2, "inspections_saved": 0,
                              "documents_recognised": 0}


def test_a_recognising_agency_that_inspected_first_saves_nothing_either(hub: Hub):
    app = hub.declarations
    shrimp = app.submit(samples.goods(reference="SHRIMP-5", items=[FOOD])).declaration.id
    app.record_inspection(shrimp, "customs", "c-1", "pass", "2026-12-01T09:25:00Z")
    hub.runner.catch_up()  # the customs inspection and the inspection agency's in different batches
    app.record_inspection(shrimp, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    app.record_response(shrimp, "customs", "c-2", "released", "2026-12-01T09:40:00Z", code="08")
    hub.runner.catch_up()
    assert recognition_view(hub.views)["totals"] == {"inspections": 2, "recognitions": 2, "inspections_saved": 0,
                                                       "documents_recognised": 0}


def test_a_release_before_the_recognition_saves_nothing(hub: Hub):
    app = hub.declarations
    shrimp = app.submit(samples.goods(reference="SHRIMP-6", items=[FOOD])).declaration.id
    app.record_response(shrimp, "customs", "c-1", "released", "2026-12-01T09:20:00Z", code="08")
    app.record_inspection(shrimp, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    hub.runner.catch_up()
    [inspection] = recognition_view(hub.views)["inspections"]
    assert inspection["recognised_by"][0]["released_at"] is None
    assert recognition_view(hub.views)["totals"]["inspections_saved"] == 0


def test_the_exchange_matrix_shows_each_agency_and_the_flows_between_them(hub: Hub):
    app = hub.declarations
    shrimp = app.submit(samples.goods(reference="SHRIMP-3", items=[FOOD])).declaration.id
    app.record_response(shrimp, "customs", "c-1", "received", "2026-12-01T09:00:00Z", code="02")
    app.record_inspection(shrimp, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    app.record_response(shrimp, "customs", "c-2", "released", "2026-12-01T09:40:00Z", code="08", text="ok")
    hub.runner.catch_up()
    view = exchange_view(hub.views, str(shrimp))
    rows = {row["agency"]: row for row in view["agencies"]}
    assert list(rows) == ["customs", "inspection", "port"]
    assert rows["customs"]["acknowledged_at"] < rows["customs"]["decided_at"]
    assert (rows["customs"]["decision"], rows["customs"]["code"], rows["customs"]["text"]) == ("released", "08", "ok")
    assert (rows["inspection"]["decision"], rows["inspection"]["code"]) == ("inspected", "pass")
    assert rows["port"]["acknowledged_at"] is None and rows["port"]["decision"] is None
    assert [(f["from"], f["to"], f["message"]) for f in view["flows"]] == [
        ("inspection", "customs", "recognition notice (pass)")]


def test_statistics_count_by_status_and_agency_and_time_clearance(hub: Hub):
    app = hub.declarations
    done = [app.submit(samples.goods(reference=f"DONE-{n}")).declaration.id for n in range(3)]
    app.submit(samples.goods(reference="WAITING"))
    for ident in done:
        release_everywhere(hub, ident)
    samples.followed(hub)
    stats = statistics_view(hub.views)
    assert stats["by_status"] == {"released": 3, "submitted": 1}
    assert stats["by_agency"] == {"customs": {"released": 3, "pending": 1}, "port": {"released": 3, "pending": 1}}
    overall = stats["clearance"]["overall"]
    assert overall["count"] == 3 and 0 <= overall["p50_seconds"] <= overall["p90_seconds"] < 60
    assert stats["clearance"]["agencies"]["customs"]["count"] == 3
    assert stats["clearance"]["agencies"]["border"] == {"count": 0, "p50_seconds": None, "p90_seconds": None}


def test_clearance_percentiles_are_nearest_rank(hub: Hub):
    with hub.views.transaction() as cursor:
        cursor.executemany("INSERT INTO clearance (declaration_id, agency, submitted_at, submitted_epoch, seconds)"
                           " VALUES (?, 'customs', '', 0, ?)", [(f"d{n}", float(n)) for n in range(1, 11)])
    assert [clearance_percentile(hub.views, "customs", 10, q) for q in (0.5, 0.9, 0.91, 1.0)] == [5.0, 9.0, 10.0, 10.0]


def test_a_rebuild_gives_the_same_views_and_changes_nothing_in_the_log(hub: Hub):
    app = hub.declarations
    shrimp = app.submit(samples.goods(reference="SHRIMP-4", items=[FOOD])).declaration.id
    app.record_inspection(shrimp, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    release_everywhere(hub, shrimp)
    held = app.submit(samples.goods(reference="HELD-1")).declaration.id
    lifted = app.submit(samples.goods(reference="HELD-2")).declaration.id  # stays open: a replay must not re-hold
    cleared = app.raise_alert("container", CONTAINER, "first tip-off", "admin")
    hub.runner.catch_up()
    app.clear_alert(cleared.id, "admin")
    app.raise_alert("vessel", "9321483", "second tip-off", "admin")
    app.submit(samples.vessel_call())
    app.withdraw(held, "not shipped")
    hub.runner.catch_up()
    hub.runner.catch_up()
    before, head = snapshot(hub), app.recorder.max_notification_id()
    assert before["alert_holds"] and before["recognitions"] and before["clearance"]
    assert app.get(lifted).status == "held"  # by the vessel alert only
    assert [hold["reason"] for hold in app.get(lifted).holds.values()] == ["second tip-off"]

    applied = hub.runner.rebuild()
    assert applied["status_board"] == head and set(applied) == set(VIEW_NAMES)
    assert app.recorder.max_notification_id() == head  # no hold placed or lifted again
    assert snapshot(hub) == before
    assert hub.runner.rebuild(["statistics"]) == {"statistics": head}
    assert snapshot(hub) == before
    with pytest.raises(ValueError, match="no view nonsense"):
        hub.runner.rebuild(["nonsense"])


def test_the_views_are_the_same_whatever_the_batch_size(hub: Hub, monkeypatch):
    """Views fold each batch in memory and write each row once a batch: one event a batch, three, or the whole
    log must give the same rows. The log has what folding can get wrong: an agency's several decisions, an
    amendment that routes a new agency after the first batch, a release restated, rejection, withdrawal."""
    app = hub.declarations
    amended = app.submit(samples.goods(reference="AMEND-1")).declaration
    app.record_response(amended.id, "customs", "c-1", "received", "2026-12-01T09:00:00Z", code="02")
    app.record_response(amended.id, "customs", "c-2", "inspection_required", "2026-12-01T09:01:00Z", code="05")
    current = app.get(amended.id)
    app.amend(amended.id, current.version, samples.goods(reference="AMEND-1", items=[FOOD]))  # routes inspection
    app.record_inspection(amended.id, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    release_everywhere(hub, amended.id)
    for agency in app.get(amended.id).routed_agencies:  # released again, on a new code: the first stops the clock
        app.record_response(amended.id, agency, f"again-{agency}", "released", "2026-12-01T11:00:00Z", code="RE2")
    rejected = app.submit(samples.goods(reference="REJECT-1")).declaration.id
    app.record_response(rejected, "customs", "x-1", "rejected", "2026-12-01T09:05:00Z", code="03", text="no")
    withdrawn = app.submit(samples.goods(reference="WITHDRAW-1")).declaration.id
    app.withdraw(withdrawn, "not shipped")
    app.submit(samples.vessel_call())
    samples.followed(hub)  # the log as the enforcement process leaves it: the rebuilds below add nothing to it

    def follow(batch: int) -> dict[str, list[tuple]]:
        monkeypatch.setattr("followers.runner.REBUILD_BATCH", batch)
        hub.runner.batch = batch
        hub.runner.rebuild()
        return snapshot(hub)

    one_by_one = follow(1)
    assert one_by_one["clearance"] and one_by_one["exchange_agencies"] and one_by_one["recognitions"]
    assert follow(3) == one_by_one
    assert follow(10_000) == one_by_one
