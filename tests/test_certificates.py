"""Release certificates and their public verification (tradehub/certificates.py), on SQLite and PostgreSQL:
what a certificate shows and to whom, and that no code but the hub's own passes."""

from __future__ import annotations

import base64
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tradehub import certificates
from tradehub.api.app import create_app
from tradehub.bootstrap import ConfigurationError, Settings
from tradehub.certificates import CODE_LENGTH, Codes, InvalidCode
from tradehub.web import install_pages

from . import samples
from .conftest import SECRET, Api
from .test_browser import chromium, page, served, sign_in  # noqa: F401  its fixtures, for the browser test
from .test_web import Browser, exchange_with_simulated_agencies, submit

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
VERIFY = re.compile(r'href="http://testserver/verify/([A-Z2-7]+)"')
PERSONAL = ("MEIER", "Jonas", "C01X00T47", "LI Na", "EA1234567", "1975-06-30")


@pytest.fixture
def browser(hub) -> Browser:
    return Browser(hub)


def released(browser: Browser, *documents: dict) -> list[str]:
    ids = submit(browser.hub, *documents)
    exchange_with_simulated_agencies(browser.hub)
    return ids


def code_on(html: str) -> str:
    [code] = set(VERIFY.findall(html))
    return code


def pdf_text(data: bytes) -> str:
    """The text a PDF of fpdf2's draws, line by line: each font's ToUnicode map applied to its glyph ids (no PDF
    library is installed, and this is all a certificate uses)."""
    objects = {int(number): body for number, body in re.findall(rb"(\d+) 0 obj(.*?)endobj", data, re.S)}

    def stream(body: bytes) -> bytes:
        raw = body[body.index(b"stream") + 6:body.rindex(b"endstream")].strip(b"\r\n")
        return zlib.decompress(raw) if b"/FlateDecode" in body else raw

    fonts: dict[bytes, dict[int, str] | None] = {}
    for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", b"".join(objects.values())):
        font = objects[int(number)]
        cmap = re.search(rb"/ToUnicode (\d+) 0 R", font)
        fonts[name] = None if cmap is None else {  # None: a core font, in WinAnsi
            int(glyph, 16): chr(int(char, 16))
            for glyph, char in re.findall(rb"<([0-9A-F]{4})> <([0-9A-F]{4})>", stream(objects[int(cmap.group(1))]))}
    lines = []
    for number in sorted(objects):
        if b"/Contents" not in objects[number]:
            continue
        content = stream(objects[int(re.search(rb"/Contents (\d+) 0 R", objects[number]).group(1))])
        font: dict[int, str] | None = None
        for selected, shown in re.findall(rb"/(F\d+) [\d.]+ Tf|(\((?:\\.|[^\\)])*\) Tj|\[.*?\] TJ)", content, re.S):
            if selected:
                font = fonts[selected]
                continue
            text = b"".join(re.findall(rb"\(((?:\\.|[^\\)])*)\)", shown, re.S))  # TJ: the strings, kerning aside
            raw = re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m.group(1), 8)]) if m.group(1).isdigit()
                         else {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(m.group(1), m.group(1)), text, flags=re.S)
            lines.append(raw.decode("latin-1") if font is None else
                         "".join(font.get(int.from_bytes(raw[i:i + 2], "big"), "?") for i in range(0, len(raw), 2)))
    return "\n".join(lines)


# ---- what a certificate shows ---------------------------------------------------------------------

