"""The officer pages in a real browser: the system's headless Chromium, driven by Playwright, over a real server.

Never a downloaded browser: Chromium comes from the system (`TRADEHUB_TEST_CHROMIUM`,
default /usr/bin/chromium; .ci/run installs Debian's). Without one the tests
skip with the reason, except under CI=true, where they fail. Screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from tradehub.api.app import create_app
from tradehub.auth import issue_token
from tradehub.bootstrap import Hub, Settings, build_hub
from tradehub.web import install_pages

from . import samples
from .conftest import IN_CI, SECRET
from .racing import free_port
from .test_web import exchange_with_simulated_agencies

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("TRADEHUB_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@dataclass
class Served:
    url: str
    hub: Hub
    declarations: dict[str, str]  # reference → id


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A hub with a few declarations, some answered by the simulated agencies, served by uvicorn on a free port."""
    hub = build_hub(Settings(data_dir=tmp_path_factory.mktemp("browser"), secret=SECRET))
    documents = [samples.goods("BROWSER-GOODS-1"), samples.vessel_call("BROWSER-CALL-1")]
    ids = {doc["reference"]: str(hub.declarations.submit(doc).declaration.id) for doc in documents}
    exchange_with_simulated_agencies(hub)
    late = samples.goods("BROWSER-GOODS-2", containers=["HLXU8000014"])
    ids[late["reference"]] = str(hub.declarations.submit(late).declaration.id)  # unanswered
    hub.runner.catch_up()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(install_pages(create_app(hub), hub), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="browser-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", hub, ids)
    server.should_exit = True
    thread.join(timeout=20)
    hub.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TRADEHUB_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (it is in the test extra)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, served: Served):
    context = chromium.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    # An asset the browser could not load; not one abandoned because the test moved on to the next page.
    tab.on("requestfailed", lambda request: None if request.failure == "net::ERR_ABORTED"
           else problems.append(f"failed: {request.url}: {request.failure}"))
    tab.on("response", lambda response: problems.append(f"{response.status}: {response.url}")
           if response.status >= 400 and response.request.resource_type != "document" else None)
    tab.on("request", lambda request: None if request.url.startswith(served.url)
           else problems.append(f"left the site: {request.url}"))
    tab.problems = problems
    yield tab
    context.close()


def sign_in(page, served: Served, role: str, **claims: str) -> None:
    page.goto(served.url + "/board")
    assert page.url.startswith(served.url + "/sign-in")
    page.fill("#token", issue_token(SECRET, role, **claims))
    page.click("button[type=submit].primary")
    page.wait_for_url(served.url + "/board")


def test_an_officer_signs_in_reads_the_board_and_a_declarations_timeline(page, served: Served):
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, served, "officer", agency="customs")
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly: no script can read it
    rows = page.locator("table.board tbody tr")
    assert rows.count() == 3
    assert rows.first.locator("td").first.inner_text() == "BROWSER-GOODS-2"  # newest first
    assert page.locator(".top .session").inner_text().startswith("officer · customs")
    # The stylesheet applied (a CSP that blocked it would leave the bar unstyled).
    assert page.eval_on_selector(".top", "e => getComputedStyle(e).backgroundColor") == "rgb(31, 78, 121)"
    page.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)

    page.select_option("#f-kind", "vessel_call")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/board?*kind=vessel_call*")
    assert [cell.inner_text() for cell in page.locator("table.board tbody tr td:first-child").all()] == [
        "BROWSER-CALL-1"]

    page.goto(served.url + "/board")
    page.click("text=BROWSER-GOODS-1")
    page.wait_for_url(f"{served.url}/declarations/{served.declarations['BROWSER-GOODS-1']}")
    assert page.locator("h1").inner_text() == "BROWSER-GOODS-1"
    customs = page.locator("#agency-customs")
    entries = customs.locator("ol.timeline li")
    assert entries.count() >= 2
    assert "Sent declaration" in entries.first.inner_text()
    assert "Received reply" in entries.nth(1).inner_text()
    assert customs.locator("header .chip").inner_text() == "released"
    message = page.locator("#messages details").first
    assert not message.locator("pre").is_visible()
    message.locator("summary").click()
    assert message.locator("pre").inner_text().startswith("<?xml")  # the XML, shown as text
    page.screenshot(path=str(ARTIFACTS / "declaration.png"), full_page=True)
    assert page.problems == [], page.problems


