"""Dead letters: recorded once through the consumers' dead path, read and replayed by admins only, replays
applied once, on SQLite and PostgreSQL; and over a real nats-server (docs/dead-letters.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from adapters.keyring import Registry, fresh_signer
from adapters.xml import MAX_MESSAGE_BYTES, TOO_LARGE
from followers.dispatch import AgencyDispatch
from followers.inbox import Inbox
from followers.runner import Followers
from messaging.broker import headers_of
from messaging.contract import MAX_DELIVER
from messaging.outcomes import APPLIED, DEAD, POISON, UNCHANGED, decide
from projections import dead_letters
from projections.dead_letters import EXCERPT_BYTES, KEPT_BODY_BYTES, DeadLetters
from simulators.agencies import answer
from tradehub import cli
from tradehub.auth import issue_token
from tradehub.bootstrap import Hub, Settings, build_hub, build_inbox

from .conftest import SECRET, Api
from .messaging import EXAMPLES, Outbox

HOSTILE = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
GARBAGE = b"<not-an-answer/>"
CIPHER_KEY = base64.b64encode(b"k" * 32).decode()


class Flaky(Inbox):
    """An inbox that fails for reasons of the hub's own until it is fixed (the store away, a bug since fixed)."""

    broken = True

    def receive_many(self, agency: str, bodies: Sequence[bytes]):
        if self.broken:
            raise RuntimeError("the store went away")
        return super().receive_many(agency, bodies)


def deliver(inbox: Inbox, agency: str, body: bytes, deliveries: int = 1, headers: dict | None = None):
    """One delivery through the consumers' own path (messaging.outcomes.decide): its verdict."""
    [verdict] = asyncio.run(decide(inbox, agency, [body], [deliveries], [headers or {}]))
    return verdict


def customs_answers(hub: Hub) -> tuple[str, list[bytes]]:
    """A goods import dispatched to customs, and customs' answers to it, not yet applied."""
    document = json.loads((EXAMPLES / "goods-import.json").read_text())
    document["reference"] = f"DL-{uuid.uuid4().hex[:12]}"
    ident = str(hub.declarations.submit(document).declaration.id)
    outbox = Outbox()
    Followers(hub.declarations, hub.views, [AgencyDispatch(hub.declarations, "customs", outbox)]).catch_up()
    return ident, [reply.body for message in outbox.sent for reply in answer("customs", message.body,
                                                                             headers_of(message))]


def poisoned(hub: Hub) -> tuple[Flaky, str, bytes]:
    """A valid customs answer dead-lettered as poison, its inbox still broken: (inbox, declaration, body)."""
    inbox = Flaky(hub.declarations, hub.views)
    ident, [body, *_] = customs_answers(hub)
    verdict = deliver(inbox, "customs", body, deliveries=MAX_DELIVER)
    assert (verdict.outcome, verdict.code) == (DEAD, POISON)
    return inbox, ident, body


def only_letter(hub: Hub) -> dict:
    [letter] = DeadLetters(hub.views).listed()[0]
    return letter


# ---- recording ------------------------------------------------------------------------------------------

def test_a_refused_answer_is_recorded_once_however_often_it_is_delivered(hub: Hub):
    inbox = Inbox(hub.declarations, hub.views)
    first = deliver(inbox, "customs", HOSTILE, headers={"Nats-Msg-Id": "agency-1", "Nats-Stream-Sequence": "7"})
    assert first.outcome == DEAD
    again = deliver(inbox, "customs", HOSTILE, deliveries=2)  # a crash before the ack: delivered again
    assert (again.outcome, again.code) == (DEAD, first.code)
    letter = only_letter(hub)
    assert (letter["agency"], letter["code"], letter["reason"]) == ("customs", first.code, first.reason)
    assert letter["deliveries"] == 2 and letter["last_refused_at"] >= letter["refused_at"]
    assert letter["headers"] == {"Nats-Msg-Id": "agency-1", "Nats-Stream-Sequence": "7"}
    assert letter["replay"]["state"] == "none" and letter["body_complete"]
    assert DeadLetters(hub.views).get(letter["id"])["body"] == HOSTILE
    deliver(inbox, "port", HOSTILE)  # the same bytes from another agency are another letter
    assert sorted(row["agency"] for row in DeadLetters(hub.views).listed()[0]) == ["customs", "port"]


