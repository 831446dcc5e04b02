"""No declaration stops another: a message that cannot be sent parks its declaration for that agency only.

With a publisher that refuses one declaration's messages, on SQLite and PostgreSQL: the others go on, the
refused one's later messages wait in order, the failure is recorded on the declaration and shown on /healthz
and /metrics, retries back off, an admin's retry goes through, and a restart resumes from the tables.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from adapters.messages import Message
from followers.dispatch import AgencyDispatch, Changes, retry_delay
from followers.runner import Followers
from messaging.broker import PublishFailed
from messaging.publishing import Refusal
from projections.dispatch_parking import parked, parked_counts
from tradehub.bootstrap import Hub

from . import samples
from .conftest import Api


class Refusing:
    """A publisher that refuses the messages of the declarations in `broken`, and fails whole batches while
    `down`; what it published, in order."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.down = False
        self.published: list[Message] = []
        self.batches = 0

    def publish(self, messages: Sequence[Message]) -> list[Refusal]:
        self.batches += 1
        if self.down:
            raise PublishFailed("no broker answers")
        refused = [Refusal(m.message_id, f"{len(m.body)} bytes exceeds the broker's max_payload of 100 bytes")
                   for m in messages if m.declaration_id in self.broken]
        self.published += [m for m in messages if m.declaration_id not in self.broken]
        return refused


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def runner_for(hub: Hub, publisher: Refusing, clock: Clock, agencies: Sequence[str] = ("customs",)) -> Followers:
    changes = Changes(hub.declarations)
    return Followers(hub.declarations, hub.views, [
        AgencyDispatch(hub.declarations, agency, publisher, changes=changes, clock=clock, draw=lambda: 1.0)
        for agency in agencies])


def submit(hub: Hub, *references: str) -> list[str]:
    return [str(hub.declarations.submit(samples.goods(reference)).declaration.id) for reference in references]


def one_parked(hub: Hub, reference: str) -> tuple[Refusing, Clock, str, Followers]:
    """A declaration whose messages the broker refuses, dispatched once: parked, its runner on a clock of its own."""
    publisher, clock = Refusing(), Clock()
    [ident] = submit(hub, reference)
    publisher.broken.add(ident)
    runner = runner_for(hub, publisher, clock)
    runner.catch_up()
    return publisher, clock, ident, runner


def sent(publisher: Refusing, declaration_id: str) -> list[tuple[int, str]]:
    return [(m.version, m.name) for m in publisher.published if m.declaration_id == declaration_id]


def recorded(hub: Hub, declaration_id: str) -> list[str]:
    return [row[0] for row in hub.views.query(
        "SELECT message_id FROM agency_messages WHERE declaration_id = ? AND direction = 'outbound'",
        (declaration_id,))]


def test_a_refused_declaration_is_parked_and_every_other_goes_on(hub: Hub):
    publisher, clock = Refusing(), Clock()
    first, broken, last = submit(hub, "ISO-A", "ISO-B", "ISO-C")
    publisher.broken.add(broken)
    runner = runner_for(hub, publisher, clock)
    runner.catch_up()
    runner.catch_up()  # and the DispatchFailed it recorded on the declaration meanwhile
    head = hub.declarations.recorder.max_notification_id()
    assert hub.views.position("dispatch:customs") == head  # the position moved past the parked event
    assert sent(publisher, first) == [(1, "declaration")] and sent(publisher, last) == [(1, "declaration")]
    assert sent(publisher, broken) == [] and recorded(hub, broken) == []  # nothing recorded that was not sent
    [entry] = parked(hub.views)
    assert (entry["agency"], entry["declaration_id"], entry["failed_version"]) == ("customs", broken, 1)
    assert "max_payload" in entry["reason"] and entry["waiting_versions"] == [1]
    failure = hub.declarations.get(broken).dispatch_failures
    assert list(failure) == ["customs"] and failure["customs"]["version"] == 1
    # Later declarations still go: the failure never delays them.
    [later] = submit(hub, "ISO-D")
    runner.catch_up()
    assert sent(publisher, later) == [(1, "declaration")]