def test_a_released_goods_declaration_has_a_printable_certificate_and_a_pdf(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-GOODS-1", containers=["HLXU8000014", "CSQU3054383"]))
    browser.sign_in("trader", party=samples.TRADER_A)
    got = browser.get(f"/declarations/{ident}/certificate")
    assert got.status_code == 200 and got.headers["content-security-policy"].startswith("default-src 'self'")
    html = got.text
    assert "<h1 id=\"certificate-title\">Release certificate</h1>" in html and "CERT-GOODS-1" in html
    assert "Test Importer Ltd." in html and samples.TRADER_A in html
    for shown in ("8479899990", "HLXU8000014, CSQU3054383", "240,000.00 EUR", "5,200.5 kg", "DEHAM → CNXMN"):
        assert shown in html, shown
    releases = html[html.index('class="releases"'):html.index("</table>", html.index('class="releases"'))]
    assert re.findall(r'<th scope="row">(\w+)</th>', releases) == ["customs", "port"]
    assert '<td class="mono">08</td>' in releases
    code = code_on(html)
    assert len(code) == CODE_LENGTH and f'<p class="code mono">{code}</p>' in html
    assert '<svg width="' in html and 'class="qr"' in html and "data:" not in html
    assert " style=" not in html and "<style" not in html and not re.search(r"<script(?![^>]* src=)", html)
    assert '<link rel="stylesheet" href="/static/certificate.css">' in html
    assert "@media print" in browser.get("/static/certificate.css").text

    pdf = browser.get(f"/declarations/{ident}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and pdf.content.rstrip().endswith(b"%%EOF")
    assert pdf.content.count(b"/Type /Page\n") == 1  # one A4 page
    text = pdf_text(pdf.content)
    for shown in ("Release certificate", "CERT-GOODS-1", "Test Importer Ltd. (91350200MA2YQ4RK0U)", "8479899990",
                  "240,000.00 EUR", "customs", "goods released", "port"):
        assert shown in text, shown
    assert code in text.replace("\n", "")
    assert "cannot be drawn" not in text


def test_a_released_vessel_call_has_a_certificate_with_counts_and_no_people(browser: Browser):
    [ident] = released(browser, samples.vessel_call("CERT-CALL-1"))
    browser.sign_in("admin")  # sees the lists on the declaration page; the certificate still shows counts
    html = browser.get(f"/declarations/{ident}/certificate").text
    assert "<dd>NORTHERN JASPER</dd>" in html and "<dd>9321483</dd>" in html and "DJNP2 / DE" in html
    assert "2026-12-03T18:30:00Z" in html
    assert "<dt>On board</dt><dd>1 crew member, 1 passenger</dd>" in html
    assert not [name for name in PERSONAL if name in html]
    releases = html[html.index('class="releases"'):html.index("</table>", html.index('class="releases"'))]
    assert re.findall(r'<th scope="row">(\w+)</th>', releases) == ["customs", "inspection", "port", "maritime",
                                                                   "border"]
    text = pdf_text(browser.get(f"/declarations/{ident}/certificate.pdf").content)
    assert "CERT-CALL-1" in text and "NORTHERN JASPER" in text and "9321483" in text and "maritime" in text
    assert not [name for name in PERSONAL if name in text]


def test_an_officer_whose_agency_got_no_lists_sees_the_same_counts(browser: Browser):
    [ident] = released(browser, samples.vessel_call("CERT-CALL-2"))
    html = browser.sign_in("officer", agency="customs").get(f"/declarations/{ident}/certificate").text
    assert "<dt>On board</dt><dd>1 crew member, 1 passenger</dd>" in html


def test_names_outside_the_pdf_font_are_replaced_visibly_and_said_so(browser: Browser):
    document = samples.goods("CERT-CJK-1")
    document["declarant"]["name"] = "厦门海西贸易有限公司 Nguyễn Ωmega"
    [ident] = released(browser, document)
    browser.sign_in("admin")
    assert "厦门海西贸易有限公司 Nguyễn Ωmega" in browser.get(f"/declarations/{ident}/certificate").text
    text = pdf_text(browser.get(f"/declarations/{ident}/certificate.pdf").content)
    assert "\ufffd" * 10 + " Nguyễn Ωmega (91350200MA2YQ4RK0U)" in text  # Vietnamese and Greek are in DejaVu Sans
    assert "cannot be drawn in this PDF's font" in text.replace("\n", " ")


def test_the_declaration_page_links_the_certificate_once_released(browser: Browser):
    [done] = released(browser, samples.goods("CERT-LINK-1"))
    [waiting] = submit(browser.hub, samples.goods("CERT-LINK-2"))
    browser.sign_in("admin")
    assert f'href="/declarations/{done}/certificate"' in browser.get(f"/declarations/{done}").text
    assert "/certificate" not in browser.get(f"/declarations/{waiting}").text


# ---- who gets one -------------------------------------------------------------------------------

def test_not_released_is_409_on_the_api_and_a_page_that_says_so(browser: Browser):
    [ident] = submit(browser.hub, samples.goods("CERT-WAIT-1"))
    api = Api(browser.hub)
    answer = api.client.get(f"/v1/declarations/{ident}/certificate",
                            headers=api.as_("trader", party=samples.TRADER_A))
    assert answer.status_code == 409 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:tradehub:problem:not-released"
    assert answer.json()["declaration_status"] == "submitted" and "CERT-WAIT-1 is submitted" in answer.json()["detail"]
    browser.sign_in("trader", party=samples.TRADER_A)
    for path in (f"/declarations/{ident}/certificate", f"/declarations/{ident}/certificate.pdf"):
        got = browser.get(path)
        assert got.status_code == 409 and "Not released yet" in got.text and "is submitted" in got.text


def test_the_api_gives_the_declarant_the_pdf_and_everyone_else_a_404(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-API-1"))
    api = Api(browser.hub)
    path = f"/v1/declarations/{ident}/certificate"
    mine = api.client.get(path, headers=api.as_("trader", party=samples.TRADER_A))
    assert mine.status_code == 200 and mine.headers["content-type"] == "application/pdf"
    assert mine.headers["content-disposition"] == 'attachment; filename="certificate-CERT-API-1.pdf"'
    assert "CERT-API-1" in pdf_text(mine.content)
    unknown = api.client.get(f"/v1/declarations/{uuid.uuid4()}/certificate", headers=api.as_("admin"))
    for headers in (api.as_("trader", party=samples.TRADER_B), api.as_("officer", agency="border")):
        other = api.client.get(path, headers=headers)
        assert other.status_code == 404 and other.json()["title"] == unknown.json()["title"] == "No such declaration"
    assert api.client.get(path).status_code == 401
    assert api.client.get(path, headers=api.as_("officer", agency="customs")).status_code == 200


def test_another_tenant_gets_the_same_404_page_as_for_an_unknown_declaration(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-TENANT-1"))
    browser.sign_in("trader", party=samples.TRADER_B)
    for suffix in ("certificate", "certificate.pdf"):
        got = browser.get(f"/declarations/{ident}/{suffix}")
        assert got.status_code == 404 and "CERT-TENANT-1" not in got.text
        assert got.text.replace(ident, "ID") == browser.get(f"/declarations/{uuid.UUID(int=7)}/{suffix}").text.replace(
            str(uuid.UUID(int=7)), "ID")


def test_the_certificate_pages_need_a_session(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-SESSION-1"))
    for suffix in ("certificate", "certificate.pdf"):
        answer = browser.get(f"/declarations/{ident}/{suffix}")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in")


# ---- public verification ------------------------------------------------------------------------

def test_verify_is_public_and_shows_only_reference_status_and_release_time(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-VERIFY-1"))
    code = code_on(browser.sign_in("admin").get(f"/declarations/{ident}/certificate").text)
    declaration, events = browser.hub.declarations.with_history(ident)
    when = certificates.released_at(events)
    public = TestClient(install_pages(create_app(browser.hub), browser.hub))  # no session
    answer = public.get(f"/verify/{code}", headers={"Accept": "application/json"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"reference": "CERT-VERIFY-1", "status": "released",
                             "released_at": when.isoformat(timespec="seconds").replace("+00:00", "Z")}
    got = public.get(f"/verify/{code}")
    assert got.status_code == 200 and got.headers["content-security-policy"].startswith("default-src 'self'")
    assert "issued by this hub" in got.text and "CERT-VERIFY-1" in got.text and 's-released' in got.text
    for private in (samples.TRADER_A, "Test Importer", "8479899990", ident, "customs", "Sign out"):
        assert private not in got.text, private
    browser_like = public.get(f"/verify/{code}", headers={"Accept": "text/html,application/json;q=0.9"})
    assert browser_like.headers["content-type"].startswith("text/html")


def refused_alike(client: TestClient, codes: list[str]) -> None:
    """Every one of `codes` gets the same 404, as a page and as JSON: nothing says what was wrong."""
    pages = {client.get(f"/verify/{code}").text for code in codes}
    problems = {client.get(f"/verify/{code}", headers={"Accept": "application/json"}).text for code in codes}
    assert len(pages) == 1 and len(problems) == 1, (pages, problems)
    for code in codes:
        assert client.get(f"/verify/{code}").status_code == 404
    assert "not a valid certificate code" in pages.pop()
    assert '"status":404' in problems.pop()


def test_forged_altered_truncated_and_oversized_codes_all_get_the_same_404(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-FORGE-1"))
    code = code_on(browser.sign_in("admin").get(f"/declarations/{ident}/certificate").text)
    declaration_id, when = certificates.codes(SECRET).read(code)
    payload = base64.b32decode(code + "=" * (-len(code) % 8))
    forged_tag = base64.b32encode(payload[:25] + bytes(16)).decode().rstrip("=")
    later = certificates.codes(SECRET).issue(declaration_id, when + timedelta(seconds=1))  # genuine, wrong time
    unknown = certificates.codes(SECRET).issue(uuid.uuid4(), when)  # genuine, no such declaration
    other_hub = Codes("another-hub-secret-" + "o" * 30).issue(declaration_id, when)
    altered = code[:10] + ("A" if code[10] != "A" else "B") + code[11:]
    refused_alike(TestClient(install_pages(create_app(browser.hub), browser.hub)), [
        forged_tag, later, unknown, other_hub, altered, code[:-1], code[:-8], code + "A", code + "A" * 10_000,
        code.lower(), code[:-1] + "=", "A" * CODE_LENGTH, "not-a-code", "1" * CODE_LENGTH, "%00" * 30,
        code[:30] + "/" + code[31:], f"{code}/{code}"])
    assert browser.get(f"/verify/{code}").status_code == 200  # the genuine one still passes


def test_a_code_of_another_format_version_is_refused_even_when_signed():
    signer = Codes(SECRET)
    version_two = certificates._PAYLOAD.pack(2, uuid.uuid4().bytes, 1_780_000_000_000_000)
    with pytest.raises(InvalidCode):
        signer.read(signer._encode(version_two))


def test_without_a_secret_nothing_verifies_and_nothing_is_signed():
    with pytest.raises(InvalidCode):
        Codes("").read("A" * CODE_LENGTH)
    with pytest.raises(RuntimeError, match="TRADEHUB_SECRET"):
        Codes("").issue(uuid.uuid4(), datetime.now(UTC))


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(ident=st.uuids(), moment=moments, data=st.data())
def test_any_single_character_change_of_a_valid_code_fails(ident: uuid.UUID, moment: datetime, data: st.DataObject):
    signer = Codes(SECRET)
    code = signer.issue(ident, moment)
    assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET)
    assert signer.read(code) == (ident, moment)
    place = data.draw(st.integers(0, CODE_LENGTH - 1))
    other = data.draw(st.sampled_from(ALPHABET + ALPHABET.lower() + "0189=-_ ").filter(lambda c: c != code[place]))
    with pytest.raises(InvalidCode):
        signer.read(code[:place] + other + code[place + 1:])


@settings(max_examples=100, deadline=None)
@given(ident=st.uuids(), moment=moments)
def test_a_code_binds_its_declaration_and_release_time_to_this_hub(ident: uuid.UUID, moment: datetime):
    code = Codes(SECRET).issue(ident, moment)
    assert Codes(SECRET).issue(ident, moment) == code  # a certificate printed again carries the same code
    assert Codes(SECRET).issue(ident, moment + timedelta(microseconds=1)) != code
    with pytest.raises(InvalidCode):
        Codes(SECRET + "x").read(code)


# ---- the public address -------------------------------------------------------------------------

def test_the_qr_code_points_at_the_configured_public_address(browser: Browser):
    [ident] = released(browser, samples.goods("CERT-PUBLIC-1"))
    hub = browser.hub
    hub.settings = Settings(hub.settings.data_dir, hub.settings.database_url, secret=SECRET,
                            public_url="https://hub.example.org/single-window")
    html = Browser(hub).sign_in("admin").get(f"/declarations/{ident}/certificate").text
    assert re.search(r'href="https://hub\.example\.org/single-window/verify/[A-Z2-7]{66}"', html)
    assert "http://testserver/verify" not in html


@pytest.mark.parametrize("value", ["ftp://hub.example.org", "hub.example.org", "https://", "https://h/?q=1",
                                   "https://h/#top"])
def test_a_public_address_that_is_no_http_base_is_refused(value: str):
    with pytest.raises(ConfigurationError, match="TRADEHUB_PUBLIC_URL"):
        Settings.from_env({"TRADEHUB_PUBLIC_URL": value})
    accepted = Settings.from_env({"TRADEHUB_PUBLIC_URL": "https://hub.example.org/"})
    assert accepted.public_url == "https://hub.example.org"


# ---- in a real browser (the fixtures of tests/test_browser.py) ----------------------------------

SHOTS = Path("/tmp/team/shots")


@pytest.mark.browser
@pytest.mark.slow
def test_a_trader_opens_the_certificate_prints_it_and_anyone_verifies_it(page, served):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    ident = served.declarations["BROWSER-GOODS-1"]
    sign_in(page, served, "admin")
    page.goto(f"{served.url}/declarations/{ident}")
    page.click("text=Release certificate")
    page.wait_for_url(f"{served.url}/declarations/{ident}/certificate")
    assert page.locator("h1").inner_text() == "Release certificate"
    box = page.locator(".qr-box svg").bounding_box()
    assert box is not None and box["width"] > 100 and abs(box["width"] - box["height"]) < 1  # drawn, square
    page.screenshot(path=str(SHOTS / "certificate.png"), full_page=True)
    page.emulate_media(media="print")
    assert page.locator(".top").is_hidden() and page.locator(".actions").is_hidden()
    page.screenshot(path=str(SHOTS / "certificate-print.png"), full_page=True)
    page.emulate_media(media="screen")
    verify_url = page.locator(".verification a").get_attribute("href")
    assert verify_url.startswith(f"{served.url}/verify/")
    assert page.problems == [], page.problems

    page.context.clear_cookies()  # a stranger with the printed certificate
    page.goto(verify_url)
    assert "issued by this hub" in page.locator(".verdict").inner_text()
    assert page.locator(".facts dd").all_inner_texts()[0] == "BROWSER-GOODS-1"
    page.screenshot(path=str(SHOTS / "verify.png"), full_page=True)
    page.goto(verify_url[:-1] + ("A" if not verify_url.endswith("A") else "B"))
    assert "not a valid certificate code" in page.locator(".verdict").inner_text()
    page.screenshot(path=str(SHOTS / "verify-invalid.png"), full_page=True)
