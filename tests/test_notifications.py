"""The notifications feed (projections/notifications.py, followers/notifications.py) and its API: the pull feed
`/v1/notifications` and the server-sent events of `/v1/notifications/stream` and `/notifications/stream`.

What is checked: each overall status change and each agency decision gives exactly one notification, with the
documented payload and nothing of enforcement; a rebuild writes the same rows; every reader gets only its own
scope, whatever cursor it sends; bad cursors and limits are refused by name; the stream delivers live, resumes
after `Last-Event-ID`, frees its slot when the client goes, and ends when the server shuts down. A hypothesis
property drives random histories and compares the status notifications with the domain model's own statuses.
"""

from __future__ import annotations

import json
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings

from adapters.messages import Reply
from followers.inbox import Answering
from hub.declarations import Declaration, VersionConflict
from hub.declarations.domainmodel import AGENCY_STATUSES, DeclarationError
from projections import notifications as feed
from tradehub.api import notifications as stream_api
from tradehub.api.app import create_app
from tradehub.auth import issue_token
from tradehub.bootstrap import Hub, Settings, build_hub
from tradehub.http_limits import LimitedHttpToolsProtocol
from tradehub.web import install_pages
from tradehub.web.pages import SESSION_COOKIE

from . import samples
from .conftest import SECRET, Api
from .test_lifecycle_properties import CONTAINER, OTHER_CONTAINER, SHRIMP, VARIANTS

HEARTBEAT = 0.3
PAYLOAD_KEYS = {"id", "type", "declaration_id", "reference", "status", "agency", "code", "time"}


def answer(hub: Hub, declaration_id: Any, agency: str, status: str, code: str = "", message: str = "",
           text: str = "") -> None:
    """`agency` answers the declaration's current version."""
    version = hub.declarations.get(declaration_id).version
    reply = Reply(agency=agency, message_id=message or f"{agency}-{status}-{version}",
                  declaration_id=str(declaration_id), version=version, answers="",
                  issued_at="2026-12-01T09:00:00Z", code=code, status=status, text=text)
    hub.declarations.answer(declaration_id, [Answering(reply)])


def everything(hub: Hub) -> list[feed.Notification]:
    return feed.after(hub.views, cursor=0, limit=100_000, party=None, agency=None)[0]


def summary(rows: list[feed.Notification]) -> list[tuple[str, str, str | None, str | None]]:
    return [(row.type, row.status, row.agency, row.code) for row in rows]


def released_goods(hub: Hub, reference: str = "NOTIFY-1", declarant: str = samples.TRADER_A) -> Declaration:
    """A goods declaration (customs and port) answered to its release, the followers caught up."""
    declaration = hub.declarations.submit(samples.goods(reference, declarant)).declaration
    answer(hub, declaration.id, "customs", "received")
    answer(hub, declaration.id, "customs", "released", "08", text="goods released after document check")
    answer(hub, declaration.id, "port", "released", "P1")
    samples.followed(hub)
    return declaration


# ---- the feed ----------------------------------------------------------------------------------------

def test_each_status_change_and_decision_gives_one_notification(hub: Hub) -> None:
    declaration = released_goods(hub)
    rows = everything(hub)
    assert summary(rows) == [
        ("declaration.status", "submitted", None, None),
        ("declaration.decision", "received", "customs", None),
        ("declaration.status", "in_progress", None, None),
        ("declaration.decision", "released", "customs", "08"),
        ("declaration.decision", "released", "port", "P1"),
        ("declaration.status", "released", None, None),
    ]
    ids = [row.id for row in rows]
    assert ids == sorted(set(ids))
    # A decision and the status change it causes come from one event: ordinals 0 and 1 of its position.
    assert ids[2] == ids[1] + 1 and ids[1] % feed.PER_EVENT == 0
    first = feed.payload(rows[0])
    assert set(first) == PAYLOAD_KEYS
    assert first == {"id": str(rows[0].id), "type": "declaration.status", "declaration_id": str(declaration.id),
                     "reference": "NOTIFY-1", "status": "submitted", "agency": None, "code": None,
                     "time": first["time"]}
    assert first["time"].endswith("+00:00")
    assert all(row.declarant == samples.TRADER_A and row.consignee == samples.TRADER_A
               and row.routes == "customs,port" for row in rows)
    # The answer's text is not part of a notification.
    assert not any("document check" in json.dumps(feed.payload(row)) for row in rows)