def test_the_hubs_own_failure_at_the_last_delivery_is_recorded_as_poison(hub: Hub):
    inbox, ident, body = poisoned(hub)
    letter = only_letter(hub)
    assert (letter["code"], letter["declaration_id"], letter["deliveries"]) == (POISON, None, MAX_DELIVER)
    assert "the store went away" in letter["reason"]
    assert deliver(inbox, "customs", body, deliveries=1) is None  # before the last delivery: a retry, no letter
    assert len(DeadLetters(hub.views).listed()[0]) == 1


def test_a_dead_letter_that_cannot_be_recorded_is_delivered_again_not_settled(hub: Hub):
    class Unrecorded(Inbox):
        def dead_lettered(self, agency, letters):
            raise RuntimeError("views unavailable")

    inbox = Unrecorded(hub.declarations, hub.views)
    assert deliver(inbox, "customs", HOSTILE, deliveries=1) is None
    # At the last delivery the broker would dead-letter it anyway: the consumer's copy in the dead stream is it.
    assert deliver(inbox, "customs", HOSTILE, deliveries=MAX_DELIVER).outcome == DEAD


def test_bodies_are_sealed_under_the_cipher_key_and_bound_to_their_row(hub: Hub):
    sealed = DeadLetters(hub.views, CIPHER_KEY)
    inbox = Inbox(hub.declarations, hub.views, sealed)
    body = b"<crew><name>Ivanova Maria</name><passport>P77123456</passport></crew>"
    assert deliver(inbox, "border", body).outcome == DEAD
    [(stored, digest)] = hub.views.query("SELECT body, digest FROM dead_letters")
    assert b"P77123456" not in base64.b64decode(stored) and "P77123456" not in stored
    assert digest != DeadLetters(hub.views).digest("border", body)  # keyed: a guessed body is not confirmed
    letter = only_letter(hub)
    assert sealed.get(letter["id"])["body"] == body
    assert DeadLetters(hub.views).get(letter["id"])["body"] is None  # no key, or another one: not shown
    deliver(inbox, "border", GARBAGE)
    with hub.views.transaction() as cursor:  # another letter's sealed body copied into this row
        cursor.execute("UPDATE dead_letters SET body = ? WHERE id <> ?", (stored, letter["id"]))
    other = next(row for row in sealed.listed()[0] if row["id"] != letter["id"])
    assert sealed.get(other["id"])["body"] is None


def test_an_oversized_body_keeps_its_start_and_cannot_be_replayed(api: Api):
    assert KEPT_BODY_BYTES >= MAX_MESSAGE_BYTES  # whatever the gate could admit is kept whole
    body = b"<answer>" + b"x" * MAX_MESSAGE_BYTES + b"</answer>"
    verdict = deliver(Inbox(api.hub.declarations, api.hub.views), "customs", body)
    assert verdict.code == TOO_LARGE
    letter = only_letter(api.hub)
    assert (letter["body_bytes"], letter["body_complete"]) == (len(body), False)
    assert DeadLetters(api.hub.views).get(letter["id"])["body"] == body[:EXCERPT_BYTES]
    response = api.client.post(f"/v1/dead-letters/{letter['id']}/replay", headers=api.as_("admin"))
    assert response.status_code == 409 and "only the start" in response.json()["detail"]
    assert only_letter(api.hub)["replay"]["state"] == "none"


# ---- the API: admins only, errors by field -------------------------------------------------------------

@pytest.mark.parametrize("role", [{"role": "trader", "party": "91350200MA2YQ4RK0U"},
                                  {"role": "officer", "agency": "customs"}, {"role": "officer", "agency": "port"}])
