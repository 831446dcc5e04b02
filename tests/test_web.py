"""The officer web pages over HTTP, in process, on SQLite and PostgreSQL: sessions, scoping, what each page shows."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.agencies import AGENCIES
from tradehub import visibility
from tradehub.api.app import create_app
from tradehub.auth import issue_token
from tradehub.bootstrap import Hub
from tradehub.web import install_pages
from tradehub.web import pages as web_pages

from . import samples
from .conftest import SECRET
from .test_simulators import Loop

CSP = "default-src 'self'"
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def exchange_with_simulated_agencies(hub: Hub, agencies: Sequence[str] = AGENCIES) -> None:
    """Dispatch every message and let the simulated `agencies` answer until they are done, with no broker between;
    then the views catch up with what the enforcement process settled."""
    Loop(hub).settle(agencies)
    samples.followed(hub)


class Browser:
    """A TestClient over the API with the pages installed; `sign_in` keeps the session cookie."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.client = TestClient(install_pages(create_app(hub), hub))

    def token(self, role: str, **claims: Any) -> str:
        return issue_token(SECRET, role, **claims)

    def sign_in(self, role: str, **claims: Any) -> Browser:
        response = self.client.post("/sign-in", data={"token": self.token(role, **claims)}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return self

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, follow_redirects=False, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.client.post(path, follow_redirects=False, **kwargs)


@pytest.fixture
def browser(hub: Hub) -> Browser:
    return Browser(hub)


def submit(hub: Hub, *documents: dict[str, Any]) -> list[str]:
    ids = [str(hub.declarations.submit(document).declaration.id) for document in documents]
    hub.runner.catch_up()
    return ids


def references(html: str) -> list[str]:
    """The references the board lists, top to bottom."""
    return re.findall(r'<a href="/declarations/[0-9a-f-]{36}">([^<]+)</a>', html)


# ---- sessions ------------------------------------------------------------------------------------

def test_signing_in_sets_an_http_only_strict_cookie_bounded_by_the_token_and_goes_to_the_board(browser: Browser):
    token = issue_token(SECRET, "officer", agency="customs", ttl=timedelta(hours=2))
    response = browser.post("/sign-in", data={"token": token})
    assert response.status_code == 303 and response.headers["location"] == "/board"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"tradehub_session={token};")
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= set(attributes)
    assert attributes["samesite"].lower() == "samesite=strict" and attributes["path"] == "Path=/"
    assert 7100 < int(attributes["max-age"].split("=")[1]) <= 7200
    board = browser.get("/board")
    assert board.status_code == 200 and "customs" in board.text


@pytest.mark.parametrize("token, reason", [
    ("not-a-token", "not valid"),
    (issue_token(SECRET, "officer", agency="customs", now=datetime.now(timezone.utc) - timedelta(hours=9)),
     "expired"),
    (issue_token("another-secret-" + "x" * 40, "admin"), "not valid"),
    ("", "Paste a token"),
])
def test_a_bad_token_is_refused_with_401_and_a_message(browser: Browser, token: str, reason: str):
    response = browser.post("/sign-in", data={"token": token})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert reason in response.text and 'role="alert"' in response.text
    assert browser.get("/board").status_code == 303


@pytest.mark.parametrize("path", ["/board", "/board?status=held", "/declarations/0b6d4c9c-6c0e-5f4e-9d3a-2f1b0c9e8a7d",
                                  "/recognition", "/alerts", "/stats"])
def test_pages_send_a_visitor_without_a_session_to_sign_in_and_back(browser: Browser, path: str):
    response = browser.get(path)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/sign-in?next=")
    assert browser.get(location).status_code == 200
    token = browser.token("admin")
    back = browser.post("/sign-in", data={"token": token, "next": path})
    assert back.headers["location"] == path


def test_the_root_goes_to_the_board_or_to_sign_in(browser: Browser):
    assert browser.get("/").headers["location"] == "/sign-in"
    browser.sign_in("admin")
    assert browser.get("/").headers["location"] == "/board"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "board"])
def test_signing_in_never_sends_the_browser_to_another_site(browser: Browser, target: str):
    response = browser.post("/sign-in", data={"token": browser.token("admin"), "next": target})
    assert response.headers["location"] == "/board"


def test_signing_out_clears_the_cookie(browser: Browser):
    browser.sign_in("admin")
    response = browser.post("/sign-out")
    assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    assert 'tradehub_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    assert browser.get("/board").status_code == 303