def test_later_messages_wait_behind_the_failed_one_and_go_in_order_once_it_goes(hub: Hub):
    publisher, clock, ident, runner = one_parked(hub, "ISO-ORDER")
    hub.declarations.amend(ident, hub.declarations.get(ident).version, samples.goods("ISO-ORDER", customs_office="3701"))
    hub.declarations.withdraw(ident, "shipment cancelled")
    runner.catch_up()
    assert sent(publisher, ident) == []
    [entry] = parked(hub.views)
    assert entry["failed_version"] == 1 and len(entry["waiting_versions"]) == 3  # original, amendment, withdrawal
    publisher.broken.clear()
    clock.now += 1.0
    assert runner.retry() == 1
    assert [name for _, name in sent(publisher, ident)] == ["declaration", "amendment", "invalidation"]
    versions = [version for version, _ in sent(publisher, ident)]
    assert versions == sorted(versions) == entry["waiting_versions"]
    assert sorted(recorded(hub, ident)) == sorted(m.message_id for m in publisher.published)
    assert parked(hub.views) == [] and hub.declarations.get(ident).dispatch_failures == {}
    types = [event["type"] for event in hub.declarations.history(ident)]
    assert types.count("DispatchFailed") == 1 and types.count("DispatchResumed") == 1
    runner.catch_up()  # its own DispatchFailed and DispatchResumed in the log change nothing more
    assert hub.declarations.get(ident).dispatch_failures == {} and runner.retry() == 0


def test_retries_back_off_doubling_up_to_a_ceiling(hub: Hub):
    publisher, clock, ident, runner = one_parked(hub, "ISO-BACKOFF")
    waits = []
    for _ in range(12):
        [entry] = parked(hub.views)
        waits.append(entry["next_attempt"] - clock.now)
        assert runner.retry() == 0 if clock.now < entry["next_attempt"] else True
        clock.now = entry["next_attempt"]
        runner.retry()
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(waits) == 600.0 and all(b >= a for a, b in zip(waits, waits[1:], strict=False))
    [entry] = parked(hub.views)
    assert entry["attempts"] == 13
    # One event on the declaration for the failure, however many retries fail.
    assert [e["type"] for e in hub.declarations.history(ident)].count("DispatchFailed") == 1


def test_the_jitter_stays_within_half_and_the_whole_wait():
    assert retry_delay(1, lambda: 0.0) == 0.5 and retry_delay(1, lambda: 1.0) == 1.0
    assert retry_delay(40, lambda: 1.0) == 600.0 and retry_delay(40, lambda: 0.0) == 300.0


def test_a_broker_that_is_down_fails_the_batch_not_a_declaration(hub: Hub):
    publisher, clock = Refusing(), Clock()
    submit(hub, "ISO-DOWN")
    publisher.down = True
    runner = runner_for(hub, publisher, clock)
    with pytest.raises(PublishFailed):
        runner.step(runner.followers[0])
    assert hub.views.position("dispatch:customs") == 0 and parked(hub.views) == []


def test_a_restart_resumes_what_was_parked(hub: Hub):
    publisher, clock = Refusing(), Clock()
    [ident] = submit(hub, "ISO-RESTART")
    publisher.broken.add(ident)
    runner_for(hub, publisher, clock).catch_up()
    hub.declarations.amend(ident, hub.declarations.get(ident).version, samples.goods("ISO-RESTART", customs_office="3701"))
    runner_for(hub, publisher, clock).catch_up()  # another process, from the tables alone
    publisher.broken.clear()
    clock.now += 5
    restarted = runner_for(hub, publisher, clock)
    assert restarted.retry() == 1
    assert [name for _, name in sent(publisher, ident)] == ["declaration", "amendment"]


def test_a_declaration_parked_for_one_agency_goes_to_the_others(hub: Hub):
    publisher, clock = Refusing(), Clock()

    class RefusingCustoms(Refusing):
        def publish(self, messages):
            refused = [Refusal(m.message_id, "too large") for m in messages if m.agency == "customs"]
            publisher.published += [m for m in messages if m.agency != "customs"]
            return refused

    document = samples.goods("ISO-AGENCY", items=[samples.goods()["items"][0] | {"hs_code": "0101210000"}])
    ident = str(hub.declarations.submit(document).declaration.id)
    runner = Followers(hub.declarations, hub.views, [
        AgencyDispatch(hub.declarations, agency, RefusingCustoms(), clock=clock) for agency in ("customs", "inspection")])
    runner.catch_up()
    assert {m.agency for m in publisher.published} == {"inspection"}
    assert list(hub.declarations.get(ident).dispatch_failures) == ["customs"]


