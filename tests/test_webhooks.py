"""Webhooks (issue 18, item 2; docs/webhooks.md): subscriptions, SSRF refusals, signed deliveries, retries on a
schedule, disabling, the delivery log, tenant isolation, and at-least-once delivery across kill -9."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from followers.runner import Followers
from followers.webhooks import Schedule, ScheduleError, Sender, Webhooks
from messaging.embedded import stop_processes
from messaging.webhooks import Guard, Refused, refusal
from projections.subscriptions import Deliveries, Subscriptions, add_deliveries, webhook_id
from tradehub.bootstrap import Hub, Settings, build_hub
from tradehub.client import wait_until_healthy

from . import samples
from .conftest import SECRET, Api
from .racing import free_port

# ---- a local endpoint ---------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on the loopback that records each request and answers `status` (with `location` for a
    redirect); with `stall_first` it holds the first request until released (or the sender is gone), with
    `stall` every request. With `tls` (a server context) it speaks https as hooks.test, noting the SNI names."""

    def __init__(self, status: int = 200, *, location: str = "", stall_first: bool = False, stall: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.status, self.location, self.stall_first, self.stall = status, location, stall_first, stall
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.server_names: list[str | None] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.stall or (receiver.stall_first and len(receiver.requests) == 1):
                    receiver.first_arrived.set()
                    receiver.release.wait(60)
                    return
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        if tls is not None:
            tls.sni_callback = lambda _socket, name, _context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://hooks.test:{port}/hook" if tls else f"http://127.0.0.1:{port}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} webhooks arrived"
            time.sleep(0.05)


class Authority:
    """A test certificate authority: server certificates for a name, and a client context trusting only it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tradehub test CA")])
        self.name = name
        self.certificate = (self._builder(name, self.key.public_key())
                            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                           critical=True)
                            .sign(self.key, hashes.SHA256()))

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.now().astimezone()
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
                .not_valid_after(now + timedelta(days=1)))

    def server(self, host: str) -> ssl.SSLContext:
        """A server context presenting a certificate for `host`, signed by this authority."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]), key.public_key())
                       .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .sign(self.key, hashes.SHA256()))
        chain, secret = self.directory / f"{host}.pem", self.directory / f"{host}.key"
        chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        secret.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, secret)
        return context

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.certificate.public_bytes(serialization.Encoding.PEM).decode())


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


# ---- an in-process hub that may send to the loopback ----------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # real time at first: receivers check the signature's time against theirs

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def local_hub(store: tuple[Settings, str]) -> Iterator[Hub]:
    settings, schema = store
    wired = build_hub(Settings(settings.data_dir, settings.database_url, secret=SECRET,
                               webhook_allow_private=True), schema=schema)
    yield wired
    wired.close()


class Pipeline:
    """The webhooks worker's two halves, in-process, on a clock the test moves."""

    def __init__(self, hub: Hub, schedule: Schedule, guard: Guard) -> None:
        self.hub, self.clock = hub, Clock()
        self.follower = Followers(hub.declarations, hub.views, [Webhooks(hub.views, clock=self.clock)])
        self.sender = Sender(Deliveries(hub.views), guard, schedule, timeout=5, clock=self.clock, draw=lambda: 1.0)

    def pump(self) -> None:
        """The views (notifications among them) catch up, then the follower turns them into deliveries."""
        self.hub.runner.catch_up()
        self.follower.catch_up()
        self.follower.retry()

    def send(self) -> int:
        return asyncio.run(self.sender.send_due())


@pytest.fixture
def pipeline(local_hub: Hub) -> Pipeline:
    return Pipeline(local_hub, Schedule(first=10, ceiling=40, window=100, jitter=0.5), Guard(allow_private=True))


def trader(api: Api, party: str = samples.TRADER_A) -> dict[str, str]:
    return api.as_("trader", party=party)


def subscribe(api: Api, url: str, party: str = samples.TRADER_A,
              events: tuple[str, ...] = ("declaration.status", "declaration.decision")) -> dict:
    response = api.client.post("/v1/subscriptions", json={"url": url, "events": list(events)},
                               headers=trader(api, party))
    assert response.status_code == 201, response.text
    return response.json()


def attempts(api: Api, subscription: str, party: str = samples.TRADER_A) -> list[dict]:
    response = api.client.get(f"/v1/subscriptions/{subscription}/deliveries", headers=trader(api, party))
    assert response.status_code == 200, response.text
    return response.json()["items"]