def test_an_expired_session_goes_back_to_sign_in(browser: Browser):
    expired = issue_token(SECRET, "admin", now=datetime.now(timezone.utc) - timedelta(hours=9))
    browser.client.cookies.set("tradehub_session", expired)
    response = browser.get("/board")
    assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")


def test_the_session_cookie_is_no_bearer_token_for_the_api(browser: Browser):
    browser.sign_in("admin")
    assert browser.get("/v1/declarations").status_code == 401


def test_forms_posted_from_another_site_are_refused(browser: Browser):
    token = browser.token("admin")
    assert browser.post("/sign-in", data={"token": token}, headers={"Origin": "https://evil.example"}
                        ).status_code == 403
    assert browser.post("/sign-in", data={"token": token}, headers={"Sec-Fetch-Site": "cross-site"}
                        ).status_code == 403
    same = browser.post("/sign-in", data={"token": token}, headers={"Origin": "http://testserver"})
    assert same.status_code == 303
    assert browser.post("/sign-out", headers={"Origin": "null"}).status_code == 403


# ---- the board -----------------------------------------------------------------------------------

def test_the_board_lists_declarations_newest_first_with_per_agency_chips(browser: Browser):
    submit(browser.hub, samples.goods("WEB-0001"), samples.vessel_call("WEB-0002"), samples.goods("WEB-0003"))
    html = browser.sign_in("admin").get("/board").text
    assert references(html) == ["WEB-0003", "WEB-0002", "WEB-0001"]
    assert 'class="chip s-pending" title="customs: pending"' in html
    assert 'title="border: pending"' in html  # the vessel call is routed to border
    assert 'class="chip s-submitted"' in html


def test_the_board_filters(browser: Browser):
    submit(browser.hub, samples.goods("WEB-0001"), samples.vessel_call("WEB-0002"),
           samples.goods("WEB-0003", declarant=samples.TRADER_B, consignee={"id": samples.TRADER_B, "name": "B",
                                                                             "country": "CN"}))
    browser.sign_in("admin")
    assert references(browser.get("/board?kind=vessel_call").text) == ["WEB-0002"]
    assert references(browser.get("/board?agency=border").text) == ["WEB-0002"]
    assert references(browser.get(f"/board?declarant={samples.TRADER_B}").text) == ["WEB-0003"]
    assert references(browser.get("/board?reference=WEB-0001").text) == ["WEB-0001"]
    assert references(browser.get("/board?status=released").text) == []
    today = datetime.now(timezone.utc).date()
    assert len(references(browser.get(f"/board?submitted_from={today}&submitted_to={today}").text)) == 3
    assert references(browser.get(f"/board?submitted_to={today - timedelta(days=1)}").text) == []
    kept = browser.get("/board?kind=goods&declarant=" + samples.TRADER_A).text
    assert 'value="goods" selected' in kept and f'value="{samples.TRADER_A}"' in kept


@pytest.mark.parametrize("query, message", [
    ("status=lost", "status must be one of"),
    ("submitted_from=yesterday", "submitted from must be a date"),
    ("cursor=nonsense", "not a page cursor"),
])
def test_a_bad_filter_is_422_naming_it(browser: Browser, query: str, message: str):
    response = browser.sign_in("admin").get(f"/board?{query}")
    assert response.status_code == 422 and message in response.text


def test_the_board_pages_with_an_older_link_that_keeps_the_filters(browser: Browser, monkeypatch):
    monkeypatch.setattr(web_pages, "PAGE_SIZE", 2)
    submit(browser.hub, *(samples.goods(f"WEB-{n:04d}") for n in range(5)))
    browser.sign_in("admin")
    seen = []
    path = "/board?kind=goods"
    while path:
        html = browser.get(path).text
        seen += references(html)
        older = re.search(r'<a href="([^"]+)" rel="next">Older', html)
        path = older.group(1).replace("&amp;", "&") if older else None
        if path:
            assert "kind=goods" in path and "cursor=" in path
    assert seen == [f"WEB-{n:04d}" for n in reversed(range(5))]