def test_an_officer_reads_the_statistics_charts_and_signs_out(page, served: Served):
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, served, "officer", agency="port")
    page.click("nav >> text=Statistics")
    page.wait_for_url(served.url + "/stats")
    charts = page.locator("figure.chart svg")
    if charts.count():  # drawn once the statistics projection is installed
        assert charts.count() == 3
        assert page.locator("figure.chart svg rect.bar").count() >= 3
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 60
    page.screenshot(path=str(ARTIFACTS / "statistics.png"), full_page=True)
    for section, path, title in (("Recognition", "/recognition", "Mutual recognition"),
                                 ("Alerts", "/alerts", "Risk alerts")):
        page.click(f"nav >> text={section}")
        page.wait_for_url(served.url + path)
        assert page.locator("h1").inner_text() == title
    page.click("text=Sign out")
    page.wait_for_url(served.url + "/sign-in")
    page.goto(served.url + "/board")
    assert page.url.startswith(served.url + "/sign-in")
    assert page.problems == [], page.problems


def test_a_wrong_token_stays_on_the_form_with_the_reason(page, served: Served):
    page.goto(served.url + "/sign-in")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit].primary")
    assert page.locator(".error").inner_text().startswith("That token was not accepted")
    assert page.url.startswith(served.url + "/sign-in")


def test_an_officer_raises_an_alert_through_the_form_and_clears_it(page, served: Served):
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, served, "officer", agency="customs")
    page.goto(served.url + "/alerts")
    page.select_option("#a-kind", "vessel")
    page.fill("#a-subject", "9321483")
    page.fill("#a-reason", "Tip-off: misdeclared cargo <check>")
    page.click("form.raise button[type=submit]")
    page.wait_for_url("**/alerts?raised=*")  # the browser's own Origin passed the cross-site check
    assert "raised" in page.locator(".notice").inner_text()
    served.hub.runner.catch_up()  # in `serve` the projection worker does this
    served.hub.runner.catch_up()
    page.reload()
    alert = page.locator("article.alert").first
    assert "Tip-off: misdeclared cargo <check>" in alert.inner_text()
    assert "BROWSER-GOODS-2" in alert.locator("table").inner_text()  # the open declaration it holds
    page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)
    page.fill("#a-subject", "1234568")
    page.fill("#a-reason", "a wrong check digit")
    page.select_option("#a-kind", "vessel")
    page.click("form.raise button[type=submit]")
    assert page.locator(".card .error").count() == 1  # the refusal, in the form
    assert page.input_value("#a-subject") == "1234568"
    page.goto(served.url + "/alerts")
    page.locator("article.alert").first.locator("button", has_text="Clear").click()
    page.wait_for_url("**/alerts?cleared=*")
    served.hub.runner.catch_up()
    served.hub.runner.catch_up()
    page.reload()
    assert page.locator("article.alert").first.locator(".chip").inner_text() == "cleared"


SHOTS = Path("/tmp/team/shots")