def test_healthz_metrics_and_the_declaration_show_it_and_an_admin_retries_it(api: Api):
    hub = api.hub
    publisher, clock, ident, runner = one_parked(hub, "ISO-ADMIN")
    health = api.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["dispatch_parked"] == {"customs": 1}
    assert 'tradehub_dispatch_parked{agency="customs"} 1.0' in api.client.get("/metrics").text
    resource = api.client.get(f"/v1/declarations/{ident}", headers=api.as_("admin")).json()
    assert resource["dispatch_failures"]["customs"]["version"] == 1
    admin = api.as_("admin")
    listed = api.client.get("/v1/dispatch/parked", headers=admin).json()["items"]
    assert [item["declaration_id"] for item in listed] == [ident]
    route = f"/v1/declarations/{ident}/dispatch/customs/retry"
    assert api.client.post(route, headers=api.as_("officer", agency="customs")).status_code == 403
    assert api.client.post(route, headers=api.as_("trader", party=samples.TRADER_A)).status_code == 403
    assert api.client.post(route.replace("customs", "nobody"), headers=admin).status_code == 404
    assert api.client.post(route.replace(ident, "0" * 8), headers=admin).status_code == 404
    assert api.client.post(route.replace("customs", "port"), headers=admin).status_code == 409
    publisher.broken.clear()
    assert runner.retry() == 0  # its back-off has not run out
    assert api.client.post(route, headers=admin).status_code == 202
    clock.now = time.time()  # the worker's clock, past the moment the admin asked
    assert runner.retry() == 1 and sent(publisher, ident) == [(1, "declaration")]
    assert parked_counts(hub.views) == {}
    assert api.client.get("/healthz").json()["status"] == "ok"
    assert api.client.post(route, headers=admin).status_code == 409  # nothing left to retry


@pytest.fixture
def small_nats(tmp_path):
    """A stock nats-server (JetStream on) whose max_payload is 16 KiB, as an external broker might be set."""
    import subprocess

    from messaging.embedded import BrokerUnavailable, _answers, _free_port, nats_server_binary, stop_processes

    from .conftest import IN_CI

    try:
        binary = nats_server_binary()
    except BrokerUnavailable as error:
        if IN_CI:
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))
    port = _free_port()
    config = tmp_path / "small.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\nmax_payload: 16384\n'
                      f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n')
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not _answers(port):
        assert process.poll() is None and time.monotonic() < deadline, "nats-server did not start"
        time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    stop_processes(process)


@pytest.mark.broker
def test_a_message_over_a_real_brokers_max_payload_fails_only_its_declaration(hub: Hub, small_nats: str):
    from messaging.broker import JetStreamPublisher

    from .test_dispatch import stored

    big_items = [samples.goods()["items"][0] | {"description": f"{n} " + "&" * 500} for n in range(20)]
    big = str(hub.declarations.submit(samples.goods("ISO-BIG", items=big_items)).declaration.id)
    [small] = submit(hub, "ISO-SMALL")
    publisher = JetStreamPublisher(small_nats)
    try:
        assert publisher.max_payload() == 16384  # learnt from the server, not assumed
        runner = Followers(hub.declarations, hub.views, [AgencyDispatch(hub.declarations, "customs", publisher)])
        runner.catch_up()
    finally:
        publisher.close()
    assert [headers["Tradehub-Declaration-Id"] for _, headers in stored(small_nats, "customs")] == [small]
    [entry] = parked(hub.views)
    assert entry["declaration_id"] == big and "exceeds the broker's max_payload of 16,384 bytes" in entry["reason"]
    assert "max_payload" in hub.declarations.get(big).dispatch_failures["customs"]["reason"]