def test_an_officer_sees_only_declarations_routed_to_its_agency(browser: Browser):
    goods, call = submit(browser.hub, samples.goods("WEB-0001"), samples.vessel_call("WEB-0002"))
    border = Browser(browser.hub).sign_in("officer", agency="border")
    assert references(border.get("/board").text) == ["WEB-0002"]
    assert references(border.get("/board?reference=WEB-0001").text) == []
    hidden, unknown = border.get(f"/declarations/{goods}"), border.get(f"/declarations/{uuid.uuid4()}")
    assert hidden.status_code == unknown.status_code == 404
    assert "WEB-0001" not in hidden.text
    assert border.get("/declarations/not-an-id").status_code == 404
    assert border.get(f"/declarations/{call}").status_code == 200
    customs = Browser(browser.hub).sign_in("officer", agency="customs")
    assert references(customs.get("/board").text) == ["WEB-0002", "WEB-0001"]


def test_a_trader_sees_its_own_declarations_only_and_not_the_officers_views(browser: Browser):
    other = samples.goods("WEB-B", declarant=samples.TRADER_B,
                          consignee={"id": samples.TRADER_B, "name": "B", "country": "CN"})
    mine, theirs = submit(browser.hub, samples.goods("WEB-A"), other)
    trader = browser.sign_in("trader", party=samples.TRADER_A)
    assert references(trader.get("/board").text) == ["WEB-A"]
    assert references(trader.get(f"/board?declarant={samples.TRADER_B}").text) == []
    assert trader.get(f"/declarations/{theirs}").status_code == 404
    assert trader.get(f"/declarations/{mine}").status_code == 200
    for path in ("/recognition", "/alerts", "/stats"):
        response = trader.get(path)
        assert response.status_code == 403 and "officers" in response.text
    assert trader.post("/alerts", data={"subject_kind": "party", "subject": samples.TRADER_B,
                                        "reason": "x"}).status_code == 403
    assert 'href="/stats"' not in trader.get("/board").text


def test_the_board_stays_quick_with_ten_thousand_declarations(browser: Browser):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows, agencies = [], []
    for n in range(10_000):
        ident = str(uuid.UUID(int=n + 1))
        stamp = (start + timedelta(seconds=n)).isoformat(timespec="microseconds")
        routed = '{"customs": {"status": "accepted", "routed": true}, "port": {"status": "pending", "routed": true}}'
        rows.append((ident, "goods", samples.TRADER_A, f"BULK-{n:05d}", "in_progress", 2, stamp, stamp, routed))
        agencies += [(ident, "customs", "accepted", 1), (ident, "port", "pending", 1)]
    with browser.hub.views.transaction() as cursor:
        cursor.executemany("INSERT INTO board_declarations (id, kind, declarant, reference, status, version,"
                           " submitted_at, updated_at, agencies) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        cursor.executemany("INSERT INTO board_agencies (declaration_id, agency, status, routed)"
                           " VALUES (?, ?, ?, ?)", agencies)
    officer = browser.sign_in("officer", agency="customs")
    officer.get("/board")  # warm up
    started = time.perf_counter()
    first = officer.get("/board")
    following = re.search(r'<a href="([^"]+)" rel="next">', first.text).group(1).replace("&amp;", "&")
    second = officer.get(following)
    elapsed = time.perf_counter() - started
    assert references(first.text) == [f"BULK-{n:05d}" for n in range(9_999, 9_949, -1)]
    assert references(second.text)[0] == "BULK-09949" and len(references(second.text)) == 50
    assert "10,000" in first.text  # the hub-wide count by status
    assert elapsed < 2.0, f"two board pages took {elapsed:.2f} s"


# ---- a declaration -------------------------------------------------------------------------------

def test_the_declaration_page_shows_the_timeline_the_escaped_xml_and_the_history(browser: Browser):
    [ident] = submit(browser.hub, samples.goods("WEB-0001"))
    exchange_with_simulated_agencies(browser.hub)
    html = browser.sign_in("admin").get(f"/declarations/{ident}").text
    assert "<h1>WEB-0001</h1>" in html and 'class="chip s-released"' in html
    customs = html[html.index('id="agency-customs"'):html.index("</article>", html.index('id="agency-customs"'))]
    assert "→ Sent declaration" in customs and "← Received reply" in customs
    assert customs.index("→ Sent declaration") < customs.index("← Received reply")
    assert "every goods" in customs  # why it was routed
    assert 'id="agency-port"' in html and 'id="agency-border"' not in html
    messages = html[html.index('id="messages"'):html.index('id="history"')]
    assert messages.count("<details") >= 4
    assert "&lt;?xml" in messages and "<?xml" not in messages
    history = html[html.index('id="history"'):html.index('id="document"')]
    assert history.index("Submitted") < history.index("AgencyResponded") < history.index("Released")
    assert "every goods" in history  # the routes the Submitted event recorded
    assert 'id="exchange"' in html and "<th>Acknowledged</th>" in html