def test_the_declaration_header_summarises_goods_and_a_vessel_call_with_the_json_collapsed(page, served: Served):
    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, served, "officer", agency="customs")
    page.goto(f"{served.url}/declarations/{served.declarations['BROWSER-GOODS-1']}")
    summary = page.locator("section.header dl.summary")
    assert summary.is_visible()
    facts = dict(zip(summary.locator("dt").all_inner_texts(), summary.locator("dd").all_inner_texts(), strict=True))
    assert {key.lower(): value for key, value in facts.items()} == {
        "goods": "1 item", "hs codes": "8479899990", "containers": "1: HLXU8000014", "value": "240,000.00 EUR",
        "import": "DEHAM → CNXMN", "vessel": "NORTHERN JASPER (IMO 9321483) voyage 041E"}
    document = page.locator("#document details")
    assert not document.locator("pre").is_visible()  # the JSON stays, collapsed
    page.screenshot(path=str(SHOTS / "declaration-goods.png"), full_page=False)

    page.goto(f"{served.url}/declarations/{served.declarations['BROWSER-CALL-1']}")
    facts = dict(zip(page.locator("dl.summary dt").all_inner_texts(), page.locator("dl.summary dd").all_inner_texts(),
                     strict=True))
    assert {key.lower(): value for key, value in facts.items()} == {
        "vessel": "NORTHERN JASPER", "imo": "9321483", "departure": "CNXMN voyage 041E",
        "etd": "2026-12-03 18:30:00 UTC", "ports": "CNXMN → KRPUS", "on board": "1 crew member, 1 passenger",
        "dangerous goods": "none"}
    customs = page.locator("#agency-customs")
    assert "vessel call cleared" in customs.inner_text() and "goods released" not in page.content()
    assert "cleared cleared" not in page.locator("body").inner_text().lower()
    page.screenshot(path=str(SHOTS / "declaration-call.png"), full_page=True)
    assert page.problems == [], page.problems


def test_an_alert_raised_or_cleared_shows_at_once_before_the_views_catch_up(page, served: Served):
    """No catch_up between the actions and the pages: the projections here move only when the test says."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, served, "officer", agency="customs")
    page.goto(served.url + "/alerts")
    page.select_option("#a-kind", "container")
    page.fill("#a-subject", "MSKU1234565")
    page.fill("#a-reason", "Seal number differs from the manifest")
    page.click("form.raise button[type=submit]")
    page.wait_for_url("**/alerts?raised=*")
    alert_id = page.url.split("raised=")[1]
    article = page.locator(f"#alert-{alert_id}")
    assert article.is_visible() and "Seal number differs from the manifest" in article.inner_text()
    assert article.locator(".chip").inner_text() == "open" and "Just raised" in article.inner_text()
    assert page.locator(".notice").inner_text() == f"Alert {alert_id} raised."
    page.screenshot(path=str(SHOTS / "alert-raised.png"), full_page=False)
    article.locator("button", has_text="Clear").click()
    page.wait_for_url(f"**/alerts?cleared={alert_id}")
    article = page.locator(f"#alert-{alert_id}")
    assert article.locator(".chip").inner_text() == "cleared"
    assert article.locator("button", has_text="Clear").count() == 0
    assert page.locator(".notice").inner_text() == f"Alert {alert_id} cleared."
    assert "Just raised" not in article.inner_text()
    page.screenshot(path=str(SHOTS / "alert-cleared.png"), full_page=False)
    served.hub.runner.catch_up()
    served.hub.runner.catch_up()
    assert page.problems == [], page.problems


def test_the_clearance_chart_keeps_sub_second_bars_readable_beside_a_39_second_one(page, served: Served,
                                                                                    monkeypatch):
    from tradehub import visibility

    SHOTS.mkdir(parents=True, exist_ok=True)
    figures = {"by_status": {"released": 40, "in_progress": 2}, "by_agency": {"customs": {"released": 40}},
               "clearance": {"overall": {"count": 40, "p50_seconds": 0.4, "p90_seconds": 0.8},
                             "agencies": {"customs": {"count": 40, "p50_seconds": 0.3, "p90_seconds": 0.7},
                                          "port": {"count": 40, "p50_seconds": 0.5, "p90_seconds": 39.0}}}}
    monkeypatch.setattr(visibility, "statistics_view", lambda views: figures)
    sign_in(page, served, "officer", agency="port")
    page.goto(served.url + "/stats")
    chart = page.locator("figure.chart").nth(2)
    assert "Log scale" in chart.locator("figcaption").inner_text()
    widths = [box["width"] for box in (bar.bounding_box() for bar in chart.locator("rect.bar").all()) if box]
    assert len(widths) == 6 and min(widths) >= max(widths) / 6  # on a linear axis: under 1/100
    chart.screenshot(path=str(SHOTS / "clearance-chart.png"))
    assert page.problems == [], page.problems