# ---- registration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("http://hooks.example.com/x", "must use https://"),
    ("https://127.0.0.1/x", "loopback"),
    ("https://10.1.2.3/x", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::1]/x", "loopback"),
    ("https://[::ffff:127.0.0.1]/x", "loopback"),
    ("https://[fd00::1]/x", "private"),
    ("https://0.0.0.0/x", "unspecified"),
    ("https://224.0.0.1/x", "multicast"),
    ("https://localhost/x", "host localhost resolves to a non-public address"),  # a name: refused once resolved
    ("https://hooks.example.com:0/x", "port 0"),
    ("https://user:pw@hooks.example.com/x", "user name or password"),
    ("https://hooks.example.com/x#frag", "fragment"),
    ("https://hooks.example.com/a b", "space or control character"),
    ("ftp://hooks.example.com/x", "must use https://"),
    ("hooks.example.com/x", "must use https://"),
    ("https:///x", "has no host"),
    ("https://hooks.example.com:99999/x", "not a valid URL"),
])
def test_a_url_that_is_not_a_public_https_endpoint_is_422_naming_the_url(api: Api, url: str, message: str):
    response = api.client.post("/v1/subscriptions", json={"url": url, "events": ["declaration.status"]},
                               headers=trader(api))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["path"] == "$.url" and message in error["message"], error


@pytest.mark.parametrize("body, path", [
    ({"url": "https://a.example/x", "events": []}, "$.events"),
    ({"url": "https://a.example/x", "events": ["declaration.held"]}, "$.events[0]"),
    ({"url": "https://a.example/x", "events": ["declaration.status", "declaration.status"]}, "$.events"),
    ({"url": "https://a.example/" + "x" * 2048, "events": ["declaration.status"]}, "$.url"),
    ({"url": 5, "events": ["declaration.status"]}, "$.url"),
    ({"events": ["declaration.status"]}, "$.url"),
    ({"url": "https://a.example/x", "events": ["declaration.status"], "secret": "whsec_mine"}, "$.secret"),
])
def test_a_malformed_subscription_is_422_naming_the_field(api: Api, body: dict, path: str):
    response = api.client.post("/v1/subscriptions", json=body, headers=trader(api))
    assert response.status_code == 422, response.text
    assert path in [error["path"] for error in response.json()["errors"]]
    assert api.client.get("/v1/subscriptions", headers=trader(api)).json()["items"] == []


def test_only_traders_subscribe(api: Api):
    for headers in (api.as_("officer", agency="customs"), api.as_("admin")):
        for method, path in (("POST", "/v1/subscriptions"), ("GET", "/v1/subscriptions"),
                             ("GET", "/v1/subscriptions/x"), ("DELETE", "/v1/subscriptions/x")):
            response = api.client.request(method, path, headers=headers,
                                          json={"url": "https://a.example/x", "events": ["declaration.status"]})
            assert response.status_code == 403, (method, path, response.text)
    assert api.client.get("/v1/subscriptions").status_code == 401


def test_the_secret_is_shown_once_and_signs_in_the_standard_webhooks_form(local_hub: Hub):
    api = Api(local_hub)
    response = api.client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook",
                                                          "events": ["declaration.status"]}, headers=trader(api))
    assert response.status_code == 201 and response.headers["cache-control"] == "no-store"  # no cache keeps it
    made = response.json()
    assert made["secret"].startswith("whsec_") and made["status"] == "active" and made["events"] == [
        "declaration.status"]
    Webhook(made["secret"])  # a secret the receivers' library accepts
    for shown in (api.client.get(f"/v1/subscriptions/{made['id']}", headers=trader(api)).json(),
                  *api.client.get("/v1/subscriptions", headers=trader(api)).json()["items"]):
        assert "secret" not in shown and shown["id"] == made["id"]


def test_at_most_ten_subscriptions_per_party(local_hub: Hub):
    api = Api(local_hub)
    made = [subscribe(api, f"http://127.0.0.1:9/{n}") for n in range(10)]
    refused = api.client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/x", "events": [
        "declaration.status"]}, headers=trader(api))
    assert refused.status_code == 409 and "at most 10" in refused.json()["detail"]
    subscribe(api, "http://127.0.0.1:9/b", party=samples.TRADER_B)  # another party's quota is its own
    assert api.client.delete(f"/v1/subscriptions/{made[0]['id']}", headers=trader(api)).status_code == 204
    subscribe(api, "http://127.0.0.1:9/again")
    assert len(api.client.get("/v1/subscriptions", headers=trader(api)).json()["items"]) == 10


