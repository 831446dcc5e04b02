"""The HTTP API in process, on SQLite and PostgreSQL: shapes, status codes, problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradehub.bootstrap import VIEW_NAMES

from . import samples
from .conftest import Api

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "application/problem+json"


def trader(api: Api, party: str = samples.TRADER_A) -> dict[str, str]:
    return api.as_("trader", party=party)


def submit(api: Api, document=None, headers=None):
    return api.client.post("/v1/declarations", json=document or samples.goods(),
                           headers=headers or trader(api))


def test_submit_creates_then_repeats(api: Api):
    created = submit(api)
    assert created.status_code == 201
    body = created.json()
    assert created.headers["location"] == f"/v1/declarations/{body['id']}"
    assert {"id", "reference", "kind", "version", "status", "agencies", "document"} <= set(body)
    assert body["status"] == "submitted" and body["version"] == 1
    assert body["agencies"]["customs"] == {"status": "pending", "routed": True, "reason": "every goods",
                                           "code": "", "text": "", "updated_at": ""}
    repeated = submit(api)
    assert repeated.status_code == 200 and repeated.json()["id"] == body["id"]


def test_other_content_under_the_same_reference_is_409(api: Api):
    submit(api)
    response = submit(api, samples.goods(customs_office="3701"))
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:tradehub:problem:conflict"


def test_an_invalid_document_is_422_naming_every_field_and_nothing_is_stored(api: Api):
    document = samples.goods(containers=["HLXU8000015"], port_of_loading="ZZZZZ")
    document["items"][0]["value"] = 1200
    response = submit(api, document)
    assert response.status_code == 422
    problem = response.json()
    assert {e["path"] for e in problem["errors"]} == {
        "$.containers[0]", "$.port_of_loading", "$.items[0].value"}
    assert api.hub.declarations.recorder.max_notification_id() in (None, 0)


@pytest.mark.parametrize("body, detail", [
    (b'{"kind": "goods",', "line 1, column 18"),
    (b'{"a": 1, "a": 2}', "appears twice"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_malformed_json_is_400_with_its_position(api: Api, body: bytes, detail: str):
    response = api.client.post("/v1/declarations", content=body, headers=trader(api))
    assert response.status_code == 400 and detail in response.json()["detail"]


def test_a_body_over_the_cap_is_413(api: Api):
    document = samples.goods()
    document["items"][0]["description"] = "x" * (300 * 1024)
    response = submit(api, document)
    assert response.status_code == 413 and response.json()["status"] == 413


def test_a_chunked_body_over_the_cap_is_413_too(api: Api):
    def chunks():
        yield b'{"kind": "goods", "padding": "'
        for _ in range(400):
            yield b"x" * 1024
        yield b'"}'

    response = api.client.post("/v1/declarations", content=chunks(), headers=trader(api))
    assert response.status_code == 413
    metrics = api.client.get("/metrics").text
    assert 'tradehub_http_requests_total{method="POST",route="/v1/declarations",status="413"} 1.0' in metrics


def test_a_trader_cannot_declare_for_another_party(api: Api):
    response = submit(api, samples.goods(declarant=samples.TRADER_B))
    assert response.status_code == 403


def test_officers_do_not_declare(api: Api):
    assert submit(api, headers=api.as_("officer", agency="customs")).status_code == 403


def test_get_and_history(api: Api):
    declaration_id = submit(api).json()["id"]
    got = api.client.get(f"/v1/declarations/{declaration_id}", headers=trader(api))
    assert got.status_code == 200 and got.json()["document"]["customs_office"] == "3702"
    history = api.client.get(f"/v1/declarations/{declaration_id}/history", headers=trader(api)).json()
    assert [e["type"] for e in history["events"]] == ["Submitted"]
    assert history["events"][0]["routes"] == {"customs": "every goods", "port": "sea transport, 1 container(s)"}


def test_amend_with_the_expected_version(api: Api):
    declaration_id = submit(api).json()["id"]
    path = f"/v1/declarations/{declaration_id}/amendments"
    amended = api.client.post(path, headers=trader(api), json={
        "expected_version": 1, "declaration": samples.goods(customs_office="3701")})
    assert amended.status_code == 200 and amended.json()["version"] == 2
    stale = api.client.post(path, headers=trader(api), json={
        "expected_version": 1, "declaration": samples.goods(customs_office="3703")})
    assert stale.status_code == 409
    assert (stale.json()["expected_version"], stale.json()["current_version"]) == (1, 2)


@pytest.mark.parametrize("body, path", [
    ({"expected_version": 1, "declaration": samples.goods(reference="OTHER")}, "$.declaration.reference"),
    ({"expected_version": 1, "declaration": samples.goods(items=[])}, "$.declaration.items"),
    ({"expected_version": False, "declaration": samples.goods()}, "$.expected_version"),
    ({"expected_version": "1", "declaration": samples.goods()}, "$.expected_version"),
    ({"declaration": samples.goods()}, "$.expected_version"),
    ({"expected_version": 1, "declaration": samples.goods(), "note": "x"}, "$.note"),
])
def test_a_bad_amendment_is_422_with_its_path(api: Api, body, path: str):
    declaration_id = submit(api).json()["id"]
    response = api.client.post(f"/v1/declarations/{declaration_id}/amendments", headers=trader(api),
                               json=body)
    assert response.status_code == 422, response.text
    assert path in [e["path"] for e in response.json()["errors"]]


def test_withdrawal_then_no_amendment(api: Api):
    declaration_id = submit(api).json()["id"]
    withdrawn = api.client.post(f"/v1/declarations/{declaration_id}/withdrawal", headers=trader(api),
                                json={"reason": "order cancelled"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    refused = api.client.post(f"/v1/declarations/{declaration_id}/amendments", headers=trader(api),
                              json={"expected_version": 2, "declaration": samples.goods(customs_office="3701")})
    assert refused.status_code == 409 and refused.json()["type"] == "urn:tradehub:problem:refused"


@pytest.mark.parametrize("reason, message", [("", "at least 1"), ("   ", "must not be blank"), ("two\nlines", "contains control")])
def test_withdrawal_needs_a_one_line_reason(api: Api, reason: str, message: str):
    declaration_id = submit(api).json()["id"]
    response = api.client.post(f"/v1/declarations/{declaration_id}/withdrawal", headers=trader(api),
                               json={"reason": reason})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["path"] == "$.reason" and message in error["message"] and "Value error" not in error["message"]


def test_no_withdrawal_after_release(api: Api):
    declaration_id = submit(api).json()["id"]
    for agency in ("customs", "port"):
        api.hub.declarations.record_response(declaration_id, agency, f"{agency}-1", "released",
                                             "2026-12-01T09:00:00Z")
    samples.settle(api.hub.declarations, declaration_id)
    response = api.client.post(f"/v1/declarations/{declaration_id}/withdrawal", headers=trader(api),
                               json={"reason": "too late"})
    assert response.status_code == 409


def test_list_filters_and_pages(api: Api):
    for n in range(7):
        submit(api, samples.goods(reference=f"LIST-{n}"))
    submit(api, samples.vessel_call(declarant=samples.TRADER_A), headers=trader(api))
    api.sync()
    everything = api.client.get("/v1/declarations", headers=trader(api)).json()["items"]
    assert len(everything) == 8
    assert everything[0]["reference"] == "TEST-CALL-0001"  # newest first
    calls = api.client.get("/v1/declarations?kind=vessel_call", headers=trader(api)).json()["items"]
    assert [c["reference"] for c in calls] == ["TEST-CALL-0001"]
    bordered = api.client.get("/v1/declarations?agency=border", headers=trader(api)).json()["items"]
    assert [c["reference"] for c in bordered] == ["TEST-CALL-0001"]
    one = api.client.get("/v1/declarations?reference=LIST-3", headers=trader(api)).json()["items"]
    assert [c["reference"] for c in one] == ["LIST-3"]
    seen, cursor = [], None
    while True:
        page = api.client.get("/v1/declarations", params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                              headers=trader(api)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in everything]


def test_list_by_status_and_date(api: Api):
    declaration_id = submit(api).json()["id"]
    api.client.post(f"/v1/declarations/{declaration_id}/withdrawal", headers=trader(api), json={"reason": "x"})
    submit(api, samples.goods(reference="OTHER"))
    api.sync()
    withdrawn = api.client.get("/v1/declarations?status=withdrawn", headers=trader(api)).json()["items"]
    assert [w["id"] for w in withdrawn] == [declaration_id]
    future = api.client.get("/v1/declarations", params={"submitted_from": "2999-01-01T00:00:00Z"},
                            headers=trader(api)).json()["items"]
    assert future == []
    past = api.client.get("/v1/declarations", params={"submitted_to": "2999-01-01T00:00:00Z"},
                          headers=trader(api)).json()["items"]
    assert len(past) == 2


@pytest.mark.parametrize("query, path", [
    ("limit=0", "query.limit"), ("limit=501", "query.limit"), ("status=approved", "query.status"),
    ("cursor=bm9wZQ", "query.cursor"), ("submitted_from=yesterday", "query.submitted_from"),
])
def test_bad_list_queries_are_422(api: Api, query: str, path: str):
    response = api.client.get(f"/v1/declarations?{query}", headers=trader(api))
    assert response.status_code == 422 and path in [e["path"] for e in response.json()["errors"]]


def test_officers_of_other_agencies_do_not_see_personal_data(api: Api):
    declaration_id = submit(api, samples.vessel_call(), headers=api.as_("admin")).json()["id"]
    customs = api.client.get(f"/v1/declarations/{declaration_id}", headers=api.as_("officer", agency="customs"))
    border = api.client.get(f"/v1/declarations/{declaration_id}", headers=api.as_("officer", agency="border"))
    assert "crew" not in customs.json()["document"] and "passengers" not in customs.json()["document"]
    assert border.json()["document"]["crew"][0]["family_name"] == "MEIER"
    history = api.client.get(f"/v1/declarations/{declaration_id}/history",
                             headers=api.as_("officer", agency="port")).json()
    assert "crew" not in history["events"][0]["document"]


def test_unknown_routes_and_methods_are_problems(api: Api):
    assert api.client.get("/v2/nothing", headers=api.as_("admin")).headers["content-type"] == PROBLEM
    response = api.client.delete("/v1/declarations", headers=api.as_("admin"))
    assert response.status_code == 405 and response.headers["content-type"] == PROBLEM


def test_healthz_and_metrics(api: Api):
    submit(api)
    api.sync()
    health = api.client.get("/healthz")
    assert health.status_code == 200 and health.json()["view_lag"] == dict.fromkeys(VIEW_NAMES, 0)
    metrics = api.client.get("/metrics").text
    assert 'tradehub_view_lag_events{view="recognition"} 0.0' in metrics
    assert 'tradehub_declarations{status="submitted"} 1.0' in metrics
    assert 'tradehub_http_requests_total{method="POST",route="/v1/declarations",status="201"} 1.0' in metrics


def test_healthz_reports_a_stopped_view(api: Api):
    api.hub.views.report_failure("status_board", "RuntimeError('boom')")
    response = api.client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["view_errors"] == {"status_board": "RuntimeError('boom')"}
    api.hub.views.report_failure("status_board", None)
    assert api.client.get("/healthz").status_code == 200


def test_the_committed_openapi_document_is_current(api: Api):
    committed = json.loads((ROOT / "openapi.json").read_text())
    assert api.client.get("/openapi.json").json() == committed, (
        "the API changed: regenerate with `tradehub openapi > openapi.json`")


@pytest.mark.parametrize("body, status", [
    (b'{"kind": []}', 422),
    (b"[" * 1200 + b"]" * 1200, 400),
    (b'{"kind": "goods", "n": ' + b"9" * 5000 + b"}", 400),
])
def test_hostile_bodies_get_problems_not_crashes(api: Api, body: bytes, status: int):
    response = api.client.post("/v1/declarations", content=body, headers=trader(api))
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("query, path", [
    ("submitted_from=0001-01-01T00:00:00%2B14:00", "query.submitted_from"),
    ("submitted_to=9999-12-31T23:59:59-14:00", "query.submitted_to"),
])
def test_dates_outside_utc_are_422(api: Api, query: str, path: str):
    response = api.client.get(f"/v1/declarations?{query}", headers=trader(api))
    assert response.status_code == 422 and [e["path"] for e in response.json()["errors"]] == [path]


def test_an_unexpected_failure_is_a_500_problem_without_a_traceback(hub, monkeypatch):
    from fastapi.testclient import TestClient

    from tradehub.api.app import create_app

    def broken(*_, **__):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(hub.declarations, "with_history", broken)
    client = TestClient(create_app(hub), raise_server_exceptions=False)
    declaration_id = client.post("/v1/declarations", json=samples.goods(),
                                 headers=Api(hub).as_("admin")).json()["id"]
    response = client.get(f"/v1/declarations/{declaration_id}/history", headers=Api(hub).as_("admin"))
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert "fire" not in response.text and "Traceback" not in response.text
