"""R8 (docs/guarantees.md): who may see and change what, over every route (docs/api.md).

A goods declaration by trader A, routed to customs and port, is probed by
every kind of caller on every route. Callers who may not see it get 404,
never 403, so its existence does not leak; those who see it but may not
change it get 403; no valid token is 401 everywhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tradehub.auth import issue_token

from . import samples
from .conftest import SECRET, Api

CALLERS = {
    "owner": {"role": "trader", "party": samples.TRADER_A},
    "other trader": {"role": "trader", "party": samples.TRADER_B},
    "routed officer": {"role": "officer", "agency": "customs"},
    "unrouted officer": {"role": "officer", "agency": "border"},
    "admin": {"role": "admin"},
    "no token": None,
    "expired token": "expired",
    "tampered token": "tampered",
}

# route -> expected status per caller
MATRIX = {
    "get": {"owner": 200, "other trader": 404, "routed officer": 200, "unrouted officer": 404, "admin": 200},
    "history": {"owner": 200, "other trader": 404, "routed officer": 200, "unrouted officer": 404,
                "admin": 200},
    "messages": {"owner": 200, "other trader": 404, "routed officer": 200, "unrouted officer": 404,
                 "admin": 200},
    "amend": {"owner": 200, "other trader": 404, "routed officer": 403, "unrouted officer": 404,
              "admin": 200},
    "withdraw": {"owner": 200, "other trader": 404, "routed officer": 403, "unrouted officer": 404,
                 "admin": 200},
    "list": {"owner": 200, "other trader": 200, "routed officer": 200, "unrouted officer": 200, "admin": 200},
    "submit": {"owner": 200, "other trader": 403, "routed officer": 403, "unrouted officer": 403,
               "admin": 200},
}
# Whether the declaration appears in the caller's list.
LISTED = {"owner": True, "other trader": False, "routed officer": True, "unrouted officer": False,
          "admin": True}


def headers_for(caller: str) -> dict[str, str]:
    spec = CALLERS[caller]
    if spec is None:
        return {}
    if spec == "expired":
        token = issue_token(SECRET, "admin", ttl=timedelta(minutes=1),
                            now=datetime.now(timezone.utc) - timedelta(hours=1))
    elif spec == "tampered":
        token = issue_token(SECRET, "trader", party=samples.TRADER_B)
        token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    else:
        token = issue_token(SECRET, **spec)
    return {"Authorization": f"Bearer {token}"}


def call(api: Api, route: str, declaration_id: str, headers: dict[str, str]):
    path = f"/v1/declarations/{declaration_id}"
    if route == "get":
        return api.client.get(path, headers=headers)
    if route == "history":
        return api.client.get(f"{path}/history", headers=headers)
    if route == "messages":
        return api.client.get(f"{path}/messages", headers=headers)
    if route == "amend":
        return api.client.post(f"{path}/amendments", headers=headers, json={
            "expected_version": 1, "declaration": samples.goods(customs_office="3701")})
    if route == "withdraw":
        return api.client.post(f"{path}/withdrawal", headers=headers, json={"reason": "probe"})
    if route == "list":
        return api.client.get("/v1/declarations", headers=headers)
    return api.client.post("/v1/declarations", headers=headers, json=samples.goods())


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", MATRIX)
def test_access_matrix(api: Api, route: str, caller: str):
    declaration_id = api.client.post("/v1/declarations", json=samples.goods(),
                                     headers=headers_for("owner")).json()["id"]
    api.sync()
    before = api.hub.declarations.get(declaration_id).version
    response = call(api, route, declaration_id, headers_for(caller))
    expected = MATRIX[route].get(caller, 401)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert api.hub.declarations.get(declaration_id).version == before  # nothing changed
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if route == "list" and expected == 200:
        listed = declaration_id in [item["id"] for item in response.json()["items"]]
        assert listed is LISTED[caller]


def test_an_unknown_id_and_a_hidden_id_look_the_same(api: Api):
    declaration_id = api.client.post("/v1/declarations", json=samples.goods(),
                                     headers=headers_for("owner")).json()["id"]
    hidden = api.client.get(f"/v1/declarations/{declaration_id}", headers=headers_for("other trader"))
    unknown = api.client.get("/v1/declarations/7adb0da3-0000-5abb-ab21-5de0bf194a10",
                             headers=headers_for("other trader"))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["title"] == unknown.json()["title"]


def test_a_trader_cannot_list_another_declarant_by_filter(api: Api):
    api.client.post("/v1/declarations", json=samples.goods(), headers=headers_for("owner"))
    api.sync()
    response = api.client.get("/v1/declarations", params={"declarant": samples.TRADER_A},
                              headers=headers_for("other trader"))
    assert response.json()["items"] == []


def test_an_officer_cannot_widen_its_scope_with_the_agency_filter(api: Api):
    api.client.post("/v1/declarations", json=samples.goods(), headers=headers_for("owner"))
    api.sync()
    response = api.client.get("/v1/declarations", params={"agency": "customs"},
                              headers=headers_for("unrouted officer"))
    assert response.json()["items"] == []


def test_an_officer_sees_only_its_own_agencys_messages(api: Api):
    from projections.messages import TABLES as MESSAGES_TABLE

    declaration_id = api.client.post("/v1/declarations", json=samples.vessel_call(),
                                     headers=headers_for("admin")).json()["id"]
    api.hub.views.create(MESSAGES_TABLE)
    with api.hub.views.transaction() as cursor:
        for agency in ("customs", "border"):
            cursor.execute("INSERT INTO agency_messages (message_id, declaration_id, version, agency, direction,"
                           " type, function_code, time, body, recorded_at)"
                           " VALUES (?, ?, 1, ?, 'outbound', 'x', '9', ?, '<x/>', ?)",
                           (f"{agency}-message", declaration_id, agency, "2026-03-02T08:30:15+00:00",
                            "2026-03-02T08:30:16+00:00"))
    seen = {}
    for agency in ("customs", "border"):
        response = api.client.get(f"/v1/declarations/{declaration_id}/messages",
                                  headers=headers_for_officer(agency))
        seen[agency] = [message["agency"] for message in response.json()["messages"]]
    admin = api.client.get(f"/v1/declarations/{declaration_id}/messages", headers=headers_for("admin")).json()
    assert seen == {"customs": ["customs"], "border": ["border"]}
    assert sorted(message["agency"] for message in admin["messages"]) == ["border", "customs"]


def headers_for_officer(agency: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, 'officer', agency=agency)}"}