def test_ten_racing_creations_past_the_limit_make_exactly_ten(local_hub: Hub):
    store = Subscriptions(local_hub.views)
    outcomes: list[str] = []

    def create(n: int) -> None:
        try:
            store.create(samples.TRADER_A, f"http://127.0.0.1:9/{n}", ["declaration.status"], "whsec_x", now=0,
                         since=0)
            outcomes.append("made")
        except Exception as error:  # noqa: BLE001 - counted below
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("made") == 10 and outcomes.count("LimitReached") == 6, outcomes
    assert len(store.listed(samples.TRADER_A)) == 10


def test_another_party_can_neither_see_nor_delete_nor_read_the_log(local_hub: Hub):
    api = Api(local_hub)
    mine = subscribe(api, "http://127.0.0.1:9/a")
    other = trader(api, samples.TRADER_B)
    assert api.client.get(f"/v1/subscriptions/{mine['id']}", headers=other).status_code == 404
    assert api.client.get(f"/v1/subscriptions/{mine['id']}/deliveries", headers=other).status_code == 404
    assert api.client.delete(f"/v1/subscriptions/{mine['id']}", headers=other).status_code == 404
    assert api.client.get("/v1/subscriptions", headers=other).json()["items"] == []
    unknown = api.client.get("/v1/subscriptions/00000000-0000-0000-0000-000000000000", headers=other)
    assert unknown.status_code == 404 and unknown.json()["title"] == "No such subscription"
    assert api.client.get(f"/v1/subscriptions/{mine['id']}", headers=trader(api)).status_code == 200


def test_a_bad_log_cursor_is_422(local_hub: Hub):
    api = Api(local_hub)
    mine = subscribe(api, "http://127.0.0.1:9/a")
    response = api.client.get(f"/v1/subscriptions/{mine['id']}/deliveries?after=bogus", headers=trader(api))
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == "query.after"


# ---- the guard: addresses, names, redirects ---------------------------------------------------------

@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "not globally routable"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("255.255.255.255", "reserved"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1", "link-local"), ("fc00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("ff02::1", "multicast"), ("8.8.8.8", None), ("2001:4860:4860::8888", None),
    ("64:ff9b::808:808", None), ("64:ff9b::a00:1", "private"),  # NAT64's well-known prefix: the last 32 bits
    # Local-use NAT64 (RFC 6052 puts a /48's IPv4 address in bits 48-87, not the last 32): refused outright,
    # whichever bits would seem to hold a public address.
    ("64:ff9b:1::808:808", "local-use NAT64"), ("64:ff9b:1:808:8:800::", "local-use NAT64"),
    ("fec0::1", "site-local"),
])
def test_every_address_that_is_not_public_unicast_is_refused(address: str, reason: str | None):
    assert refusal(ipaddress.ip_address(address)) == reason


def resolving(*addresses: str):
    return lambda host, port: list(addresses)