def test_an_officer_reads_its_own_agencys_messages_and_no_personal_data_unless_border_or_maritime(browser: Browser):
    [ident] = submit(browser.hub, samples.vessel_call("WEB-CALL"))
    exchange_with_simulated_agencies(browser.hub)
    customs = Browser(browser.hub).sign_in("officer", agency="customs").get(f"/declarations/{ident}").text
    messages = customs[customs.index('id="messages"'):customs.index('id="history"')]
    assert "to customs" in messages and "to border" not in messages and "to maritime" not in messages
    assert "MEIER" not in customs and "C01X00T47" not in customs
    assert 'id="agency-border"' in customs  # every agency's decision is visible to the others
    border = Browser(browser.hub).sign_in("officer", agency="border").get(f"/declarations/{ident}").text
    assert "MEIER" in border


def test_a_declaration_with_no_messages_yet_still_has_its_page(browser: Browser):
    [ident] = submit(browser.hub, samples.goods("WEB-0001"))
    html = browser.sign_in("admin").get(f"/declarations/{ident}").text
    assert "No messages recorded yet" in html and "No messages yet." in html


def test_user_data_is_escaped(browser: Browser):
    document = samples.goods("WEB-ESC")
    document["items"][0]["description"] = "<script>alert(1)</script> & <b>"
    [ident] = submit(browser.hub, document)
    html = browser.sign_in("admin").get(f"/declarations/{ident}").text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in html


# ---- headers and assets --------------------------------------------------------------------------

def test_every_page_sets_a_strict_content_security_policy_and_loads_nothing_from_elsewhere(browser: Browser):
    [ident] = submit(browser.hub, samples.goods("WEB-0001"))
    exchange_with_simulated_agencies(browser.hub)
    pages = {"/sign-in": browser.get("/sign-in")}
    browser.sign_in("admin")
    for path in ("/board", f"/declarations/{ident}", "/recognition", "/alerts", "/stats", f"/declarations/{uuid.uuid4()}"):
        pages[path] = browser.get(path)
    for path, response in pages.items():
        policy = response.headers["content-security-policy"]
        assert policy.startswith(CSP) and "unsafe-inline" not in policy and "unsafe-eval" not in policy, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"].startswith("text/html")
        assert not EXTERNAL.search(response.text), (path, EXTERNAL.search(response.text))
        scripts = re.findall(r"<script[^>]*>.*?</script>", response.text, re.DOTALL)  # the live feed's, from /static
        assert set(scripts) <= {'<script src="/static/live.js" defer></script>'}, path
        assert response.text.count("<script") == len(scripts) and " style=" not in response.text, path
        assert "<style" not in response.text, path
        assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", response.text, re.IGNORECASE), path  # no inline handlers
    stylesheet = browser.get("/static/style.css")
    assert stylesheet.status_code == 200 and stylesheet.headers["content-type"].startswith("text/css")
    assert "url(" not in stylesheet.text and "@import" not in stylesheet.text
    assert browser.get("/static/favicon.svg").status_code == 200


def test_the_pages_leave_the_openapi_document_alone(hub: Hub):
    plain = TestClient(create_app(hub)).get("/openapi.json").json()
    with_pages = TestClient(install_pages(create_app(hub), hub)).get("/openapi.json").json()
    assert with_pages == plain
    assert not any(path in with_pages["paths"] for path in ("/", "/board", "/sign-in", "/stats"))


# ---- recognition, alerts and statistics ------------------------------------------------------------

def fake_projection(monkeypatch, name: str, result: dict[str, Any]) -> list[tuple]:
    """Stand a read function in for the views' `name` that the pages read through; returns the calls it gets."""
    calls: list[tuple] = []

    def view(views: Any, *args: Any) -> dict[str, Any]:
        calls.append(args)
        return result

    monkeypatch.setattr(visibility, name, view)
    return calls


ALERTS = {"alerts": [
    {"id": "alert-1", "subject_kind": "vessel", "subject": "9321483", "reason": "Smuggling <tip-off>",
     "raised_by": "officer:customs", "raised_at": "2026-03-02T08:30:15+00:00", "status": "open",
     "cleared_at": None, "cleared_by": None,
     "declarations": [{"declaration_id": str(uuid.UUID(int=7)), "reference": "HELD-1",
                       "held_at": "2026-03-02T08:30:16+00:00", "lifted_at": None}]},
    {"id": "alert-0", "subject_kind": "party", "subject": samples.TRADER_B, "reason": "old", "raised_by": "admin:admin",
     "raised_at": "2026-03-01T08:00:00+00:00", "status": "cleared", "cleared_at": "2026-03-01T09:00:00+00:00",
     "cleared_by": "admin:admin", "declarations": []},
]}


