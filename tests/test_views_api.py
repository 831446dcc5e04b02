"""The officer views and alerts over HTTP: shapes, scoping (docs/api.md) and refusals."""

from __future__ import annotations

import pytest

from . import samples
from .conftest import Api

FOOD = samples.goods()["items"][0] | {"hs_code": "0306170000", "description": "Frozen shrimps"}
CONTAINER = "HLXU8000014"


def settle(api: Api) -> None:
    api.sync()
    api.sync()  # holds placed in the first round are events the views follow too


def declare(api: Api, **changes) -> str:
    response = api.client.post("/v1/declarations", json=samples.goods(**changes), headers=api.as_("admin"))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_an_officer_raises_an_alert_that_holds_and_clears(api: Api):
    ident = declare(api)
    customs = api.as_("officer", agency="customs")
    raised = api.client.post("/v1/alerts", json={"subject_kind": "container", "subject": f" {CONTAINER} ",
                                                 "reason": "x-ray anomaly"}, headers=customs)
    assert raised.status_code == 201, raised.text
    alert = raised.json()
    assert (alert["subject"], alert["raised_by"], alert["status"]) == (CONTAINER, "officer:customs", "open")
    assert raised.headers["location"] == f"/v1/alerts/{alert['id']}"
    settle(api)
    declaration = api.client.get(f"/v1/declarations/{ident}", headers=customs).json()
    assert declaration["status"] == "held" and declaration["holds"] == [alert["id"]]
    [listed] = api.client.get("/v1/views/alerts", headers=customs).json()["alerts"]
    assert [row["declaration_id"] for row in listed["declarations"]] == [ident]
    # The border agency has no declaration held by it, and did not raise it.
    assert api.client.get("/v1/views/alerts", headers=api.as_("officer", agency="border")).json() == {"alerts": []}

    cleared = api.client.post(f"/v1/alerts/{alert['id']}/clearance", headers=customs)
    assert cleared.status_code == 200 and cleared.json()["status"] == "cleared"
    assert api.client.post(f"/v1/alerts/{alert['id']}/clearance", headers=customs).status_code == 200
    settle(api)
    assert api.client.get(f"/v1/declarations/{ident}", headers=customs).json()["status"] == "submitted"


@pytest.mark.parametrize("body, path", [
    ({"subject_kind": "container", "subject": "HLXU8000015", "reason": "x"}, "$.subject"),
    ({"subject_kind": "ship", "subject": "9321483", "reason": "x"}, "subject_kind"),
    ({"subject_kind": "vessel", "subject": "9321483", "reason": "bad\u0007bell"}, "$.reason"),
    ({"subject_kind": "vessel", "subject": "9321483"}, "reason"),
    ({"subject_kind": "vessel", "subject": "9321483", "reason": "x", "extra": 1}, "extra"),
])
def test_a_bad_alert_is_422_naming_the_field(api: Api, body: dict, path: str):
    response = api.client.post("/v1/alerts", json=body, headers=api.as_("admin"))
    assert response.status_code == 422, response.text
    assert any(path in error["path"] for error in response.json()["errors"]), response.json()
    assert api.client.get("/v1/views/alerts", headers=api.as_("admin")).json() == {"alerts": []}


def test_traders_neither_raise_alerts_nor_read_the_officer_views(api: Api):
    trader = api.as_("trader", party=samples.TRADER_A)
    body = {"subject_kind": "vessel", "subject": "9321483", "reason": "x"}
    assert api.client.post("/v1/alerts", json=body, headers=trader).status_code == 403
    for view in ("recognition", "alerts", "stats"):
        assert api.client.get(f"/v1/views/{view}", headers=trader).status_code == 403
    assert api.client.get("/v1/views/stats").status_code == 401
    unknown = "0f6f1d8e-3c52-4b7a-8e21-6a4c2d9b7e13"
    assert api.client.post(f"/v1/alerts/{unknown}/clearance", headers=api.as_("admin")).status_code == 404


def test_the_exchange_view_is_scoped_like_the_declaration(api: Api):
    ident = declare(api, reference="SHRIMP-API", items=[FOOD])
    api.hub.declarations.record_inspection(ident, "inspection", "i-1", "pass", "2026-12-01T09:30:00Z")
    api.hub.declarations.record_response(ident, "customs", "c-1", "released", "2026-12-01T09:40:00Z", code="08")
    settle(api)
    for headers in (api.as_("admin"), api.as_("trader", party=samples.TRADER_A),
                    api.as_("officer", agency="port")):
        view = api.client.get(f"/v1/views/exchange/{ident}", headers=headers)
        assert view.status_code == 200, view.text
        assert [row["agency"] for row in view.json()["agencies"]] == ["customs", "inspection", "port"]
        assert view.json()["flows"][0]["from"] == "inspection"
    for headers in (api.as_("trader", party=samples.TRADER_B), api.as_("officer", agency="border")):
        assert api.client.get(f"/v1/views/exchange/{ident}", headers=headers).status_code == 404
    recognition = api.client.get("/v1/views/recognition", headers=api.as_("officer", agency="customs")).json()
    assert recognition["totals"] == {"inspections": 1, "recognitions": 1, "inspections_saved": 1,
                                     "documents_recognised": 0}
    assert recognition["documents"] == []
    stats = api.client.get("/v1/views/stats", headers=api.as_("officer", agency="border")).json()
    assert stats["by_status"] == {"in_progress": 1}
    assert stats["clearance"]["agencies"]["customs"]["count"] == 1