def test_a_name_resolving_to_a_private_address_is_refused_without_telling_the_trader_where_it_leads(
        caplog: pytest.LogCaptureFixture):
    """The refusal is shown to the trader: it must not map the hub's network for them (which internal address a
    name leads to, what the resolver said). The server's log has the details."""
    target = Guard().check("https://hooks.example.com/x")
    assert [str(a) for a in Guard(resolver=resolving("93.184.215.14")).addresses(target)] == ["93.184.215.14"]
    for answer in (["10.0.0.7"], ["93.184.215.14", "127.0.0.1"], ["::ffff:192.168.0.1"]):
        with pytest.raises(Refused) as refused:
            Guard(resolver=resolving(*answer)).addresses(target)
        assert str(refused.value) == ("host hooks.example.com resolves to a non-public address; webhooks go to "
                                      "public addresses only")
        assert str(ipaddress.ip_address(answer[-1])) in caplog.text

    def unresolvable(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known (via 10.9.8.7)")

    for resolver in (unresolvable, resolving(), resolving("not-an-address")):
        with pytest.raises(Refused) as refused:
            Guard(resolver=resolver).addresses(target)
        assert str(refused.value) == "host hooks.example.com does not resolve"
    assert "10.9.8.7" in caplog.text and "not-an-address" in caplog.text


def test_allow_private_lets_local_development_through_but_not_multicast():
    guard = Guard(allow_private=True, resolver=resolving("127.0.0.1"))
    assert guard.addresses(guard.check("http://receiver.local:8080/hook"))
    for url in ("http://[ff02::1]/x", "http://0.0.0.0/x"):
        with pytest.raises(Refused):
            guard.check(url)


def delivery_to(hub: Hub, url: str, notifications: tuple[int, ...] = (1,), *, party: str = samples.TRADER_A,
                due: float = 0, cipher_key: str | None = None) -> tuple[str, str]:
    """A subscription of `party` and a pending delivery to it of each notification, written as the follower
    writes them; the subscription's id and the first delivery's webhook id."""
    made = Subscriptions(hub.views, cipher_key).create(party, url, ["declaration.status"],
                                                       "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", now=0, since=0)
    with hub.views.transaction() as cursor:
        add_deliveries(cursor, [(made["id"], notification, json.dumps({"id": str(notification)}))
                                for notification in notifications], due=due)
    return made["id"], webhook_id(made["id"], notifications[0])


def logged(hub: Hub, subscription: str, party: str = samples.TRADER_A) -> list[dict]:
    return Subscriptions(hub.views).attempts(party, subscription, after=None, limit=500)[0]  # type: ignore[index]


@pytest.mark.parametrize("allow_private", [True, False], ids=["guard-allowing-loopback", "guard"])
def test_at_delivery_a_name_now_resolving_to_a_private_address_is_not_contacted(local_hub: Hub,
                                                                                  authority: Authority,
                                                                                  allow_private: bool):
    """DNS rebinding: the name was public when registered; at delivery it resolves to the loopback, where an https
    endpoint with a valid certificate for the name listens. Only the guard keeps the request from it: with
    loopback allowed, the same delivery arrives."""
    endpoint = Receiver(tls=authority.server("hooks.test"))
    try:
        subscription, _ = delivery_to(local_hub, endpoint.url)
        sender = Sender(Deliveries(local_hub.views), Guard(allow_private, resolver=resolving("127.0.0.1")),
                        Schedule(), timeout=5, tls=authority.client())
        assert asyncio.run(sender.send_due()) == 1
        [attempt] = logged(local_hub, subscription)
        if allow_private:
            assert attempt["outcome"] == "delivered" and len(endpoint.requests) == 1
            return
        assert attempt["outcome"] == "failed" and attempt["status_code"] is None and attempt["next_try"] is not None
        assert "resolves to a non-public address" in attempt["error"] and "127.0.0.1" not in attempt["error"]
        assert endpoint.requests == []
    finally:
        endpoint.close()


def test_https_reaches_the_pinned_address_by_name_and_checks_the_certificate_against_the_name(
        local_hub: Hub, authority: Authority):
    """The connection goes to the address the guard checked, yet TLS is the name's: SNI and Host carry it, and a
    certificate for another name, or from an authority the hub does not trust, is a failed attempt."""
    guard = Guard(allow_private=True, resolver=resolving("127.0.0.1"))
    for certified, trusted, error in (("hooks.test", True, None), ("other.test", True, "Hostname mismatch"),
                                      ("hooks.test", False, "certificate verify failed")):
        endpoint = Receiver(tls=authority.server(certified))
        try:
            subscription, _ = delivery_to(local_hub, endpoint.url)
            sender = Sender(Deliveries(local_hub.views), guard, Schedule(), timeout=5,
                            tls=authority.client() if trusted else None)
            asyncio.run(sender.send_due())
            [attempt] = logged(local_hub, subscription)
            assert endpoint.server_names == ["hooks.test"]
            if error is None:
                assert attempt["outcome"] == "delivered", attempt
                [(_, headers, _)] = endpoint.requests
                assert headers["host"] == f"hooks.test:{endpoint.server.server_address[1]}"
            else:
                assert attempt["outcome"] == "failed" and error in attempt["error"], attempt
                assert endpoint.requests == []
        finally:
            endpoint.close()


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(local_hub: Hub):
    endpoint = Receiver(302, location="http://169.254.169.254/latest/meta-data")
    try:
        subscription, _ = delivery_to(local_hub, endpoint.url)
        sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True), Schedule(), timeout=5)
        asyncio.run(sender.send_due())
        [attempt] = Subscriptions(local_hub.views).attempts(samples.TRADER_A, subscription, after=None, limit=10)[0]
        assert attempt["outcome"] == "failed" and attempt["status_code"] == 302
        assert "not followed" in attempt["error"] and len(endpoint.requests) == 1
    finally:
        endpoint.close()


# ---- delivery ----------------------------------------------------------------------------------------