def test_the_alerts_page_lists_alerts_and_the_declarations_they_hold(browser: Browser, monkeypatch):
    calls = fake_projection(monkeypatch, "alerts_view", ALERTS)
    html = browser.sign_in("officer", agency="maritime").get("/alerts").text
    assert calls == [("maritime",)]
    assert "Smuggling &lt;tip-off&gt;" in html and "HELD-1" in html and 'id="alert-alert-1"' in html
    assert ">Clear</button>" not in html  # customs raised the open one: maritime may not clear it (I6)
    assert '<select id="a-kind" name="subject_kind">' in html
    html = Browser(browser.hub).sign_in("officer", agency="customs").get("/alerts").text
    assert html.count(">Clear</button>") == 1  # the open one only
    assert 'action="/alerts/alert-1/clear"' in html


def test_the_recognition_page_lists_inspections_and_who_recognised_them(browser: Browser, monkeypatch):
    calls = fake_projection(monkeypatch, "recognition_view", {
        "inspections": [{"declaration_id": str(uuid.UUID(int=3)), "reference": "INSP-1", "agency": "inspection",
                         "result": "pass", "inspected_at": "2026-03-02T08:30:15+00:00", "message_id": "m-1",
                         "recognised_by": [{"agency": "customs", "notified_at": "2026-03-02T08:30:16+00:00",
                                            "released_at": "2026-03-02T08:31:00+00:00", "saved": True}]}],
        "documents": [{"declaration_id": str(uuid.UUID(int=4)), "reference": "CITING-1", "version": 2,
                       "recognised_by": "customs", "cited_at": "2026-03-02T08:30:15+00:00",
                       "documents": [{"number": "PHY-<1>", "issuer": "inspection", "type": "phytosanitary_certificate",
                                      "items": [1, 3], "revoked_at": "2026-03-03T10:00:00+00:00"}]}],
        "totals": {"inspections": 1, "recognitions": 1, "inspections_saved": 1, "documents_recognised": 1}})
    html = browser.sign_in("admin").get("/recognition").text
    assert calls == [(None,)]
    assert "INSP-1" in html and "inspection saved" in html and "2026-03-02 08:31:00 UTC" in html
    assert "documents recognised" in html and "CITING-1" in html and "PHY-&lt;1&gt;" in html
    assert "phytosanitary certificate, issued by inspection, items 1, 3" in html
    assert 'revoked <time datetime="2026-03-03T10:00:00Z">' in html


def test_the_statistics_page_draws_its_charts_as_inline_svg(browser: Browser, monkeypatch):
    fake_projection(monkeypatch, "statistics_view", {
        "by_status": {"released": 40, "in_progress": 12, "rejected": 3, "held": 1},
        "by_agency": {"customs": {"released": 40, "accepted": 10}, "port": {"pending": 5, "released": 30}},
        "clearance": {"overall": {"count": 40, "p50_seconds": 312.0, "p90_seconds": 5400.0},
                      "agencies": {"customs": {"count": 40, "p50_seconds": 120.0, "p90_seconds": 900.0},
                                   "port": {"count": 0, "p50_seconds": None, "p90_seconds": None}}}})
    html = browser.sign_in("officer", agency="port").get("/stats").text
    assert html.count("<svg") == 3
    assert '<rect class="bar s-released"' in html and '<rect class="bar q-p90"' in html
    assert "5 min 12 s" in html and "1 h 30 min" in html  # p50 and p90 overall, readably
    assert "56" in html  # declarations in all


# ---- the same views over the hub's own projections ---------------------------------------------------

