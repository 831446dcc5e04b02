"""The trader desk (tradehub/web/desk.py, goods_form.py): declaring, copying, amending and withdrawing on pages,
on both stores, as the trader, another tenant, an officer, and a cross-site forger."""

from __future__ import annotations

import copy
import html
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.declarations import validate_document
from projections.status_board import Filters
from projections.subscriptions import Subscriptions
from tradehub import spreadsheets
from tradehub.auth import Caller
from tradehub.bootstrap import Hub
from tradehub.visibility import Visibility
from tradehub.web import goods_form

from . import samples
from .test_web import Browser

SAME_SITE = {"origin": "http://testserver"}


@pytest.fixture
def desk(hub: Hub) -> Browser:
    return Browser(hub).sign_in("trader", party=samples.TRADER_A)


def _listed(hub: Hub) -> list[dict[str, Any]]:
    """Every declaration in the hub, as the board lists them to an admin."""
    hub.runner.catch_up()
    items, _ = Visibility(hub.declarations, hub.views).listed(Caller("admin", "test"), Filters(), limit=500,
                                                                after=None)
    return items


def form_of(document: dict[str, Any], **changes: str) -> dict[str, str]:
    values = goods_form.values_of(document)
    values.update(changes)
    return {**values, "way": "form", "rows": str(goods_form.item_rows(document))}


def post(browser: Browser, path: str, data: dict[str, str], files: Any = None, **headers: str):
    return browser.post(path, data=data, files=files or {"none": ("", b"")}, headers={**SAME_SITE, **headers})