def test_an_answer_that_changes_nothing_notifies_nothing(hub: Hub) -> None:
    declaration = hub.declarations.submit(samples.goods("NOTIFY-QUIET")).declaration
    answer(hub, declaration.id, "customs", "accepted", "01")
    answer(hub, declaration.id, "customs", "received", message="late-receipt")  # overtaken: changes nothing
    answer(hub, declaration.id, "customs", "accepted", "01", message="again")  # the same status again
    samples.followed(hub)
    assert summary(everything(hub)) == [
        ("declaration.status", "submitted", None, None),
        ("declaration.decision", "accepted", "customs", "01"),
        ("declaration.status", "in_progress", None, None),
    ]


def test_withdrawal_and_the_cancellations_that_follow(hub: Hub) -> None:
    declaration = hub.declarations.submit(samples.goods("NOTIFY-GONE")).declaration
    hub.declarations.withdraw(declaration.id, "ordered twice")
    answer(hub, declaration.id, "customs", "cancelled")
    samples.followed(hub)
    assert summary(everything(hub)) == [
        ("declaration.status", "submitted", None, None),
        ("declaration.status", "withdrawn", None, None),
        ("declaration.decision", "cancelled", "customs", None),
    ]
    assert "ordered twice" not in json.dumps([feed.payload(row) for row in everything(hub)])


def test_a_hold_reads_held_and_nothing_of_the_alert(hub: Hub) -> None:
    """I5: the trader learns that the goods are held (as its API view says), never the alert behind it."""
    declaration = hub.declarations.submit(samples.goods("NOTIFY-HELD")).declaration
    answer(hub, declaration.id, "customs", "received")
    alert = hub.declarations.raise_alert("container", CONTAINER, "tip-off: undeclared tobacco", "officer:customs")
    samples.followed(hub)
    hub.declarations.clear_alert(alert.id, "officer:customs")
    samples.followed(hub)
    rows = [row for row in everything(hub) if row.declaration_id == str(declaration.id)]
    assert [row.status for row in rows if row.kind == feed.STATUS] == ["submitted", "in_progress", "held",
                                                                      "in_progress"]
    shown = json.dumps([feed.payload(row) for row in rows]) + json.dumps([list(row) for row in rows])
    for secret in (str(alert.id), "tobacco", "tip-off", "officer:customs", CONTAINER):
        assert secret not in shown


def test_a_rebuild_writes_the_same_rows(hub: Hub) -> None:
    released_goods(hub)
    other = hub.declarations.submit(samples.goods("NOTIFY-2", samples.TRADER_B)).declaration
    hub.declarations.raise_alert("container", CONTAINER, "tip-off", "officer:customs")
    answer(hub, other.id, "customs", "rejected", "99")
    samples.followed(hub)
    before = everything(hub)
    routes = hub.views.query("SELECT agency, id FROM notification_routes ORDER BY agency, id")
    assert hub.runner.rebuild(["notifications"])["notifications"] > 0
    assert everything(hub) == before
    hub.runner.rebuild()
    assert everything(hub) == before
    assert hub.views.query("SELECT agency, id FROM notification_routes ORDER BY agency, id") == routes


def test_a_batch_applied_again_changes_nothing(hub: Hub) -> None:
    """A crash after the rows but before the position is a transaction rolled back; still, applying a batch twice
    (another runner got there first) must not duplicate a row."""
    released_goods(hub)
    before = everything(hub)
    follower = next(f for f in hub.runner.followers if f.name == feed.NAME)
    follower.forget()
    events = [(n.id, hub.declarations.mapper.to_domain_event(n))
              for n in hub.declarations.recorder.select_notifications(start=1, limit=1000)]
    with hub.views.transaction() as cursor:
        follower.apply(cursor, events)
    assert everything(hub) == before