def test_an_officer_raises_an_alert_from_the_page_that_holds_a_declaration_then_clears_it(browser: Browser):
    [ident] = submit(browser.hub, samples.goods("WEB-0001"))  # carried by vessel 9321483
    officer = browser.sign_in("officer", agency="customs")
    raised = officer.post("/alerts", data={"subject_kind": "vessel", "subject": "9321483", "reason": "tip-off"})
    assert raised.status_code == 303
    alert_id = raised.headers["location"].split("raised=")[1]
    browser.hub.runner.catch_up()
    browser.hub.runner.catch_up()  # the holds the alert placed, onto the board
    page = officer.get("/alerts").text
    assert "tip-off" in page and "WEB-0001" in page and f'action="/alerts/{alert_id}/clear"' in page
    held = officer.get(f"/declarations/{ident}").text
    assert '<span class="chip s-held" title="tip-off">held</span>' in held
    assert f'<a class="hold" href="/alerts#alert-{alert_id}">tip-off</a>' in held  # the hold's reason, to its alert
    refused = officer.post("/alerts", data={"subject_kind": "vessel", "subject": "1234568", "reason": "x"})
    assert refused.status_code == 422 and 'role="alert"' in refused.text and 'value="1234568"' in refused.text
    assert f"Alert {alert_id} raised" in officer.get(raised.headers["location"]).text
    forged = {"Origin": "https://evil.example"}
    assert officer.post("/alerts", data={"subject_kind": "vessel", "subject": "9321483", "reason": "x"},
                        headers=forged).status_code == 403
    assert officer.post(f"/alerts/{alert_id}/clear", headers=forged).status_code == 403
    assert officer.post(f"/alerts/{alert_id}/clear").status_code == 303
    assert officer.post(f"/alerts/{uuid.uuid4()}/clear").status_code == 404
    browser.hub.runner.catch_up()
    browser.hub.runner.catch_up()
    assert 'class="chip a-cleared"' in officer.get("/alerts").text


def test_the_statistics_and_recognition_pages_over_released_declarations(browser: Browser):
    submit(browser.hub, samples.goods("WEB-0001"), samples.vessel_call("WEB-0002"))
    exchange_with_simulated_agencies(browser.hub)
    admin = browser.sign_in("admin")
    stats = admin.get("/stats")
    assert stats.status_code == 200 and stats.text.count("<svg") == 3
    assert '<rect class="bar s-released"' in stats.text
    assert admin.get("/recognition").status_code == 200


@pytest.mark.parametrize("path, role, claims", [("/sign-in", None, {}),
                                                ("/alerts", "officer", {"agency": "customs"})])
@given(extra=st.integers(min_value=0, max_value=60))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_form_with_too_many_fields_is_a_400_that_says_so(browser: Browser, path: str, role: str | None,
                                                             claims: dict[str, str], extra: int):
    """A page's form takes at most FORM_FIELDS fields: beyond that a clear 400 page, never a 500 or a traceback;
    within it, whatever else is wrong with the form, never this refusal."""
    from tradehub.web.pages import FORM_FIELDS

    if role:
        browser.sign_in(role, **claims)
    fields = {"token": "x", **{f"f{n}": "1" for n in range(extra)}}
    response = browser.post(path, data=fields)
    too_many = len(fields) > FORM_FIELDS
    assert (response.status_code == 400) == too_many, (len(fields), response.status_code)
    assert ("at most 20 fields" in response.text) == too_many
    assert "Traceback" not in response.text


# ---- the declaration header, the answers' words, alerts right after one's own action, the clearance axis ------