def declared_id(response) -> str:
    assert response.status_code == 303, response.text[:2000]
    match = re.fullmatch(r"/declarations/([0-9a-f-]{36})", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def field_error(html: str, name: str) -> str:
    """The error shown beside the input called `name` (the span after it), or ""."""
    at = html.find(f'name="{name}"')
    assert at >= 0, f"no input {name}"
    following = re.search(r'<span class="field-error"[^>]*>([^<]*)</span>', html[at:at + 1200])
    next_input = html.find("name=", at + 10)
    return following.group(1) if following and at + following.start() < next_input else ""


# ---- who may use it ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, claims", [("officer", {"agency": "customs"}), ("admin", {})])
def test_the_desk_is_for_traders(hub: Hub, role: str, claims: dict[str, str]):
    browser = Browser(hub).sign_in(role, **claims)
    for path in ("/desk", "/desk/new"):
        assert browser.get(path).status_code == 403
    assert post(browser, "/desk/new", form_of(samples.goods())).status_code == 403
    assert _listed(hub) == []


def test_a_signed_out_visitor_goes_to_sign_in(hub: Hub):
    response = Browser(hub).get("/desk/new")
    assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")


def test_a_cross_site_post_is_refused_and_stores_nothing(desk: Browser):
    response = post(desk, "/desk/new", form_of(samples.goods()), origin="https://evil.example")
    assert response.status_code == 403
    response = post(desk, "/desk/new", form_of(samples.goods()), **{"sec-fetch-site": "cross-site"})
    assert response.status_code == 403
    assert _listed(desk.hub) == []


# ---- declaring -----------------------------------------------------------------------------------------------

def test_the_form_declares_what_it_shows_for_the_tokens_party(desk: Browser):
    document = samples.goods("DESK-FORM-1")
    response = post(desk, "/desk/new", form_of(document))
    stored_document = desk.hub.declarations.get(declared_id(response)).document
    expected = validate_document({**document, "documents": []})  # the form has no supporting documents
    assert stored_document == expected
    assert stored_document["declarant"]["id"] == samples.TRADER_A


def test_each_error_is_shown_beside_its_field_and_nothing_is_stored(desk: Browser):
    document = samples.goods("DESK-BAD-1")
    values = form_of(document, **{"port_of_loading": "NOWHERE", "consignee.name": ""})
    values["items[0].hs_code"] = "12"
    response = post(desk, "/desk/new", values)
    assert response.status_code == 422
    html = response.text
    assert "Nothing was stored" in html
    assert field_error(html, "items[0].hs_code")
    assert field_error(html, "port_of_loading")
    assert field_error(html, "consignee.name")
    assert not field_error(html, "reference")
    assert 'value="NOWHERE"' in html  # the form comes back as the trader filled it
    assert _listed(desk.hub) == []


def test_a_blank_row_is_left_out_and_errors_land_on_the_row_they_came_from(desk: Browser):
    document = samples.goods("DESK-ROWS-1")
    values = form_of(document)
    item = {name: values[f"items[0].{name}"] for name in goods_form.ITEM_FIELDS}
    for name in goods_form.ITEM_FIELDS:  # row 0 filled, row 1 blank, row 2 a copy with a bad origin
        values[f"items[1].{name}"] = ""
        values[f"items[2].{name}"] = item[name]
    values["items[2].origin"] = "ZZ"
    values["rows"] = "3"
    response = post(desk, "/desk/new", values)
    assert response.status_code == 422
    assert field_error(response.text, "items[2].origin")
    assert not field_error(response.text, "items[1].origin")
    values["items[2].origin"] = "VN"
    stored_document = desk.hub.declarations.get(declared_id(post(desk, "/desk/new", values))).document
    assert len(stored_document["items"]) == 2


def test_more_item_rows_declares_nothing(desk: Browser):
    values = {**form_of(samples.goods("DESK-MORE-1")), "way": "more"}
    response = post(desk, "/desk/new", values)
    assert response.status_code == 200
    last = int(values["rows"]) + 5 - 1
    assert f'name="items[{last}].hs_code"' in response.text and f'name="items[{last + 1}].' not in response.text
    assert 'value="DESK-MORE-1"' in response.text
    assert _listed(desk.hub) == []


def test_a_json_document_of_any_kind_is_declared_and_one_for_another_party_is_refused(desk: Browser):
    call = samples.vessel_call("DESK-JSON-1", declarant=samples.TRADER_A)
    response = post(desk, "/desk/new", {"way": "json", "json": json.dumps(call)})
    assert desk.hub.declarations.get(declared_id(response)).kind == "vessel_call"
    other = samples.goods("DESK-JSON-2", declarant=samples.TRADER_B)
    response = post(desk, "/desk/new", {"way": "json", "json": json.dumps(other)})
    assert response.status_code == 422 and "you declare for" in response.text
    response = post(desk, "/desk/new", {"way": "json", "json": "{not json"})
    assert response.status_code == 422 and "is not JSON" in response.text
    assert [item["reference"] for item in _listed(desk.hub)] == ["DESK-JSON-1"]


def test_an_uploaded_json_file_is_declared(desk: Browser):
    document = samples.goods("DESK-FILE-1")
    files = {"upload": ("goods.json", json.dumps(document).encode(), "application/json")}
    response = post(desk, "/desk/new", {"way": "file"}, files=files)
    assert desk.hub.declarations.get(declared_id(response)).reference == "DESK-FILE-1"
    files = {"upload": ("goods.bin", b"\xff\xfe\x00garbage", "application/octet-stream")}
    response = post(desk, "/desk/new", {"way": "file"}, files=files)
    assert response.status_code == 422 and "neither UTF-8 JSON nor a spreadsheet" in response.text


def test_a_repeated_reference_is_named_on_the_reference_field(desk: Browser):
    document = samples.goods("DESK-TWICE-1")
    declared_id(post(desk, "/desk/new", form_of(document)))
    response = post(desk, "/desk/new", form_of(document, **{"items[0].description": "something else"}))
    assert response.status_code == 422
    assert "already declaration" in field_error(response.text, "reference")


def test_a_tampered_base_document_is_refused_or_validated_in_full(desk: Browser):
    values = form_of(samples.goods("DESK-BASE-1"))
    values["base"] = json.dumps({"kind": "vessel_call"})
    response = post(desk, "/desk/new", values)
    assert response.status_code == 422 and "not a goods declaration" in response.text
    values["base"] = json.dumps({"documents": [{"type": "no such type", "number": "1"}]})
    response = post(desk, "/desk/new", values)
    assert response.status_code == 422 and "$.documents[0].type" in response.text
    assert _listed(desk.hub) == []


# ---- copy, amend, withdraw ---------------------------------------------------------------------------------

def test_copy_as_new_keeps_everything_but_the_reference(desk: Browser):
    original = samples.goods("DESK-COPY-1")
    first = desk.hub.declarations.submit(original).declaration
    page = desk.get(f"/desk/new?copy={first.id}")
    assert page.status_code == 200
    values = dict(re.findall(r'<input id="f-([^"]+)" name="[^"]+" value="([^"]*)"', page.text))
    assert values["reference"] == "" and values["consignor.name"] == original["consignor"]["name"]
    base = re.search(r'<input type="hidden" name="base" value="([^"]*)"', page.text).group(1)
    base_document = json.loads(html.unescape(base))
    assert "reference" not in base_document
    form = {**goods_form.values_of(base_document), "reference": "DESK-COPY-2", "way": "form",
            "base": json.dumps(base_document), "rows": str(goods_form.item_rows(base_document))}
    copied = desk.hub.declarations.get(declared_id(post(desk, "/desk/new", form))).document
    assert {**copied, "reference": "DESK-COPY-1"} == first.document  # the documents list came along too


def test_amend_with_the_version_seen_and_refuse_a_stale_one(desk: Browser):
    declaration = desk.hub.declarations.submit(samples.goods("DESK-AMEND-1")).declaration
    page = desk.get(f"/desk/declarations/{declaration.id}/amend")
    assert page.status_code == 200 and 'name="version" value="1"' in page.text
    values = {**form_of(declaration.document, **{"items[0].description": "Frozen prawns"}),
              "version": "1", "base": json.dumps(declaration.document)}
    desk.hub.declarations.amend(declaration.id, 1, {**declaration.document, "containers": []})  # someone else first
    response = post(desk, f"/desk/declarations/{declaration.id}/amend", values)
    assert response.status_code == 409 and "at version 2 now" in response.text
    values["version"] = "2"
    assert post(desk, f"/desk/declarations/{declaration.id}/amend", values).status_code == 303
    amended = desk.hub.declarations.get(declaration.id)
    assert amended.version == 3 and amended.document["items"][0]["description"] == "Frozen prawns"


def test_withdraw_from_the_desk(desk: Browser):
    declaration = desk.hub.declarations.submit(samples.goods("DESK-WITHDRAW-1")).declaration
    response = post(desk, f"/desk/declarations/{declaration.id}/withdrawal", {"version": "1", "reason": "sold"})
    assert response.status_code == 303
    assert desk.hub.declarations.get(declaration.id).withdrawn


def test_another_tenants_declaration_cannot_be_copied_amended_or_withdrawn(hub: Hub):
    theirs = hub.declarations.submit(samples.goods("DESK-THEIRS-1", declarant=samples.TRADER_B)).declaration
    mine = Browser(hub).sign_in("trader", party=samples.TRADER_A)
    assert mine.get(f"/desk/new?copy={theirs.id}").status_code == 404
    assert mine.get(f"/desk/declarations/{theirs.id}/amend").status_code == 404
    values = {**form_of(theirs.document), "version": "1"}
    assert post(mine, f"/desk/declarations/{theirs.id}/amend", values).status_code == 404
    assert post(mine, f"/desk/declarations/{theirs.id}/withdrawal", {"version": "1"}).status_code == 404
    assert hub.declarations.get(theirs.id).version == 1


# ---- the form's mapping, as a property ---------------------------------------------------------------------

item_strategy = st.fixed_dictionaries({
    "hs_code": st.sampled_from(["0306170000", "8471300000", "0101210000"]),
    "description": st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1, max_size=30),
    "origin": st.sampled_from(["VN", "DE", "BR"]),
    "quantity": st.integers(1, 10**6).map(str), "unit": st.sampled_from(["KGM", "H87"]),
    "gross_kg": st.just("1000"), "net_kg": st.just("900"),
    "value": st.integers(1, 10**7).map(lambda v: f"{v}.00"), "currency": st.sampled_from(["USD", "EUR", "CNY"]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(item_strategy, min_size=1, max_size=8), blank_after=st.integers(0, 8))
def test_the_form_round_trips_a_document_over_its_base(items: list[dict[str, str]], blank_after: int):
    """values_of then document_of over the same base gives the document back, whatever its items; blank rows
    inserted between the filled ones change nothing but the row numbers the errors are shown on."""
    document = validate_document(samples.goods("PROP-1", items=items))
    values = goods_form.values_of(document)
    rebuilt, rows = goods_form.document_of(values, document, document["declarant"]["id"])
    assert rebuilt == document and rows == {i: i for i in range(len(items))}
    spread = {key: value for key, value in values.items() if not key.startswith("items[")}
    for i, item in enumerate(document["items"]):  # the same items, with an empty row after item `blank_after`
        row = i + (1 if i > blank_after else 0)
        spread.update({f"items[{row}].{name}": str(item[name]) for name in goods_form.ITEM_FIELDS})
    rebuilt, rows = goods_form.document_of(spread, {k: v for k, v in document.items() if k != "items"},
                                           document["declarant"]["id"])
    assert rebuilt == document
    assert sorted(rows) == list(range(len(items))) and all(rows[i] >= i for i in rows)


def test_errors_map_to_rows_and_the_rest_to_the_top():
    errors = [goods_form.FieldError("$.items[1].hs_code", "bad"), goods_form.FieldError("$.documents[0].number", "x"),
              goods_form.FieldError("$.transport.vessel", "is required for sea transport"),
              goods_form.FieldError("$.containers[3]", "check digit")]
    beside, rest = goods_form.errors_by_field(errors, {0: 0, 1: 4})
    assert beside == {"items[4].hs_code": "bad", "transport.vessel.name": "is required for sea transport",
                      "containers": "check digit"}
    assert rest == ["$.documents[0].number: x"]


def test_a_base_too_large_or_not_json_is_refused():
    with pytest.raises(goods_form.BaseRefused):
        goods_form.base_of("x" * (goods_form.MAX_BASE_BYTES + 1))
    with pytest.raises(goods_form.BaseRefused):
        goods_form.base_of("[1, 2]")
    assert goods_form.base_of("  ") == {}
    assert goods_form.base_of('{"kind": "goods"}') == {"kind": "goods"}


# ---- webhooks and notifications on the desk ----------------------------------------------------------------

PUBLIC_URL = "https://93.184.216.34/tradehub"  # a public address written as one: no name to resolve


def test_an_endpoint_is_registered_on_the_page_and_its_secret_shown_once(desk: Browser):
    data = {"url": PUBLIC_URL, "event.declaration.status": "1"}
    response = post(desk, "/desk/webhooks", data)
    assert response.status_code == 201
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", response.text).group(0)
    listing = desk.get("/desk/webhooks")
    assert PUBLIC_URL in listing.text and secret not in listing.text and "whsec_" not in listing.text
    [made] = Subscriptions(desk.hub.views).listed(samples.TRADER_A)
    assert made["events"] == ["declaration.status"] and made["url"] == PUBLIC_URL
    assert desk.get(f"/desk/webhooks/{made['id']}").status_code == 200


@pytest.mark.parametrize("url, says", [("https://127.0.0.1/x", "the URL"), ("http://93.184.216.34/x", "https"),
                                       ("https://10.1.2.3/x", "the URL")])
def test_a_private_or_plain_http_endpoint_is_refused_beside_the_url(desk: Browser, url: str, says: str):
    response = post(desk, "/desk/webhooks", {"url": url, "event.declaration.status": "1"})
    assert response.status_code == 422 and says in field_error(response.text, "url")
    assert Subscriptions(desk.hub.views).listed(samples.TRADER_A) == []


def test_an_endpoint_needs_an_event_type(desk: Browser):
    response = post(desk, "/desk/webhooks", {"url": PUBLIC_URL})
    assert response.status_code == 422 and "choose at least one" in response.text
    assert Subscriptions(desk.hub.views).listed(samples.TRADER_A) == []


def test_another_tenants_endpoint_cannot_be_read_or_deleted(hub: Hub):
    theirs = Browser(hub).sign_in("trader", party=samples.TRADER_B)
    assert post(theirs, "/desk/webhooks", {"url": PUBLIC_URL, "event.declaration.status": "1"}).status_code == 201
    [made] = Subscriptions(hub.views).listed(samples.TRADER_B)
    mine = Browser(hub).sign_in("trader", party=samples.TRADER_A)
    assert mine.get(f"/desk/webhooks/{made['id']}").status_code == 404
    assert post(mine, f"/desk/webhooks/{made['id']}/deletion", {}).status_code == 404
    assert PUBLIC_URL not in mine.get("/desk/webhooks").text
    assert post(theirs, f"/desk/webhooks/{made['id']}/deletion", {}).status_code == 303
    assert Subscriptions(hub.views).listed(samples.TRADER_B) == []


def test_the_notifications_page_lists_the_partys_own_newest_first(hub: Hub):
    from .test_web import exchange_with_simulated_agencies

    hub.declarations.submit(samples.goods("DESK-NOTE-1"))
    hub.declarations.submit(samples.goods("DESK-NOTE-OTHER", declarant=samples.TRADER_B))
    exchange_with_simulated_agencies(hub)
    page = Browser(hub).sign_in("trader", party=samples.TRADER_A).get("/desk/notifications")
    assert page.status_code == 200
    listed = re.findall(r'<li class="n-([a-z_]+)"><a href="/declarations/[^"]+">([^<]+)</a>', page.text)
    assert listed and {reference for _, reference in listed} == {"DESK-NOTE-1"}
    assert listed[0][0] == "released"  # the newest first: the release came last
    assert listed[-1][0] == "submitted"


def test_an_uploaded_spreadsheet_vessel_call_is_declared_and_a_bad_cell_is_named(desk: Browser):
    call = samples.vessel_call("DESK-SHEET-1", declarant=samples.TRADER_A)
    sheet = ("call.xlsx", spreadsheets.fill(call), spreadsheets.MEDIA_TYPE)
    response = post(desk, "/desk/new", {"way": "file"}, files={"upload": sheet})
    assert desk.hub.declarations.get(declared_id(response)).document == validate_document(call)
    bad = copy.deepcopy(call)
    bad["reference"] = "DESK-SHEET-2"
    bad["vessel"]["imo"] = "1234568"  # a wrong check digit (1234567 is right)
    sheet = ("call.xlsx", spreadsheets.fill(bad), spreadsheets.MEDIA_TYPE)
    response = post(desk, "/desk/new", {"way": "file"}, files={"upload": sheet})
    assert response.status_code == 422
    assert re.search(r"[A-Za-z ]+![A-Z]+[0-9]+: [^<]*IMO[^<]*\(\$\.vessel\.imo\)", html.unescape(response.text))
    assert [item["reference"] for item in _listed(desk.hub)] == ["DESK-SHEET-1"]


# ---- what a review found: each a failure path of its own ---------------------------------------------------

DESK_POSTS = ["/desk/new", "/desk/declarations/{id}/amend", "/desk/declarations/{id}/withdrawal", "/desk/webhooks",
              "/desk/webhooks/{id}/deletion"]


@pytest.mark.parametrize("path", DESK_POSTS)
def test_every_desk_post_is_refused_from_another_site(desk: Browser, path: str):
    declaration = desk.hub.declarations.submit(samples.goods("DESK-CSRF-1")).declaration
    values = {**form_of(declaration.document), "version": "1", "url": PUBLIC_URL, "event.declaration.status": "1"}
    response = post(desk, path.format(id=declaration.id), values, origin="https://evil.example")
    assert response.status_code == 403
    assert desk.hub.declarations.get(declaration.id).version == 1
    assert Subscriptions(desk.hub.views).listed(samples.TRADER_A) == []


def test_amending_a_declaration_of_more_items_than_the_form_shows_keeps_them_all(desk: Browser):
    many = [dict(samples.goods()["items"][0], description=f"line {n}") for n in range(goods_form.ITEM_ROWS_MAX + 7)]
    declaration = desk.hub.declarations.submit(samples.goods("DESK-MANY-1", items=many)).declaration
    page = desk.get(f"/desk/declarations/{declaration.id}/amend")
    assert "7 more items than the form shows" in page.text
    values = {**form_of(declaration.document, **{"items[0].description": "line zero"}), "version": "1",
              "base": json.dumps(declaration.document)}
    assert post(desk, f"/desk/declarations/{declaration.id}/amend", values).status_code == 303
    items = desk.hub.declarations.get(declaration.id).document["items"]
    assert len(items) == len(many) and items[0]["description"] == "line zero"
    assert [item["description"] for item in items[1:]] == [item["description"] for item in many[1:]]


def test_a_refused_amendment_keeps_the_version_the_trader_saw(desk: Browser):
    declaration = desk.hub.declarations.submit(samples.goods("DESK-STALE-1")).declaration
    values = {**form_of(declaration.document), "version": "1", "base": "{not json"}
    desk.hub.declarations.amend(declaration.id, 1, {**declaration.document, "containers": []})  # someone else
    response = post(desk, f"/desk/declarations/{declaration.id}/amend", values)
    assert response.status_code == 422
    assert 'name="version" value="1"' in response.text and 'name="version" value="2"' not in response.text
    del values["version"]
    response = post(desk, f"/desk/declarations/{declaration.id}/amend", values)
    assert response.status_code == 422 and 'name="version"' not in response.text
    assert desk.hub.declarations.get(declaration.id).version == 2


def test_after_a_json_error_the_form_is_drawn_over_what_is_amended(desk: Browser):
    declaration = desk.hub.declarations.submit(samples.goods("DESK-OVER-1")).declaration
    assert declaration.document["documents"]
    response = post(desk, f"/desk/declarations/{declaration.id}/amend",
                    {"way": "json", "json": '{"kind": "goods"}', "version": "1"})
    assert response.status_code == 422
    base = html.unescape(re.search(r'<input type="hidden" name="base" value="([^"]*)"', response.text).group(1))
    assert json.loads(base)["documents"] == declaration.document["documents"]


def test_a_withdrawal_without_a_version_is_refused(desk: Browser):
    declaration = desk.hub.declarations.submit(samples.goods("DESK-NOVERSION-1")).declaration
    response = post(desk, f"/desk/declarations/{declaration.id}/withdrawal", {"reason": "sold"})
    assert response.status_code == 400
    assert not desk.hub.declarations.get(declaration.id).withdrawn


def test_a_rejected_declaration_can_be_amended_from_the_desk(desk: Browser):
    from .test_web import exchange_with_simulated_agencies

    declaration = desk.hub.declarations.submit(samples.goods("DESK-REJECT-1")).declaration
    exchange_with_simulated_agencies(desk.hub)
    assert desk.hub.declarations.get(declaration.id).status == "rejected"
    listing = desk.get("/desk").text
    assert f'href="/desk/declarations/{declaration.id}/amend"' in listing


def test_a_post_over_the_body_limit_gets_a_page_not_a_problem_document(desk: Browser):
    files = {"upload": ("big.json", b" " * (desk.hub.settings.max_body_bytes + 1), "application/json")}
    response = post(desk, "/desk/new", {"way": "file"}, files=files)
    assert response.status_code == 413 and response.headers["content-type"].startswith("text/html")
    assert "Nothing was stored" in response.text
    assert _listed(desk.hub) == []