def test_only_admins_list_show_or_replay_dead_letters(api: Api, role: dict):
    deliver(Inbox(api.hub.declarations, api.hub.views), "customs", HOSTILE)
    letter_id = only_letter(api.hub)["id"]
    caller = api.as_(**role)
    for method, path in (("GET", "/v1/dead-letters"), ("GET", f"/v1/dead-letters/{letter_id}"),
                         ("POST", f"/v1/dead-letters/{letter_id}/replay"),
                         ("GET", f"/v1/dead-letters/{uuid.uuid4()}"), ("GET", "/v1/dead-letters?limit=0")):
        response = api.client.request(method, path, headers=caller)
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert only_letter(api.hub)["replay"]["state"] == "none"
    assert api.client.get("/v1/dead-letters").status_code == 401


def test_an_admin_sees_the_letter_with_its_body_decoded(api: Api):
    deliver(Inbox(api.hub.declarations, api.hub.views), "customs", "<réponse/>".encode())
    letter_id = only_letter(api.hub)["id"]
    shown = api.client.get(f"/v1/dead-letters/{letter_id}", headers=api.as_("admin")).json()
    assert shown["body"] == "<réponse/>" and base64.b64decode(shown["body_base64"]) == "<réponse/>".encode()
    listed = api.client.get("/v1/dead-letters", headers=api.as_("admin")).json()
    assert [item["id"] for item in listed["items"]] == [letter_id] and "body" not in listed["items"][0]