def test_each_notification_arrives_signed_once_per_subscription(local_hub: Hub, pipeline: Pipeline,
                                                              receiver: Receiver):
    api = Api(local_hub)
    made = subscribe(api, receiver.url)
    status_only = subscribe(api, receiver.url + "?only=status", events=("declaration.status",))
    other = subscribe(api, receiver.url + "?party=b", party=samples.TRADER_B)
    declared = api.client.post("/v1/declarations", json=samples.goods(), headers=trader(api)).json()
    pipeline.pump()
    pipeline.pump()  # again: nothing new, nothing twice
    assert pipeline.send() == 2
    assert pipeline.send() == 0
    feed = api.client.get("/v1/notifications", headers=trader(api)).json()["items"]
    assert feed and {item["type"] for item in feed} == {"declaration.status"}
    by_path = {path: (headers, body) for path, headers, body in receiver.requests}
    assert set(by_path) == {"/hook", "/hook?only=status"}  # nothing for trader B's endpoint
    for path, subscription in (("/hook", made), ("/hook?only=status", status_only)):
        headers, body = by_path[path]
        sent = Webhook(subscription["secret"]).verify(body, headers)
        assert sent == feed[0] and sent["declaration_id"] == declared["id"]
        assert sent["reference"] == "TEST-GOODS-0001" and sent["status"] == "submitted"
        assert headers["webhook-id"] == webhook_id(subscription["id"], int(feed[0]["id"]))
        with pytest.raises(Exception, match="signature"):
            Webhook(other["secret"]).verify(body, headers)  # another subscription's secret does not verify it
        [attempt] = attempts(api, subscription["id"])
        assert attempt["outcome"] == "delivered" and attempt["status_code"] == 200
        assert attempt["webhook_id"] == headers["webhook-id"] and attempt["next_try"] is None
        assert attempt["latency_ms"] >= 0
    assert attempts(api, other["id"], samples.TRADER_B) == []


def test_a_subscription_gets_what_comes_after_it_was_made_and_nothing_after_it_is_deleted(
        local_hub: Hub, pipeline: Pipeline, receiver: Receiver):
    api = Api(local_hub)
    api.client.post("/v1/declarations", json=samples.goods(reference="BEFORE"), headers=trader(api))
    local_hub.runner.catch_up()
    made = subscribe(api, receiver.url)
    api.client.post("/v1/declarations", json=samples.goods(reference="AFTER"), headers=trader(api))
    pipeline.pump()
    pipeline.send()
    assert [json.loads(body)["reference"] for _, _, body in receiver.requests] == ["AFTER"]
    assert api.client.delete(f"/v1/subscriptions/{made['id']}", headers=trader(api)).status_code == 204
    api.client.post("/v1/declarations", json=samples.goods(reference="GONE"), headers=trader(api))
    pipeline.pump()
    assert pipeline.send() == 0 and len(receiver.requests) == 1


def test_failures_back_off_on_the_schedule_then_disable_the_subscription(local_hub: Hub):
    """Schedule 10 s, 20 s, 40 s, 40 s (the ceiling; the window is 110 s); jitter 0.5 at its largest draw halves
    each wait."""
    endpoint = Receiver(503)
    try:
        api = Api(local_hub)
        schedule = Schedule(first=10, ceiling=40, window=110, jitter=0.5)
        pipeline = Pipeline(local_hub, schedule, Guard(allow_private=True))
        made = subscribe(api, endpoint.url)
        api.client.post("/v1/declarations", json=samples.goods(), headers=trader(api))
        pipeline.pump()
        waits = []
        for attempt in range(1, schedule.attempts + 1):
            assert pipeline.send() == 1, attempt
            assert pipeline.send() == 0  # not due again yet
            logged = attempts(api, made["id"])
            assert [entry["attempt"] for entry in logged] == list(range(1, attempt + 1))
            if logged[-1]["next_try"] is not None:
                due = datetime.fromisoformat(logged[-1]["next_try"]).timestamp()
                waits.append(round(due - pipeline.clock.now))
                pipeline.clock.now += waits[-1] - 1
                assert pipeline.send() == 0  # a second early
                pipeline.clock.now += 1
        assert waits == [5, 10, 20, 20]
        assert len(endpoint.requests) == schedule.attempts == 5
        assert len({headers["webhook-id"] for _, headers, _ in endpoint.requests}) == 1
        shown = api.client.get(f"/v1/subscriptions/{made['id']}", headers=trader(api)).json()
        assert shown["status"] == "disabled" and "failed 5 times" in shown["disabled_reason"]
        assert "HTTP 503" in shown["disabled_reason"]
        api.client.post("/v1/declarations", json=samples.goods(reference="LATER"), headers=trader(api))
        pipeline.pump()
        pipeline.clock.now += 10**6
        assert pipeline.send() == 0  # a disabled subscription is sent nothing
    finally:
        endpoint.close()