# ---- scope ----------------------------------------------------------------------------------------

@pytest.fixture
def two_tenants(api: Api) -> dict[str, Any]:
    """Trader A's goods (customs, port) and trader B's goods by road (customs, inspection)."""
    mine = released_goods(api.hub, "SCOPE-A")
    theirs = api.hub.declarations.submit(samples.goods(
        "SCOPE-B", samples.TRADER_B, items=[SHRIMP], containers=[OTHER_CONTAINER], customs_office="3701",
        transport={"mode": "road"})).declaration
    answer(api.hub, theirs.id, "inspection", "inspection_required", "IR")
    samples.followed(api.hub)
    return {"mine": str(mine.id), "theirs": str(theirs.id), "routes": sorted(theirs.routed_agencies)}


def feed_of(api: Api, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = api.client.get("/v1/notifications", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_reader_gets_its_own_scope(api: Api, two_tenants: dict[str, Any]) -> None:
    assert two_tenants["routes"] == ["customs", "inspection"]
    everyone = feed_of(api, api.as_("admin"))["items"]
    assert {item["declaration_id"] for item in everyone} == {two_tenants["mine"], two_tenants["theirs"]}
    for role, claims, expected in [
        ("trader", {"party": samples.TRADER_A}, {two_tenants["mine"]}),
        ("trader", {"party": samples.TRADER_B}, {two_tenants["theirs"]}),
        ("officer", {"agency": "customs"}, {two_tenants["mine"], two_tenants["theirs"]}),
        ("officer", {"agency": "port"}, {two_tenants["mine"]}),
        ("officer", {"agency": "inspection"}, {two_tenants["theirs"]}),
        ("officer", {"agency": "border"}, set()),
    ]:
        items = feed_of(api, api.as_(role, **claims))["items"]
        assert {item["declaration_id"] for item in items} == expected, (role, claims)
        assert items == [item for item in everyone if item["declaration_id"] in expected]


def test_a_cursor_from_another_feed_teaches_nothing(api: Api, two_tenants: dict[str, Any]) -> None:
    """Trader B's answers depend only on its own rows: the cursor of one of A's notifications, one past the end,
    or one between its own, page exactly as its own feed would."""
    trader_b = api.as_("trader", party=samples.TRADER_B)
    own = feed_of(api, trader_b)["items"]
    assert own and all(item["declaration_id"] == two_tenants["theirs"] for item in own)
    others = [item["id"] for item in feed_of(api, api.as_("admin"))["items"]
              if item["declaration_id"] == two_tenants["mine"]]
    for cursor in [*others, str(feed.MAX_CURSOR), "0"]:
        page = feed_of(api, trader_b, after=cursor)
        expected = [item for item in own if int(item["id"]) > int(cursor)]
        assert page == {"items": expected, "next": expected[-1]["id"] if expected else None}


def test_pages_read_on_from_next(api: Api, two_tenants: dict[str, Any]) -> None:
    admin = api.as_("admin")
    everyone = feed_of(api, admin)["items"]
    read, cursor = [], None
    while True:
        page = feed_of(api, admin, limit=2, **({"after": cursor} if cursor else {}))
        read += page["items"]
        if page["next"] is None:
            break
        assert page["next"] == page["items"][-1]["id"]
        cursor = page["next"]
    assert read == everyone


@pytest.mark.parametrize(("query", "path"), [
    ({"after": "abc"}, "query.after"), ({"after": "-1"}, "query.after"), ({"after": "1.5"}, "query.after"),
    ({"after": "9" * 19}, "query.after"), ({"after": "9" * 41}, "query.after"), ({"after": " 1"}, "query.after"),
    ({"limit": "0"}, "query.limit"), ({"limit": "501"}, "query.limit"), ({"limit": "ten"}, "query.limit"),
])
def test_a_bad_cursor_or_limit_is_refused_by_name(api: Api, query: dict[str, str], path: str) -> None:
    response = api.client.get("/v1/notifications", params=query, headers=api.as_("admin"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["path"] for error in response.json()["errors"]] == [path]


def test_the_stream_refuses_a_bad_last_event_id_by_name(api: Api) -> None:
    response = api.client.get("/v1/notifications/stream", headers={**api.as_("admin"), "Last-Event-ID": "x1"})
    assert response.status_code == 422
    assert [error["path"] for error in response.json()["errors"]] == ["header.last-event-id"]


def test_the_feed_needs_a_token(api: Api) -> None:
    assert api.client.get("/v1/notifications").status_code == 401
    assert api.client.get("/v1/notifications/stream").status_code == 401


# ---- the stream ---------------------------------------------------------------------------------------

@pytest.fixture
def served(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The hub's app behind uvicorn with the hub's protocol on a thread, its followers running. Heartbeats come
    every HEARTBEAT s: a client thread blocked reading lets go of its socket only when something arrives."""
    monkeypatch.setattr(stream_api, "HEARTBEAT", HEARTBEAT)
    config = uvicorn.Config(install_pages(create_app(hub), hub), host="127.0.0.1", port=0, lifespan="off",
                            http=LimitedHttpToolsProtocol, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    hub.runner.start()
    port = server.servers[0].sockets[0].getsockname()[1]
    yield {"url": f"http://127.0.0.1:{port}", "server": server, "thread": thread}
    server.should_exit = True
    thread.join(timeout=10)


class Listener:
    """A client of one event stream, read on a thread: `next()` is the next event (id, data) or comment."""

    def __init__(self, url: str, headers: dict[str, str], cookies: dict[str, str] | None = None) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=30), cookies=cookies)
        self.response = self.client.send(self.client.build_request("GET", url, headers=headers), stream=True)
        self.received: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.response.status_code == 200:
            self.thread.start()

    def _read(self) -> None:
        fields: dict[str, Any] = {}
        try:
            for line in self.response.iter_lines():
                if not line:
                    if fields:
                        self.received.put(fields)
                    fields = {}
                elif line.startswith(":"):
                    self.received.put({"comment": line[1:].strip()})
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass
        self.received.put(None)  # the stream ended

    def next(self, timeout: float = 10) -> dict[str, Any] | None:
        return self.received.get(timeout=timeout)

    def notification(self, timeout: float = 10) -> dict[str, Any]:
        """The next notification within `timeout` s, skipping heartbeats; queue.Empty if none came."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.next(max(0.0, deadline - time.monotonic()))
            assert got is not None, "the stream ended"
            if "data" in got:
                return {**json.loads(got["data"]), "event_id": got["id"]}

    def close(self) -> None:
        self.response.close()
        self.client.close()


def token(role: str, **claims: str) -> str:
    return issue_token(SECRET, role, **claims)


@pytest.mark.slow
def test_the_stream_delivers_live_and_resumes_after_last_event_id(hub: Hub, served: dict[str, Any]) -> None:
    url = served["url"] + "/v1/notifications/stream"
    trader = {"Authorization": f"Bearer {token('trader', party=samples.TRADER_A)}"}
    listener = Listener(url, trader)
    assert listener.response.headers["content-type"].startswith("text/event-stream")
    opening = listener.next()
    assert opening == {"retry": "3000", "id": "0"}  # nothing yet: it starts from now
    assert listener.next() == {"comment": "heartbeat"}
    intruder = Listener(url, {"Authorization": f"Bearer {token('trader', party=samples.TRADER_B)}"})
    assert intruder.next() == {"retry": "3000", "id": "0"}
    declaration = hub.declarations.submit(samples.goods("LIVE-1")).declaration
    first = listener.notification()
    assert (first["type"], first["status"], first["declaration_id"]) == ("declaration.status", "submitted",
                                                                         str(declaration.id))
    assert first["event_id"] == first["id"]
    answer(hub, declaration.id, "customs", "accepted", "01")
    assert [listener.notification()["type"] for _ in range(2)] == ["declaration.decision", "declaration.status"]
    listener.close()
    # Missed while away: what came after the last id seen, and nothing before it.
    answer(hub, declaration.id, "customs", "released", "08")
    again = Listener(url, {**trader, "Last-Event-ID": first["id"]})
    assert again.next() == {"retry": "3000", "id": first["id"]}
    assert [(n["type"], n["status"]) for n in (again.notification() for _ in range(3))] == [
        ("declaration.decision", "accepted"), ("declaration.status", "in_progress"),
        ("declaration.decision", "released")]
    again.close()
    # Trader B heard nothing of A's declaration all along.
    with pytest.raises(queue.Empty):
        intruder.notification(timeout=1.5)
    intruder.close()


@pytest.mark.slow
def test_the_pages_stream_uses_the_session(hub: Hub, served: dict[str, Any]) -> None:
    url = served["url"] + "/notifications/stream"
    with httpx.Client() as client:
        assert client.get(url, follow_redirects=False).status_code == 303  # to sign in
    listener = Listener(url + "?after=0", {}, cookies={SESSION_COOKIE: token("officer", agency="customs")})
    assert listener.response.headers["content-security-policy"].startswith("default-src 'self'")
    assert listener.next() == {"retry": "3000", "id": "0"}
    hub.declarations.submit(samples.goods("LIVE-PAGE"))
    assert listener.notification()["status"] == "submitted"
    listener.close()


@pytest.mark.slow
def test_streams_per_caller_are_capped_and_freed_on_disconnect(hub: Hub, served: dict[str, Any]) -> None:
    url = served["url"] + "/v1/notifications/stream"
    officer = {"Authorization": f"Bearer {token('officer', agency='port')}"}
    listeners = [Listener(url, officer) for _ in range(stream_api.MAX_STREAMS_PER_CALLER)]
    assert all(listener.response.status_code == 200 for listener in listeners)
    refused = Listener(url, officer)
    assert refused.response.status_code == 429
    assert refused.response.headers["content-type"] == "application/problem+json"
    refused.close()
    other = Listener(url, {"Authorization": f"Bearer {token('officer', agency='customs')}"})
    assert other.response.status_code == 200  # the cap is per caller
    other.close()
    listeners.pop().close()
    deadline = time.monotonic() + 5
    while (retry := Listener(url, officer)).response.status_code != 200:
        retry.close()
        assert time.monotonic() < deadline, "a closed stream kept its slot"
        time.sleep(0.1)
    for listener in [*listeners, retry]:
        listener.close()


@pytest.mark.slow
def test_a_shutdown_ends_the_streams(hub: Hub, served: dict[str, Any]) -> None:
    listener = Listener(served["url"] + "/v1/notifications/stream", {"Authorization": f"Bearer {token('admin')}"})
    assert listener.next()["retry"] == "3000"
    started = time.monotonic()
    served["server"].should_exit = True
    while (got := listener.next(timeout=5)) is not None:  # the stream ends, cleanly
        assert got == {"comment": "heartbeat"}
    served["thread"].join(timeout=5)
    assert not served["thread"].is_alive() and time.monotonic() - started < 5
    listener.close()


# ---- the property ---------------------------------------------------------------------------------------

STEPS = st.one_of(
    st.tuples(st.just("respond"), st.sampled_from(["customs", "inspection", "port", "maritime"]),
              st.sampled_from([s for s in AGENCY_STATUSES if s != "pending"]), st.sampled_from(["", "08", "99"])),
    st.tuples(st.just("release"), st.integers(0, 4)),
    st.tuples(st.just("inspect"), st.sampled_from(["pass", "fail"])),
    st.tuples(st.just("amend"), st.integers(0, len(VARIANTS) - 1)),
    st.tuples(st.just("withdraw")),
    st.tuples(st.just("alert"), st.booleans()),
    st.tuples(st.just("clear")),
    st.tuples(st.just("follow")),
    st.tuples(st.just("forget")),
)


def statuses_of(events: list[Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The domain model's overall status at each change, and each (agency, status) an answer changed to."""
    changes: list[str] = []
    decisions: list[tuple[str, str]] = []
    declaration = None
    for event in events:
        agency = getattr(event, "agency", None) if isinstance(
            event, Declaration.AgencyResponded | Declaration.InspectionRecorded) else None
        before = declaration.agencies[agency]["status"] if declaration is not None and agency else None
        declaration = event.mutate(declaration)
        if agency and declaration.agencies[agency]["status"] != before:
            decisions.append((agency, declaration.agencies[agency]["status"]))
        if not changes or declaration.status != changes[-1]:
            changes.append(declaration.status)
    return changes, decisions


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.integers(0, len(VARIANTS) - 1), steps=st.lists(STEPS, max_size=25), batch=st.integers(1, 7))
def test_status_notifications_are_the_domain_models_status_changes(variant: int, steps: list[tuple],
                                                                   batch: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="notifications-"))
    hub = build_hub(Settings(data_dir=directory))
    hub.runner.batch = batch  # batches end anywhere: a declaration's copy carries over between them
    try:
        app = hub.declarations
        ident = app.submit(VARIANTS[variant]).declaration.id
        observed = [app.get(ident).status]
        alerts: list[Any] = []
        for number, step in enumerate(steps):
            try:
                _step(hub, ident, number, step, alerts)
            except (DeclarationError, VersionConflict):
                pass
            observed.append(app.get(ident).status)
        samples.followed(hub)
        rows = [row for row in everything(hub) if row.declaration_id == str(ident)]
        expected, decisions = statuses_of(list(app.events.get(ident)))
        assert [row.status for row in rows if row.kind == feed.STATUS] == expected
        assert [(row.agency, row.status) for row in rows if row.kind == feed.DECISION] == decisions
        # And independently of any replay: every status seen after a command is among the notified changes, in
        # order, and the last notified is the declaration's status now.
        seen = [status for index, status in enumerate(observed) if index == 0 or status != observed[index - 1]]
        notified = iter(expected)
        assert all(any(status == candidate for candidate in notified) for status in seen)
        assert expected[-1] == app.get(ident).status
        assert [row.id for row in rows] == sorted({row.id for row in rows})
    finally:
        hub.close()
        shutil.rmtree(directory, ignore_errors=True)


def _step(hub: Hub, ident: Any, number: int, step: tuple, alerts: list[Any]) -> None:
    app = hub.declarations
    kind = step[0]
    if kind == "respond":
        answer(hub, ident, step[1], step[2], step[3], message=f"m{number}")
    elif kind == "release":
        routed = sorted(app.get(ident).routed_agencies)
        answer(hub, ident, routed[step[1] % len(routed)], "released", "08", message=f"m{number}")
    elif kind == "inspect":
        app.record_inspection(ident, "inspection", f"i{number}", step[1], "2026-12-01T09:00:00Z",
                              answers_version=app.get(ident).version)
    elif kind == "amend":
        app.amend(ident, app.get(ident).version, VARIANTS[step[1]])
    elif kind == "withdraw":
        app.withdraw(ident, "test")
    elif kind == "alert":
        alerts.append(app.raise_alert("container", CONTAINER if step[1] else OTHER_CONTAINER, "tip-off",
                                      "officer:customs").id)
    elif kind == "clear" and alerts:
        app.clear_alert(alerts.pop(0), "officer:customs")
    elif kind == "follow":
        hub.runner.catch_up()
    elif kind == "forget":
        next(f for f in hub.runner.followers if f.name == feed.NAME).forget()