def _summary(html: str) -> dict[str, str]:
    """The header summary's facts, label to text (tags stripped)."""
    block = html.split('<dl class="facts summary"', 1)[1].split("</dl>", 1)[0]
    return {label: re.sub(r"<[^>]+>", "", value).strip()
            for label, value in re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", block, re.S)}


def test_the_declaration_header_summarises_the_goods_and_keeps_the_json_collapsed(browser: Browser):
    items = [samples.goods()["items"][0],
             {**samples.goods()["items"][0], "hs_code": "8421210000", "value": "1500.50"},
             {**samples.goods()["items"][0], "value": "99.99", "currency": "USD"}]
    [ident] = submit(browser.hub, samples.goods("SUM-1", items=items, containers=["HLXU8000014", "MSKU1234565"]))
    html = browser.sign_in("officer", agency="customs").get(f"/declarations/{ident}").text
    assert _summary(html) == {
        "Goods": "3 items", "HS codes": "8479899990, 8421210000", "Containers": "2: HLXU8000014, MSKU1234565",
        "Value": "241,500.50 EUR + 99.99 USD", "Import": "DEHAM → CNXMN",
        "Vessel": "NORTHERN JASPER (IMO 9321483) voyage 041E"}
    assert '<details class="card">\n    <summary>The declaration as submitted' in html  # the JSON: there, closed


def test_the_declaration_header_of_a_vessel_call_names_the_ship_and_its_times(browser: Browser):
    [ident] = submit(browser.hub, samples.vessel_call("SUM-CALL"))
    customs = browser.sign_in("officer", agency="customs").get(f"/declarations/{ident}").text
    facts = _summary(customs)
    assert facts["Vessel"] == "NORTHERN JASPER" and facts["IMO"] == "9321483"
    assert facts["Departure"] == "CNXMN voyage 041E" and facts["ETD"] == "2026-12-03 18:30:00 UTC"
    assert facts["On board"] == "1 crew member, 1 passenger"  # customs gets counts, not the lists
    assert "MEIER" not in customs and "ETA" not in facts
    assert 'aria-label="Vessel call summary"' in customs


def test_summaries_survive_a_partial_document():
    """The header is drawn from whatever the caller may see of a document: missing parts read as none."""
    from tradehub.web import present

    assert [(fact.label, fact.value) for fact in present.summary({"kind": "goods"})] == [
        ("Goods", "0 items"), ("HS codes", "none"), ("Containers", "none"), ("Value", "none"), ("Route", "–")]
    assert present.summary({"kind": "vessel_call", "crew_count": 3})[-2].value == "3 crew members, 0 passengers"
    assert present.value_total([{"value": "NaN", "currency": "EUR"}, {"value": "lots", "currency": "EUR"},
                                {"value": "2.50", "currency": "EUR"}, {"value": "1000", "currency": "EUR"}]) \
        == "1,002.50 EUR"


@pytest.mark.parametrize("kind, agency, code, text, words", [
    ("vessel_call", "maritime", "Cleared", "cleared", ""),  # was "Cleared cleared"
    ("vessel_call", "border", "Rejected", "rejected; crew list incomplete", "crew list incomplete"),
    ("vessel_call", "customs", "08", "goods released", "vessel call cleared"),
    ("goods", "customs", "08", "goods released", "goods released"),
    ("vessel_call", "customs", "05", "physical control of the goods; berth 4", "physical control of the vessel; berth 4"),
    ("goods", "customs", "02", "received", "received"),
    ("vessel_call", "port", "08", "goods released", "goods released"),  # only customs' codes are customs'
])
def test_an_answer_reads_right_for_its_kind_and_never_says_its_code_twice(kind, agency, code, text, words):
    from tradehub.web import present

    assert present.answer_words(kind, agency, code, text) == words


def test_a_released_vessel_call_page_says_cleared_once_and_no_goods_released(browser: Browser):
    [ident] = submit(browser.hub, samples.vessel_call("WORDS-1"))
    exchange_with_simulated_agencies(browser.hub)
    html = browser.sign_in("admin").get(f"/declarations/{ident}").text
    assert "goods released" not in html and "vessel call cleared" in html
    assert not re.search(r"Cleared\s+cleared", html) and "Cleared – cleared" not in html
    assert '<span class="mono">Cleared</span>' in html  # maritime's and border's code, said once


def test_a_raised_alert_is_listed_at_once_though_the_view_has_not_caught_up(browser: Browser):
    submit(browser.hub, samples.goods("ALERT-NOW"))
    officer = browser.sign_in("officer", agency="customs")
    raised = officer.post("/alerts", data={"subject_kind": "vessel", "subject": "9321483", "reason": "tip-off now"})
    alert_id = raised.headers["location"].split("raised=")[1]
    page = officer.get(raised.headers["location"]).text  # no catch_up: the alerts view knows nothing yet
    assert f"Alert {alert_id} raised." in page and f'id="alert-{alert_id}"' in page and "tip-off now" in page
    assert f'action="/alerts/{alert_id}/clear"' in page and "Just raised" in page
    browser.hub.runner.catch_up()
    browser.hub.runner.catch_up()  # the alert and the hold it placed, into the view
    caught_up = officer.get(raised.headers["location"]).text
    assert caught_up.count(f'id="alert-{alert_id}"') == 1 and "ALERT-NOW" in caught_up  # one row, with its hold
    cleared = officer.post(f"/alerts/{alert_id}/clear")
    assert cleared.status_code == 303 and cleared.headers["location"] == f"/alerts?cleared={alert_id}"
    page = officer.get(cleared.headers["location"]).text  # still no catch_up
    assert f"Alert {alert_id} cleared." in page and 'class="chip a-cleared"' in page
    assert f'action="/alerts/{alert_id}/clear"' not in page and "cleared by officer:customs" in page
    assert "ALERT-NOW" in page and "Its holds are being lifted" in page


def test_an_alert_id_in_the_url_shows_nothing_the_caller_may_not_see(browser: Browser):
    """`?raised=` and `?cleared=` read the store, so they keep the alerts view's rule: another agency's alert on
    nothing routed to the caller, an unknown or malformed id, or an open alert called cleared, show nothing."""
    maritime = Browser(browser.hub).sign_in("officer", agency="maritime")
    secret = maritime.post("/alerts", data={"subject_kind": "party", "subject": samples.TRADER_B,
                                            "reason": "maritime's own lead"})
    alert_id = secret.headers["location"].split("raised=")[1]
    customs = browser.sign_in("officer", agency="customs")
    for query in (f"raised={alert_id}", f"cleared={alert_id}", f"raised={uuid.uuid4()}", "raised=<b>x</b>"):
        page = customs.get(f"/alerts?{query}").text
        assert "maritime&#39;s own lead" not in page and "maritime's own lead" not in page
        assert 'role="status"' not in page and "<b>x</b>" not in page
    assert 'role="status"' not in maritime.get(f"/alerts?cleared={alert_id}").text  # open: not "cleared"


def _bars(chart) -> dict[str, float]:
    return {rect.title.split(":")[0]: rect.width for rect in chart.rects}


def test_one_39_second_clearance_leaves_the_sub_second_bars_readable():
    """The case a new user met: sub-second clearances and one 39 s outlier. On the log axis every bar is at least
    a seventh of the axis, bars keep their order, and the axis says it is logarithmic."""
    clearance = {"overall": {"count": 40, "p50_seconds": 0.4, "p90_seconds": 0.8},
                 "agencies": {"customs": {"count": 40, "p50_seconds": 0.3, "p90_seconds": 0.7},
                              "port": {"count": 40, "p50_seconds": 0.5, "p90_seconds": 39.0}}}
    chart = web_pages.statistics_charts({"clearance": clearance})["clearance"]
    bars = _bars(chart)
    length = web_pages.charts.WIDTH - web_pages.charts.LABEL_WIDTH - web_pages.charts.VALUE_WIDTH
    assert min(bars.values()) >= length / 7  # on a linear axis 0.3 s of 39 s is under 1 % of it
    order = sorted(bars, key=bars.get)
    assert order == ["customs, p50", "overall, p50", "port, p50", "customs, p90", "overall, p90", "port, p90"]
    assert bars["port, p90"] <= length and bars["overall, p90"] >= 1.4 * bars["overall, p50"]
    axis = [text.text for text in chart.texts if text.css == "chart-axis"]
    assert axis == ["100 ms", "1 s", "10 s", "1 min"] and chart.note.startswith("Log scale")
    assert "p90 39 s" in [text.text for text in chart.texts]


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0.001, max_value=30 * 86400)), min_size=1, max_size=12))
def test_the_log_axis_keeps_every_bar_inside_and_in_the_order_of_its_value(values):
    """For any clearance times: each bar lies within the axis, a larger value is never a shorter bar, and a
    positive value always draws a visible bar."""
    from tradehub.web import charts

    rows = [charts.Row(f"r{index}", [charts.Segment("p", value, "q-p50")]) for index, value in enumerate(values)]
    chart = charts.bar_chart(rows, stacked=False, log_marks=charts.LOG_DURATION_MARKS)
    length = charts.WIDTH - charts.LABEL_WIDTH - charts.VALUE_WIDTH
    widths = [(value, rect.width) for value, rect in zip(values, chart.rects, strict=True)]
    assert all(0 <= width <= length + 1e-6 for _, width in widths)
    assert all(width > 0 for value, width in widths if value)
    measured = sorted((value, width) for value, width in widths if value)
    assert all(a[1] <= b[1] + 1e-9 for a, b in zip(measured, measured[1:], strict=False))


def test_stacked_bars_refuse_a_log_axis():
    from tradehub.web import charts

    with pytest.raises(ValueError, match="stacked"):
        charts.bar_chart([], log_marks=charts.LOG_DURATION_MARKS)


def test_the_board_searches_by_the_traders_reference(browser: Browser):
    submit(browser.hub, samples.goods("FIND-ME-7"), samples.goods("OTHER-8"))
    html = browser.sign_in("trader", party=samples.TRADER_A).get("/board?reference=FIND-ME-7").text
    assert references(html) == ["FIND-ME-7"] and '<input id="f-reference" name="reference" value="FIND-ME-7"' in html