def test_a_lease_keeps_a_delivery_from_a_second_sender_until_it_runs_out(local_hub: Hub):
    delivery_to(local_hub, "http://127.0.0.1:9/x")
    deliveries = Deliveries(local_hub.views)
    [first] = deliveries.claim("a", now=100, lease=30, limit=10)
    assert deliveries.claim("b", now=129, lease=30, limit=10) == []
    [again] = deliveries.claim("b", now=131, lease=30, limit=10)
    assert (again.id, again.attempt) == (first.id, 2)
    log = Subscriptions(local_hub.views).attempts(samples.TRADER_A, first.subscription_id, after=None, limit=10)[0]
    assert [(entry["attempt"], entry["outcome"]) for entry in log] == [(1, "abandoned"), (2, "in_flight")]


@contextmanager
def sending(sender: Sender) -> Iterator[None]:
    """The sender's loop running in a thread of its own, as the webhooks worker runs it, until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(sender.run(stop)), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def test_a_tarpit_endpoint_delays_only_its_own_deliveries(local_hub: Hub):
    """A subscription has one delivery in flight at most: an endpoint that holds every request open takes one of
    the two sending slots, not both, and another subscription's delivery, due later, still goes out at once."""
    tarpit, prompt = Receiver(stall=True), Receiver()
    try:
        delivery_to(local_hub, tarpit.url, (1, 2, 3), due=0)
        delivery_to(local_hub, prompt.url, (4,), due=1)
        sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True), Schedule(), timeout=5, parallel=2,
                        per_party=2, idle=0.05)
        with sending(sender):
            prompt.wait_for(1, timeout=3)
            assert len(tarpit.requests) == 1
    finally:
        tarpit.close()
        prompt.close()


def test_parties_take_turns_and_none_holds_more_than_its_share(local_hub: Hub):
    """Trader A's two tarpit endpoints, due first, would hold both slots; A's share is one, so trader B's
    delivery goes out at once."""
    tarpits, prompt = [Receiver(stall=True), Receiver(stall=True)], Receiver()
    try:
        for number, endpoint in enumerate(tarpits):
            delivery_to(local_hub, endpoint.url, (number + 1,), due=0)
        delivery_to(local_hub, prompt.url, (3,), party=samples.TRADER_B, due=1)
        sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True), Schedule(), timeout=5, parallel=2,
                        per_party=1, idle=0.05)
        with sending(sender):
            prompt.wait_for(1, timeout=3)
            assert sum(len(endpoint.requests) for endpoint in tarpits) == 1
    finally:
        for endpoint in (*tarpits, prompt):
            endpoint.close()


def test_a_failing_endpoint_is_retried_one_delivery_at_a_time_and_the_rest_follow_in_order(local_hub: Hub):
    endpoint = Receiver(503)
    try:
        subscription, first = delivery_to(local_hub, endpoint.url, (1, 2, 3))
        clock = Clock()
        sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True),
                        Schedule(first=10, ceiling=10, window=1000, jitter=0), timeout=5, clock=clock)
        for _ in range(3):
            assert asyncio.run(sender.send_due()) == 1  # the oldest only
            assert asyncio.run(sender.send_due()) == 0  # the others wait behind it
            clock.now += 10
        assert [headers["webhook-id"] for _, headers, _ in endpoint.requests] == [first] * 3
        endpoint.status = 200
        while asyncio.run(sender.send_due()):
            clock.now += 1  # the log is by time
        assert [json.loads(body)["id"] for _, _, body in endpoint.requests[3:]] == ["1", "2", "3"]
        assert [(entry["notification_id"], entry["attempt"], entry["outcome"])
                for entry in logged(local_hub, subscription)] == [
            ("1", 1, "failed"), ("1", 2, "failed"), ("1", 3, "failed"), ("1", 4, "delivered"), ("2", 1, "delivered"),
            ("3", 1, "delivered")]
    finally:
        endpoint.close()


def test_disabling_a_subscription_suspends_what_waited_behind_it(local_hub: Hub):
    endpoint = Receiver(503)
    try:
        subscription, _ = delivery_to(local_hub, endpoint.url, (1, 2, 3))
        sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True), Schedule(window=0), timeout=5)
        assert asyncio.run(sender.send_due()) == 1
        assert Subscriptions(local_hub.views).get(samples.TRADER_A, subscription)["status"] == "disabled"
        states = local_hub.views.query("SELECT notification_id, state FROM webhook_deliveries"
                                       " WHERE subscription_id = ? ORDER BY notification_id", (subscription,))
        assert [tuple(row) for row in states] == [(1, "failed"), (2, "suspended"), (3, "suspended")]
        assert Deliveries(local_hub.views).claim("a", now=time.time() + 10**6, lease=30, limit=10) == []
    finally:
        endpoint.close()