def test_unknown_and_malformed_ids_are_refused_without_touching_anything(api: Api):
    admin = api.as_("admin")
    missing = uuid.uuid4()
    for method, path in (("GET", f"/v1/dead-letters/{missing}"), ("POST", f"/v1/dead-letters/{missing}/replay")):
        response = api.client.request(method, path, headers=admin)
        assert response.status_code == 404 and str(missing) in response.json()["detail"]
    response = api.client.post("/v1/dead-letters/1%20OR%201=1/replay", headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "path.dead_letter_id"
    assert api.hub.views.query("SELECT COUNT(*) FROM dead_letters") == [(0,)]


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "query.limit"), ("limit=501", "query.limit"), ("limit=many", "query.limit"),
    ("agency=nobody", "query.agency"), ("code=NOT%20A%20CODE", "query.code"), ("code=" + "a" * 65, "query.code"),
    ("state=forgotten", "query.state"), ("cursor=" + "x" * 201, "query.cursor"), ("cursor=bm90IGEgY3Vyc29y", "query.cursor"),
])
def test_bad_query_parameters_get_422_naming_the_field(api: Api, query: str, field: str):
    response = api.client.get(f"/v1/dead-letters?{query}", headers=api.as_("admin"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["path"] for error in response.json()["errors"]] == [field]


def test_the_listing_is_newest_first_filtered_and_paged(api: Api):
    inbox = Inbox(api.hub.declarations, api.hub.views)
    for index in range(7):
        deliver(inbox, ("customs", "port")[index % 2], b"<refused n='%d'/>" % index)
    deliver(inbox, "port", HOSTILE)
    admin = api.as_("admin")
    seen, cursor = [], None
    while True:
        page = api.client.get("/v1/dead-letters", params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                              headers=admin).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len({item["id"] for item in seen}) == 8
    assert [item["refused_at"] for item in seen] == sorted((item["refused_at"] for item in seen), reverse=True)
    port = api.client.get("/v1/dead-letters?agency=port", headers=admin).json()["items"]
    assert len(port) == 4 and {item["agency"] for item in port} == {"port"}
    hostile = seen[0]["code"]
    coded = api.client.get(f"/v1/dead-letters?code={hostile}", headers=admin).json()["items"]
    assert [item["id"] for item in coded] == [seen[0]["id"]]


# ---- replays ----------------------------------------------------------------------------------------------

def test_a_replay_after_the_fix_applies_once_and_a_second_replay_is_refused(api: Api):
    inbox, ident, body = poisoned(api.hub)
    version = api.hub.declarations.get(ident).version
    letter_id = only_letter(api.hub)["id"]
    admin = api.as_("admin")
    assert inbox.replay_requested(["customs"]) == 0  # nothing asked for yet
    inbox.broken = False  # the cause is fixed
    response = api.client.post(f"/v1/dead-letters/{letter_id}/replay", headers=admin)
    assert response.status_code == 202 and response.json()["replay"]["state"] == "requested"
    assert response.headers["location"] == f"/v1/dead-letters/{letter_id}"
    assert inbox.replay_requested(["port"]) == 0  # a worker replays only its own agencies'
    assert inbox.replay_requested(["customs"]) == 1
    replay = only_letter(api.hub)["replay"]
    assert (replay["state"], replay["replays"], replay["code"]) == (APPLIED, 1, None)
    applied = api.hub.declarations.get(ident).version
    assert applied > version
    again = api.client.post(f"/v1/dead-letters/{letter_id}/replay", headers=admin)
    assert again.status_code == 409 and again.json()["type"] == "urn:tradehub:problem:replayed"
    assert inbox.replay_requested(["customs"]) == 0
    assert deliver(inbox, "customs", body).outcome == UNCHANGED  # the broker's copy, delivered late: nothing new
    assert api.hub.declarations.get(ident).version == applied
    inbound = api.hub.views.query("SELECT COUNT(*) FROM agency_messages WHERE direction = 'inbound'")
    assert inbound == [(1,)]


def test_an_answer_signed_by_a_key_not_yet_registered_applies_on_replay_once_the_key_is(api: Api):
    """The issue's own example: customs rotates to a new key before the hub has its certificate. Its answer is
    refused as bad-signature; replayed before the registration it is refused again; replayed after, it applies."""
    hub = api.hub
    inbox = build_inbox(hub)  # the inbox `worker consume` runs: it checks signatures against the registry
    new_key = fresh_signer("customs, its next key")
    ident, [body, *_] = customs_answers(hub)
    signed = new_key.sign(body)
    version = hub.declarations.get(ident).version
    assert (deliver(inbox, "customs", signed).outcome, only_letter(hub)["code"]) == (DEAD, "bad-signature")
    admin = api.as_("admin")
    letter_id = only_letter(hub)["id"]
    assert api.client.post(f"/v1/dead-letters/{letter_id}/replay", headers=admin).status_code == 202
    assert inbox.replay_requested(["customs"]) == 1
    assert (only_letter(hub)["replay"]["state"], only_letter(hub)["replay"]["code"]) == (DEAD, "bad-signature")
    assert hub.declarations.get(ident).version == version  # still nothing applied
    Registry(hub.settings.keys_dir).register("customs", new_key.certificate.public_bytes(Encoding.PEM))
    assert api.client.post(f"/v1/dead-letters/{letter_id}/replay", headers=admin).status_code == 202
    assert inbox.replay_requested(["customs"]) == 1
    assert only_letter(hub)["replay"]["state"] == APPLIED
    assert hub.declarations.get(ident).version > version
    assert deliver(inbox, "customs", signed).outcome == UNCHANGED  # the agency sends it again: nothing new


def test_a_replay_refused_again_says_why_on_the_same_letter_and_may_be_asked_again(api: Api):
    inbox = Inbox(api.hub.declarations, api.hub.views)
    deliver(inbox, "customs", GARBAGE)
    letter = only_letter(api.hub)
    admin = api.as_("admin")
    assert api.client.post(f"/v1/dead-letters/{letter['id']}/replay", headers=admin).status_code == 202
    assert inbox.replay_requested(["customs"]) == 1
    after = only_letter(api.hub)
    assert after["id"] == letter["id"] and after["code"] == letter["code"]  # still one letter, first refusal kept
    assert (after["replay"]["state"], after["replay"]["code"]) == (DEAD, letter["code"])
    assert api.client.post(f"/v1/dead-letters/{letter['id']}/replay", headers=admin).status_code == 202
    assert inbox.replay_requested(["customs"]) == 1
    assert only_letter(api.hub)["replay"]["replays"] == 2


def test_a_replay_request_cannot_inject_a_body(api: Api):
    inbox = Inbox(api.hub.declarations, api.hub.views)
    ident, [valid, *_] = customs_answers(api.hub)
    version = api.hub.declarations.get(ident).version
    deliver(inbox, "customs", GARBAGE)
    letter_id = only_letter(api.hub)["id"]
    response = api.client.post(f"/v1/dead-letters/{letter_id}/replay", content=valid,
                               headers={**api.as_("admin"), "Content-Type": "application/xml"})
    assert response.status_code == 202
    inbox.replay_requested(["customs"])
    assert only_letter(api.hub)["replay"]["state"] == DEAD  # the stored garbage was replayed, not the upload
    assert api.hub.declarations.get(ident).version == version


def test_racing_replay_requests_and_racing_workers_run_a_replay_once(api: Api):
    inbox, ident, _ = poisoned(api.hub)
    inbox.broken = False
    letter_id = only_letter(api.hub)["id"]
    store = DeadLetters(api.hub.views)
    start = threading.Barrier(8)
    outcomes: list = []

    def ask() -> None:
        start.wait()
        outcomes.append(store.request_replay(letter_id, "admin:admin"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(outcome.requested for outcome in outcomes) == 1
    assert {outcome.state for outcome in outcomes} <= {"requested", "running", APPLIED}
    workers = [Flaky(api.hub.declarations, api.hub.views) for _ in range(4)]
    for worker in workers:
        worker.broken = False
    start = threading.Barrier(4)
    ran: list[int] = []

    def work(worker: Inbox) -> None:
        start.wait()
        ran.append(worker.replay_requested(["customs"]))

    threads = [threading.Thread(target=work, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(ran) == 1
    assert only_letter(api.hub)["replay"]["replays"] == 1
    assert api.hub.views.query("SELECT COUNT(*) FROM agency_messages WHERE direction = 'inbound'") == [(1,)]


def test_racing_replay_requests_over_http_are_both_accepted_and_run_once(api: Api):
    deliver(Inbox(api.hub.declarations, api.hub.views), "customs", GARBAGE)
    letter_id = only_letter(api.hub)["id"]
    start, statuses = threading.Barrier(2), []

    def click() -> None:
        start.wait()
        statuses.append(api.client.post(f"/v1/dead-letters/{letter_id}/replay", headers=api.as_("admin")).status_code)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202, 202]
    assert Inbox(api.hub.declarations, api.hub.views).replay_requested(["customs"]) == 1
    assert only_letter(api.hub)["replay"]["replays"] == 1


def test_a_replay_whose_worker_died_is_taken_again_after_its_lease(hub: Hub):
    inbox, _, _ = poisoned(hub)
    inbox.broken = False
    store = DeadLetters(hub.views)
    letter_id = only_letter(hub)["id"]
    store.request_replay(letter_id, "admin:admin")
    assert store.claim(letter_id) is not None  # taken, then the worker dies
    assert inbox.replay_requested(["customs"]) == 0  # still within its lease
    with hub.views.transaction() as cursor:
        cursor.execute("UPDATE dead_letters SET replay_started_at = '2000-01-01T00:00:00.000000Z'")
    assert inbox.replay_requested(["customs"]) == 1
    assert only_letter(hub)["replay"]["state"] == APPLIED


# ---- operations and the command line -------------------------------------------------------------------

def test_healthz_and_metrics_show_dead_letters_and_dispatch_backlog(api: Api):
    inbox = Inbox(api.hub.declarations, api.hub.views)
    deliver(inbox, "customs", GARBAGE)
    deliver(inbox, "customs", HOSTILE)
    letter_id = only_letter_of(api.hub, GARBAGE)
    DeadLetters(api.hub.views).request_replay(letter_id, "admin:admin")
    customs_answers(api.hub)  # customs' dispatch has a tracked position; one more declaration puts it behind
    api.hub.declarations.submit({**json.loads((EXAMPLES / "goods-import.json").read_text()), "reference": "DL-LATER"})
    health = api.client.get("/healthz").json()
    assert health["dead_letters"] == {"customs": {"total": 2, "awaiting_replay": 1}}
    assert health["dispatch_backlog"]["customs"] > 0
    metrics = api.client.get("/metrics").text
    assert 'tradehub_dead_letters{agency="customs"} 2.0' in metrics
    assert 'tradehub_dead_letters_awaiting_replay{agency="customs"} 1.0' in metrics
    assert f'tradehub_dispatch_backlog_events{{agency="customs"}} {float(health["dispatch_backlog"]["customs"])}' \
        in metrics


def only_letter_of(hub: Hub, body: bytes) -> str:
    [(letter_id,)] = hub.views.query("SELECT id FROM dead_letters WHERE digest = ?",
                                     (DeadLetters(hub.views).digest("customs", body),))
    return letter_id


def test_the_cli_lists_shows_and_replays_through_the_api(api: Api, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]):
    from tradehub import client

    monkeypatch.setattr(client, "_client", lambda url, token, concurrency=4: type(api.client)(
        api.client.app, headers={"Authorization": f"Bearer {token}"}))
    deliver(Inbox(api.hub.declarations, api.hub.views), "customs", GARBAGE)
    letter_id = only_letter(api.hub)["id"]
    admin = api.as_("admin")["Authorization"].removeprefix("Bearer ")
    assert cli.main(["dead-letters", "list", "--token", admin, "--agency", "customs"]) == 0
    listed = capsys.readouterr().out
    assert letter_id in listed and "customs" in listed
    assert cli.main(["dead-letters", "show", letter_id, "--token", admin]) == 0
    shown = capsys.readouterr().out
    assert "<not-an-answer/>" in shown and "replay      none" in shown
    assert cli.main(["dead-letters", "replay", letter_id, "--token", admin]) == 0
    assert "requested" in capsys.readouterr().out
    officer = api.as_("officer", agency="customs")["Authorization"].removeprefix("Bearer ")
    assert cli.main(["dead-letters", "show", letter_id, "--token", officer]) == 2
    assert "403 Admins only" in capsys.readouterr().err


# ---- any sequence of deliveries, redeliveries, fixes and replays ------------------------------------------

class DeadLetterLife(RuleBasedStateMachine):
    """Deliveries, redeliveries, the hub failing and being fixed, replay requests and workers, in any order:
    each refused message is one letter, every replay's outcome is recorded, nothing is applied twice."""

    @initialize()
    def start(self) -> None:
        import tempfile

        self.directory = tempfile.TemporaryDirectory()
        self.hub = build_hub(Settings(data_dir=Path(self.directory.name), secret=SECRET))
        self.inbox = Flaky(self.hub.declarations, self.hub.views)
        self.inbox.broken = False
        self.ident, answers = customs_answers(self.hub)
        self.bodies = [answers[0], GARBAGE, HOSTILE]
        self.first = self.hub.declarations.get(self.ident).version
        self.applied_at: int | None = None  # the version once the answer first applied
        self.refused: set[bytes] = set()
        self.claims = 0

    @rule(which=st.integers(0, 2), deliveries=st.integers(1, MAX_DELIVER))
    def delivered(self, which: int, deliveries: int) -> None:
        verdict = deliver(self.inbox, "customs", self.bodies[which], deliveries)
        if verdict is not None and verdict.outcome == DEAD:
            self.refused.add(self.bodies[which])
        self._note_applied()

    @rule(broken=st.booleans())
    def hub_trouble(self, broken: bool) -> None:
        self.inbox.broken = broken

    @rule(which=st.integers(0, 7))
    def replay_asked(self, which: int) -> None:
        ids = sorted(letter["id"] for letter in DeadLetters(self.hub.views).listed(limit=500)[0])
        if ids:
            DeadLetters(self.hub.views).request_replay(ids[which % len(ids)], "admin:admin")

    @rule()
    def worker_ran(self) -> None:
        self.claims += self.inbox.replay_requested(["customs"])
        self._note_applied()

    def _note_applied(self) -> None:
        version = self.hub.declarations.get(self.ident).version
        if version != self.first and self.applied_at is None:
            self.applied_at = version

    @invariant()
    def each_refused_message_is_one_letter(self) -> None:
        letters = DeadLetters(self.hub.views).listed(limit=500)[0]
        assert len(letters) == len(self.refused)
        assert sum(letter["replay"]["replays"] for letter in letters) == self.claims
        for letter in letters:
            assert letter["replay"]["state"] != "running"  # every claimed replay's outcome is recorded

    @invariant()
    def nothing_is_applied_twice(self) -> None:
        version = self.hub.declarations.get(self.ident).version
        assert version == (self.first if self.applied_at is None else self.applied_at)
        inbound = self.hub.views.query("SELECT COUNT(*) FROM agency_messages WHERE direction = 'inbound'")
        assert inbound == [(0 if self.applied_at is None else 1,)]

    def teardown(self) -> None:
        self.hub.close()
        self.directory.cleanup()


TestDeadLetterLife = DeadLetterLife.TestCase
TestDeadLetterLife.settings = settings(max_examples=12, stateful_step_count=12, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])


def test_the_replay_states_are_the_documented_ones():
    text = (Path(__file__).resolve().parents[1] / "docs" / "dead-letters.md").read_text()
    for state in dead_letters.REPLAY_STATES:
        assert f"`{state}`" in text


# ---- over a real nats-server ------------------------------------------------------------------------------

@pytest.mark.broker
@pytest.mark.slow
def test_over_nats_a_refused_answer_is_listed_and_a_replay_after_the_fix_applies(tmp_path: Path):
    from fastapi.testclient import TestClient

    from messaging.broker import DEAD_STREAM, ensure_streams, inbound_subject
    from messaging.consumers import consume
    from tradehub.api.app import create_app

    from .test_broker_flow import broker_call, publish, started_nats, stream_messages, wait_for

    nats = started_nats(tmp_path / "jetstream")
    hub = build_hub(Settings(data_dir=tmp_path, secret=SECRET, broker_url=nats.url))
    stop = threading.Event()
    worker = None
    try:
        inbox = Flaky(hub.declarations, hub.views)
        ident, [body, *_] = customs_answers(hub)
        version = hub.declarations.get(ident).version
        broker_call(nats.url, lambda client: ensure_streams(client.jetstream()))
        publish(nats.url, inbound_subject("customs"), body, "customs-answer-1")
        worker = threading.Thread(target=lambda: asyncio.run(consume(nats.url, inbox, ["customs"], stop,
                                                                     retry_delay=0.1)))
        worker.start()
        api = TestClient(create_app(hub))
        admin = {"Authorization": f"Bearer {issue_token(SECRET, 'admin')}"}

        def listed() -> dict[str, dict]:
            return {item["code"]: item for item in api.get("/v1/dead-letters", headers=admin).json()["items"]}

        wait_for(lambda: set(listed()) == {POISON})
        poison = listed()[POISON]
        assert poison["headers"]["Nats-Msg-Id"] == "customs-answer-1" and poison["deliveries"] == MAX_DELIVER
        assert hub.declarations.get(ident).version == version
        inbox.broken = False  # the cause is fixed
        publish(nats.url, inbound_subject("customs"), HOSTILE, "customs-hostile-1")
        wait_for(lambda: set(listed()) == {POISON, "doctype"})
        assert len(stream_messages(nats.url, DEAD_STREAM)) == 2  # the broker's copies, as before
        assert api.post(f"/v1/dead-letters/{poison['id']}/replay", headers=admin).status_code == 202
        wait_for(lambda: listed()[POISON]["replay"]["state"] == APPLIED)
        assert hub.declarations.get(ident).version > version
        assert api.get("/healthz").json()["dead_letters"] == {"customs": {"total": 2, "awaiting_replay": 0}}
    finally:
        stop.set()
        if worker is not None:
            worker.join(timeout=15)
        hub.close()
        nats.stop()
