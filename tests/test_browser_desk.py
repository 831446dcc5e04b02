"""The trader desk in a real browser: declare on the form, watch the answers arrive live (server-sent events).

The same Chromium, server and rules as tests/test_browser.py, whose fixtures this module shares.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from standardwebhooks import Webhook

from tradehub import spreadsheets
from tradehub.api.app import create_app
from tradehub.bootstrap import Settings, build_hub, build_webhooks
from tradehub.web import install_pages

from . import samples
from .conftest import SECRET
from .racing import free_port
from .test_browser import ARTIFACTS, Served, chromium, page, served, sign_in  # noqa: F401  (fixtures)
from .test_web import exchange_with_simulated_agencies
from .test_webhooks import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_trader_declares_on_the_form_sees_errors_beside_fields_and_watches_it_clear_live(page, served: Served):  # noqa: F811
    sign_in(page, served, "trader", party=samples.TRADER_A)
    page.click("nav >> text=Desk")
    page.click("text=New declaration")
    document = samples.goods("BROWSER-DESK-1")
    header = {"reference": document["reference"], "direction": document["direction"],
              "declarant.name": document["declarant"]["name"], "customs_office": document["customs_office"],
              "port_of_loading": document["port_of_loading"], "port_of_discharge": "ZZ1",
              "consignor.name": document["consignor"]["name"], "consignor.country": document["consignor"]["country"],
              "consignee.id": document["consignee"]["id"], "consignee.name": document["consignee"]["name"],
              "consignee.country": document["consignee"]["country"], "transport.mode": "sea",
              "transport.vessel.name": document["transport"]["vessel"]["name"],
              "transport.vessel.imo": document["transport"]["vessel"]["imo"],
              "transport.vessel.voyage": document["transport"]["vessel"]["voyage"],
              "transport.bill_of_lading": document["transport"]["bill_of_lading"]}
    for name, value in header.items():
        field = page.locator(f'[name="{name}"]')
        if field.evaluate("element => element.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.fill('[name="containers"]', "\n".join(document["containers"]))
    for name, value in document["items"][0].items():
        page.fill(f'[name="items[0].{name}"]', str(value))
    page.click("text=Declare from the form")
    assert page.locator("#e-port_of_discharge").inner_text()  # the error sits beside its field
    page.screenshot(path=str(ARTIFACTS / "desk-error.png"), full_page=True)
    page.problems.remove("Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)")
    page.fill('[name="port_of_discharge"]', document["port_of_discharge"])
    page.click("text=Declare from the form")
    page.wait_for_url(f"{served.url}/declarations/*")
    declaration_id = page.url.rsplit("/", 1)[1]
    assert page.locator("h1").inner_text().strip().startswith("BROWSER-DESK-1")

    page.goto(served.url + "/desk")
    live = page.locator("#live")
    assert live.is_hidden()
    exchange_with_simulated_agencies(served.hub)  # the agencies answer; the stream brings it to the page
    page.wait_for_selector("#live li.n-released", timeout=15_000)
    assert "BROWSER-DESK-1" in live.inner_text()
    assert page.locator(f'#live a[href="/declarations/{declaration_id}"]').count() >= 1
    page.screenshot(path=str(ARTIFACTS / "desk-live.png"), full_page=True)
    assert not page.problems, page.problems


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A served hub that may send webhooks to the loopback, with its webhooks worker (follower and sender) on
    threads, as `serve` runs it in a process of its own."""
    hub = build_hub(Settings(data_dir=tmp_path_factory.mktemp("desk-live"), secret=SECRET,
                             webhook_allow_private=True))
    runner, sender = build_webhooks(hub)
    stop = threading.Event()
    runner.start()
    sending = threading.Thread(target=lambda: asyncio.run(sender.run(stop)), name="webhook-sender", daemon=True)
    sending.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(install_pages(create_app(hub), hub), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    serving = threading.Thread(target=server.run, name="desk-test-server", daemon=True)
    serving.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert serving.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", hub, {})
    server.should_exit = True
    stop.set()
    runner.stop()
    serving.join(timeout=20)
    sending.join(timeout=20)
    hub.close()


def test_a_trader_uploads_a_spreadsheet_call_watches_it_clear_gets_the_webhook_and_prints_the_certificate(
        chromium, live_hub: Served, tmp_path):  # noqa: F811
    """The issue's "done when", in one browser session."""
    receiver = Receiver()
    try:
        context = chromium.new_context(viewport={"width": 1360, "height": 900})
        tab = context.new_page()
        sign_in(tab, live_hub, "trader", party=samples.SHIPPING_AGENT)
        tab.goto(live_hub.url + "/desk/webhooks")
        tab.fill("#w-url", receiver.url)
        tab.click("button:has-text('Register')")
        tab.screenshot(path=str(ARTIFACTS / "desk-webhooks.png"), full_page=True)
        secret = tab.locator(".secret").inner_text().strip()
        assert secret.startswith("whsec_")

        call = samples.vessel_call("BROWSER-SHEET-CALL-1")
        sheet = tmp_path / "call.xlsx"
        sheet.write_bytes(spreadsheets.fill(call))
        tab.goto(live_hub.url + "/desk/new")
        tab.click("text=Upload a file")
        tab.set_input_files('input[name="upload"]', str(sheet))
        tab.click("text=Upload and declare")
        tab.wait_for_url(f"{live_hub.url}/declarations/*")
        declaration_id = tab.url.rsplit("/", 1)[1]

        tab.goto(live_hub.url + "/desk/notifications")
        exchange_with_simulated_agencies(live_hub.hub)  # the agencies answer
        tab.wait_for_selector("#feed li.n-released >> text=BROWSER-SHEET-CALL-1", timeout=15_000)
        assert tab.locator("#feed-empty").is_hidden()
        tab.screenshot(path=str(ARTIFACTS / "desk-notifications.png"), full_page=True)

        deadline = time.monotonic() + 30
        while not any(json.loads(body).get("status") == "released" for _, _, body in receiver.requests):
            assert time.monotonic() < deadline, f"no release webhook among {len(receiver.requests)}"
            time.sleep(0.1)
        for _, headers, body in receiver.requests:
            Webhook(secret).verify(body, headers)  # raises unless the hub signed it with this endpoint's secret
            assert json.loads(body)["declaration_id"] == declaration_id

        tab.goto(f"{live_hub.url}/declarations/{declaration_id}")
        tab.click("text=Certificate")
        tab.wait_for_url(f"{live_hub.url}/declarations/{declaration_id}/certificate")
        assert "BROWSER-SHEET-CALL-1" in tab.inner_text("main")
        tab.emulate_media(media="print")
        tab.pdf(path=str(ARTIFACTS / "certificate-printed.pdf"), format="A4")
        tab.screenshot(path=str(ARTIFACTS / "certificate-print.png"), full_page=True)
        assert (ARTIFACTS / "certificate-printed.pdf").read_bytes().startswith(b"%PDF")
        context.close()
    finally:
        receiver.close()