def test_an_error_of_the_hubs_own_while_sending_is_a_failed_attempt_retried_later(
        local_hub: Hub, caplog: pytest.LogCaptureFixture):
    """Not left leased (to be resent as abandoned, forever): logged, and recorded as a failure on the schedule."""
    def broken(host: str, port: int) -> list[str]:
        raise RuntimeError("resolver bug")

    subscription, _ = delivery_to(local_hub, "http://hooks.test/x")
    sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True, resolver=broken), Schedule(), timeout=5)
    assert asyncio.run(sender.send_due()) == 1
    [attempt] = logged(local_hub, subscription)
    assert attempt["outcome"] == "failed" and "internal error" in attempt["error"] and attempt["next_try"]
    assert "resolver bug" not in attempt["error"] and "resolver bug" in caplog.text
    assert asyncio.run(sender.send_due()) == 0  # not due again yet


def test_a_delivery_that_cannot_be_claimed_does_not_stop_the_others(local_hub: Hub,
                                                                    caplog: pytest.LogCaptureFixture):
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    sealed, _ = delivery_to(local_hub, "http://127.0.0.1:9/sealed", (1,), cipher_key=key)
    plain, _ = delivery_to(local_hub, "http://127.0.0.1:9/plain", (2,), due=1)
    [claim] = Deliveries(local_hub.views).claim("a", now=2, lease=30, limit=10)  # no key: the sealed one fails
    assert claim.subscription_id == plain and "cannot claim webhook delivery" in caplog.text
    assert logged(local_hub, sealed) == []  # nothing half-taken
    assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in repr(claim)


def test_a_sending_task_that_raises_is_logged(local_hub: Hub, caplog: pytest.LogCaptureFixture):
    delivery_to(local_hub, "http://127.0.0.1:9/x")
    sender = Sender(Deliveries(local_hub.views), Guard(allow_private=True), Schedule(), timeout=5, idle=0.05)

    async def raising(claim: object) -> None:
        raise RuntimeError("sending bug")

    sender.send = raising  # type: ignore[method-assign]
    with sending(sender):
        deadline = time.monotonic() + 5
        while "sending bug" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert "a webhook sending task failed" in caplog.text


def test_the_secret_is_sealed_at_rest_under_the_cipher_key(local_hub: Hub):
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    made = Subscriptions(local_hub.views, key).create(samples.TRADER_A, "http://127.0.0.1:9/x",
                                                      ["declaration.status"], "whsec_c2VjcmV0", now=0, since=0)
    [(stored,)] = local_hub.views.query("SELECT secret FROM webhook_subscriptions WHERE id = ?", (made["id"],))
    assert stored.startswith("sealed:") and "c2VjcmV0" not in stored
    with local_hub.views.transaction() as cursor:
        from projections.subscriptions import add_deliveries

        add_deliveries(cursor, [(made["id"], 1, "{}")], due=0)
    [claim] = Deliveries(local_hub.views, key).claim("a", now=1, lease=30, limit=1)
    assert claim.secret == "whsec_c2VjcmV0"


# ---- the schedule --------------------------------------------------------------------------------

def test_the_default_schedule_retries_for_two_weeks():
    schedule = Schedule.parse("")
    assert schedule.bases[0] == 30 and max(schedule.bases) == 3600
    assert 13.9 * 86400 < sum(schedule.bases) <= 14 * 86400


@pytest.mark.parametrize("text, message", [
    ("first=0s", "more than 0"), ("first=1m,max=30s", "at least first"), ("jitter=1", "fraction"),
    ("first=10", "duration"), ("speed=2", "unknown setting"), ("first=1s,first=2s", "twice"),
    ("first=1s,max=1s,window=30d", "retries fit"),
])
def test_a_bad_schedule_is_refused_naming_the_setting(text: str, message: str):
    with pytest.raises(ScheduleError, match=message):
        Schedule.parse(text)


@settings(max_examples=200, deadline=None)
@given(first=st.floats(1, 600), factor=st.floats(1, 100), window=st.floats(0, 30 * 86400),
       jitter=st.floats(0, 0.99), draws=st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_schedule_properties(first: float, factor: float, window: float, jitter: float, draws: list[float]):
    try:
        schedule = Schedule(first=first, ceiling=first * factor, window=window, jitter=jitter)
    except ScheduleError:
        return  # too many retries for the window: refused, never truncated
    bases = schedule.bases
    # Bases grow (doubling) to the ceiling and never shrink; they fill the window and no more.
    assert all(a <= b <= max(2 * a, schedule.ceiling) for a, b in zip(bases, bases[1:], strict=False))
    assert all(base <= schedule.ceiling for base in bases)
    assert sum(bases) <= window and sum(bases) + min(schedule.ceiling, (bases[-1] * 2 if bases else first)) > window
    # Each wait lies within its jitter bounds, and so the bounds grow too; the waits end within the window.
    waits = [schedule.delay(n, lambda n=n: draws[n % len(draws)]) for n in range(1, len(bases) + 1)]
    assert all(base * (1 - jitter) - 1e-9 <= wait <= base for wait, base in zip(waits, bases, strict=True))
    assert sum(waits) <= window + 1e-6
    assert schedule.delay(len(bases) + 1) is None and schedule.delay(0) is None


# ---- a served hub ---------------------------------------------------------------------------------

def _children(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of `parent`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, ValueError, IndexError):
                continue
    return found


@pytest.mark.slow
def test_a_served_hub_delivers_at_least_once_across_kill_9_of_the_webhooks_worker(tmp_path: Path):
    """The issue's 'done when': the receiver stalls the first request; the process delivering it is killed with
    SIGKILL; serve restarts it, the lease runs out, and the same webhook-id arrives again. The log shows both
    attempts, and every notification of the party's feed reached the receiver."""
    endpoint = Receiver(stall_first=True)
    port = free_port()
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path / "var"), TRADEHUB_SECRET=SECRET,
               TRADEHUB_WEBHOOK_ALLOW_PRIVATE="1", TRADEHUB_WEBHOOK_TIMEOUT="2")
    for name in ("TRADEHUB_DATABASE_URL", "TRADEHUB_BROKER_URL", "TRADEHUB_CIPHER_KEY"):
        env.pop(name, None)
    log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "tradehub.cli", "serve", "--port", str(port), "--no-dispatch"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_healthy(url, lambda: server.poll() is None, timeout=60), Path(log.name).read_text()
        from tradehub.auth import issue_token

        headers = {"Authorization": f"Bearer {issue_token(SECRET, 'trader', party=samples.TRADER_A)}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            made = client.post("/v1/subscriptions", json={"url": endpoint.url, "events": [
                "declaration.status", "declaration.decision"]})
            assert made.status_code == 201, made.text
            secret, subscription = made.json()["secret"], made.json()["id"]
            declared = client.post("/v1/declarations", json=samples.goods()).json()
            assert endpoint.first_arrived.wait(30), Path(log.name).read_text()
            [(worker, _)] = [child for child in _children(server.pid) if "worker webhooks" in child[1]]
            os.kill(worker, signal.SIGKILL)  # mid-delivery: the endpoint holds the request open
            endpoint.release.set()
            client.post(f"/v1/declarations/{declared['id']}/withdrawal",
                        json={"reason": "sent in error", "expected_version": 1})
            endpoint.wait_for(3, timeout=60)
            first_id = endpoint.requests[0][1]["webhook-id"]
            sent_ids = [sent_headers["webhook-id"] for _, sent_headers, _ in endpoint.requests]
            assert sent_ids.count(first_id) == 2 and len(set(sent_ids)) == 2  # the same notification, again
            for _, sent_headers, body in endpoint.requests:
                Webhook(secret).verify(body, sent_headers)
            feed = client.get("/v1/notifications").json()["items"]
            received = {json.loads(body)["id"] for _, _, body in endpoint.requests}
            assert {item["id"] for item in feed} == received and len(feed) == 2  # nothing lost
            deadline = time.monotonic() + 10
            while True:
                log_items = client.get(f"/v1/subscriptions/{subscription}/deliveries").json()["items"]
                if all(item["outcome"] == "delivered" for item in log_items if item["webhook_id"] != first_id):
                    break
                assert time.monotonic() < deadline, log_items
                time.sleep(0.2)
            mine = [(item["attempt"], item["outcome"]) for item in log_items if item["webhook_id"] == first_id]
            assert mine == [(1, "abandoned"), (2, "delivered")]
            assert len(log_items) == 3  # the withdrawal's once
    finally:
        stop_processes(server)
        log.close()
        endpoint.close()
