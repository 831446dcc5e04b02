"""I5 and I6 (docs/enforcement-visibility.md): enforcement stays with officers, and an alert belongs to whoever
raised it, over every route and page, on SQLite and PostgreSQL; and the redaction rule itself, as properties."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.notices import agency_alert
from followers.dispatch import dispatches
from followers.inbox import Inbox
from followers.runner import Followers
from simulators.agencies import AGENCIES
from tradehub import visibility
from tradehub.auth import Caller
from tradehub.bootstrap import Hub

from . import samples
from .conftest import Api
from .messaging import Outbox
from .test_web import Browser

TRADER = Caller("trader", f"trader:{samples.TRADER_A}", party=samples.TRADER_A)
OFFICER = Caller("officer", "officer:customs", agency="customs")
ADMIN = Caller("admin", "admin:admin")
CONSIGNOR = {"id": samples.TRADER_B, "name": "B Trading", "country": "CN"}
WATCHED = "consignor named in a smuggling inquiry"
PORT_REASON = "vessel on the port's watch list"


class Held:
    """Trader A's declaration naming party B as consignor, held by an officer's alert on B and a port's own alert
    on the ship, with a third alert, raised by an admin, held and lifted; its alert notices dispatched."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        document = samples.goods("HELD-0001", consignor=CONSIGNOR)
        self.id = str(hub.declarations.submit(document).declaration.id)
        self.dispatch = Followers(hub.declarations, hub.views, dispatches(hub.declarations, AGENCIES, Outbox()))
        self.catch_up()
        self.party = hub.declarations.raise_alert("party", samples.TRADER_B, WATCHED, "officer:customs")
        self.port_message = "b" * 32
        body = agency_alert({"alert_id": "P-1", "subject_kind": "vessel", "subject": "9321483", "raised_by": "port",
                             "raised_at": "2026-12-01T08:00:00+00:00", "reason": PORT_REASON},
                            self.port_message, self.id, 1, datetime(2026, 12, 1, 8, tzinfo=UTC))
        assert Inbox(hub.declarations, hub.views).receive("port", body).outcome == "applied"
        self.lifted = hub.declarations.raise_alert("container", "HLXU8000014", "seal broken", "admin:admin")
        self.catch_up()
        hub.declarations.clear_alert(self.lifted.id, "admin:admin")
        self.catch_up()
        [self.port] = [alert for alert in hub.views.query("SELECT id FROM alerts WHERE raised_by = 'agency:port'")]
        self.port_id = self.port[0]

    def catch_up(self) -> None:
        for _ in range(2):
            self.hub.runner.catch_up()
            self.dispatch.catch_up()

    def secrets(self) -> list[str]:
        """What a trader must never read: the alerts' ids, reasons, subjects as alerts name them, raisers."""
        return [str(self.party.id), self.port_id, str(self.lifted.id), WATCHED, PORT_REASON, "seal broken",
                "officer:customs", "agency:port", "admin:admin", f"party {samples.TRADER_B}", "vessel 9321483",
                "AlertNotice", "alert-notice", "alert-cleared-notice", "alert_id"]


def without_documents(body: Any) -> Any:
    """The body without the declaration's document, which the trader wrote itself (party B is its consignor)."""
    if isinstance(body, dict):
        return {key: without_documents(value) for key, value in body.items() if key != "document"}
    if isinstance(body, list):
        return [without_documents(value) for value in body]
    return body


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


# ---- I5 over the API -------------------------------------------------------------------------------

def test_a_trader_sees_held_for_control_since_when_and_nothing_of_the_alerts_on_any_route(api: Api):
    held = Held(api.hub)
    trader = api.as_("trader", party=samples.TRADER_A)
    path = f"/v1/declarations/{held.id}"
    declaration = api.client.get(path, headers=trader).json()
    assert declaration["status"] == "held" and declaration["holds"] == []
    assert declaration["hold"]["note"] == "held for control"
    events = api.client.get(f"{path}/history", headers=trader).json()["events"]
    [first_hold] = [event for event in events if event["type"] == "HoldPlaced"][:1]
    assert declaration["hold"]["since"] == first_hold["time"]
    assert first_hold == {"type": "HoldPlaced", "version": first_hold["version"], "time": first_hold["time"],
                          "note": "held for control"}
    assert {event["type"] for event in events} >= {"HoldPlaced", "HoldLifted"}
    messages = api.client.get(f"{path}/messages", headers=trader).json()["messages"]
    assert messages and not [row for row in messages if "alert" in row["type"]]
    exchange = api.client.get(f"/v1/views/exchange/{held.id}", headers=trader).json()
    listed = api.client.get("/v1/declarations", headers=trader).json()
    for body in (declaration, events, messages, exchange, listed):
        assert leaks(json.dumps(without_documents(body)), held.secrets()) == [], body
    for alert_id in (str(held.party.id), held.port_id, "0f6f1d8e-3c52-4b7a-8e21-6a4c2d9b7e13"):
        # Existing or not, an alert is not there for a trader: its id teaches nothing.
        assert api.client.post(f"/v1/alerts/{alert_id}/clearance", headers=trader).status_code == 404
    assert api.hub.declarations.get_alert(held.party.id).status == "open"


def test_officers_and_admins_still_see_every_detail_of_enforcement(api: Api):
    held = Held(api.hub)
    path = f"/v1/declarations/{held.id}"
    for headers in (api.as_("admin"), api.as_("officer", agency="customs")):
        declaration = api.client.get(path, headers=headers).json()
        assert declaration["holds"] == sorted([str(held.party.id), held.port_id])
        assert declaration["hold"]["note"] == "held for control" and declaration["hold"]["since"]
        events = api.client.get(f"{path}/history", headers=headers).json()["events"]
        placed = [event for event in events if event["type"] == "HoldPlaced"]
        assert {event["alert"]["reason"] for event in placed} == {WATCHED, PORT_REASON, "seal broken"}
        types = {row["type"] for row in api.client.get(f"{path}/messages", headers=headers).json()["messages"]}
        assert {"alert-notice", "alert-cleared-notice"} <= types
        flows = api.client.get(f"/v1/views/exchange/{held.id}", headers=headers).json()["flows"]
        assert {flow["type"] for flow in flows} >= {"alert-notice", "alert-cleared-notice"}
    admin_types = {row["type"] for row in api.client.get(f"{path}/messages", headers=api.as_("admin")).json()["messages"]}
    assert any(kind.startswith("alert ") for kind in admin_types)  # the port's own alert, as received


def test_which_subject_an_alert_is_on_cannot_be_told_from_what_a_trader_sees(api: Api):
    """Naming a party as consignor and looking at the held declaration says nothing of which alert holds it."""
    on_party = str(api.hub.declarations.submit(samples.goods("PROBE-1", consignor=CONSIGNOR)).declaration.id)
    on_ship = str(api.hub.declarations.submit(samples.goods(
        "PROBE-2", transport=samples.goods()["transport"] | {"vessel": {"imo": "9074729", "name": "OTHER",
                                                                         "voyage": "1W"}})).declaration.id)
    api.hub.declarations.raise_alert("party", samples.TRADER_B, WATCHED, "officer:customs")
    api.hub.declarations.raise_alert("vessel", "9074729", "another reason", "officer:port")
    api.sync()
    api.sync()
    trader = api.as_("trader", party=samples.TRADER_A)

    def seen(ident: str) -> list[Any]:
        history = api.client.get(f"/v1/declarations/{ident}/history", headers=trader).json()["events"]
        resource = api.client.get(f"/v1/declarations/{ident}", headers=trader).json()
        return [[{key: value for key, value in event.items() if key not in ("time", "document")} for event in history
                 if event["type"].startswith("Hold")], resource["status"], resource["holds"], resource["hold"]["note"]]

    assert seen(on_party) == seen(on_ship) == [[{"type": "HoldPlaced", "version": 2, "note": "held for control"}],
                                               "held", [], "held for control"]


# ---- I5 on the pages ---------------------------------------------------------------------------------

def test_a_traders_declaration_page_and_board_show_held_for_control_and_nothing_of_the_alerts(hub: Hub):
    held = Held(hub)
    trader = Browser(hub).sign_in("trader", party=samples.TRADER_A)
    page = trader.get(f"/declarations/{held.id}").text
    assert '<span class="chip s-held" title="held for control">held</span>' in page
    assert "Held for control since" in page
    document = page[page.index('id="document"'):]
    assert leaks(page.replace(document, ""), held.secrets()) == []
    board = trader.get("/board").text
    assert '<tr class="held">' in board and "held for control" in board
    assert leaks(board, held.secrets()) == []


def test_an_officers_board_shows_a_held_row_as_held_with_its_reasons_linked_to_their_alerts(hub: Hub):
    held = Held(hub)
    board = Browser(hub).sign_in("officer", agency="customs").get("/board").text
    row = re.search(r'<tr class="held">.*?</tr>', board, re.S)
    assert row is not None and "s-released" not in row.group(0).split("</td>")[3]  # its status cell
    assert f'<a class="hold" href="/alerts#alert-{held.party.id}">{WATCHED}</a>' in row.group(0)
    assert f'href="/alerts#alert-{held.port_id}"' in row.group(0)
    page = Browser(hub).sign_in("officer", agency="customs").get(f"/declarations/{held.id}").text
    assert f'<a class="hold" href="/alerts#alert-{held.party.id}">{WATCHED}</a>' in page
    assert "alert-notice" in page and WATCHED in page[page.index('id="history"'):]


# ---- I6: an alert belongs to whoever raised it ---------------------------------------------------------

# raiser -> caller -> status of POST /v1/alerts/{id}/clearance. The declaration is routed to customs and port.
CLEARANCE = {
    "officer:customs": {"customs": 200, "port": 403, "border": 404, "trader": 404, "admin": 200},
    "agency:port": {"customs": 403, "port": 200, "border": 404, "trader": 404, "admin": 200},
    "admin:admin": {"customs": 403, "port": 403, "border": 404, "trader": 404, "admin": 200},
    "officer:border": {"customs": 404, "port": 404, "border": 200, "trader": 404, "admin": 200},
}


def headers_of(api: Api, caller: str) -> dict[str, str]:
    if caller == "admin":
        return api.as_("admin")
    if caller == "trader":
        return api.as_("trader", party=samples.TRADER_A)
    return api.as_("officer", agency=caller)


@pytest.mark.parametrize("raiser", list(CLEARANCE))
def test_only_the_raisers_agency_or_an_admin_clears_an_alert(api: Api, raiser: str):
    api.hub.declarations.submit(samples.goods("OWNED-1"))
    # The border's alert is on a ship no declaration involves: it holds nothing customs or port could see.
    subject = ("vessel", "9074729") if raiser == "officer:border" else ("container", "HLXU8000014")
    alert = api.hub.declarations.raise_alert(*subject, "x-ray anomaly", raiser)
    api.sync()
    api.sync()
    for caller, expected in sorted(CLEARANCE[raiser].items(), key=lambda item: item[1] == 200):
        response = api.client.post(f"/v1/alerts/{alert.id}/clearance", headers=headers_of(api, caller))
        assert response.status_code == expected, (caller, response.text)
        if expected != 200:
            assert api.hub.declarations.get_alert(alert.id).status == "open"  # a refusal changes nothing
    assert api.hub.declarations.get_alert(alert.id).status == "cleared"


def test_the_alerts_page_offers_clearing_only_to_the_raisers_agency_and_refuses_the_others(hub: Hub):
    hub.declarations.submit(samples.goods("OWNED-1"))
    alert = hub.declarations.raise_alert("container", "HLXU8000014", "x-ray anomaly", "officer:customs")
    hub.runner.catch_up()
    hub.runner.catch_up()
    button = f'action="/alerts/{alert.id}/clear"'
    port = Browser(hub).sign_in("officer", agency="port")
    assert "x-ray anomaly" in port.get("/alerts").text and button not in port.get("/alerts").text
    assert port.post(f"/alerts/{alert.id}/clear").status_code == 403
    assert Browser(hub).sign_in("officer", agency="border").post(f"/alerts/{alert.id}/clear").status_code == 404
    assert Browser(hub).sign_in("trader", party=samples.TRADER_A).post(f"/alerts/{alert.id}/clear").status_code == 404
    assert hub.declarations.get_alert(alert.id).status == "open"
    customs = Browser(hub).sign_in("officer", agency="customs")
    assert button in customs.get("/alerts").text
    assert customs.post(f"/alerts/{alert.id}/clear").status_code == 303
    assert hub.declarations.get_alert(alert.id).status == "cleared"


def test_who_may_see_an_alert_is_the_alerts_views_rule(api: Api):
    from projections.alerts import alerts_view

    api.hub.declarations.submit(samples.goods("OWNED-1"))
    raised = [api.hub.declarations.raise_alert(kind, subject, "r", raiser) for kind, subject, raiser in (
        ("container", "HLXU8000014", "officer:customs"), ("vessel", "9074729", "officer:border"),
        ("vessel", "9321483", "admin:admin"), ("party", samples.TRADER_B, "agency:maritime"))]
    api.sync()
    api.sync()
    for agency in ("customs", "port", "border", "maritime", "inspection"):
        who = Caller("officer", f"officer:{agency}", agency=agency)
        listed = {alert["id"] for alert in alerts_view(api.hub.views, agency)["alerts"]}
        seen = {str(alert.id) for alert in raised
                if visibility.may_see_alert(who, api.hub.views, str(alert.id), alert.raised_by)}
        assert seen == listed, agency


# ---- the rule itself, as properties ------------------------------------------------------------------

ids = st.uuids().map(str)
# Marked, so that a secret can never be a word the redacted history says anyway ("routes", say).
words = st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=20).map(
    lambda word: f"secret-{word}")


@st.composite
def histories(draw: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """A declaration's events with holds placed and lifted and gate-out revoked among its answers; and its secrets."""
    events: list[dict[str, Any]] = [{"type": "Submitted", "version": 1, "time": "2026-12-01T08:00:00+00:00",
                                     "document": {"reference": "R"}, "routes": {"customs": "always"}}]
    secrets: list[str] = []
    for kind in draw(st.lists(st.sampled_from(["HoldPlaced", "HoldLifted", "GateOutRevoked", "AgencyResponded",
                                                "GateOutAllowed"]), max_size=12)):
        event: dict[str, Any] = {"type": kind, "version": len(events) + 1,
                                 "time": f"2026-12-01T08:{len(events):02d}:00+00:00"}
        if kind.startswith("Hold"):
            alert_id, subject, reason, raiser = draw(ids), draw(words), draw(words), "officer:" + draw(words)
            secrets += [alert_id, subject, reason, raiser]
            event["alert_id"] = alert_id
            if kind == "HoldPlaced":
                event |= {"subject": f"party {subject}", "alert": {"alert_id": alert_id, "subject": subject,
                                                                   "reason": reason, "raised_by": raiser}}
        elif kind == "GateOutRevoked":
            reason = draw(words)
            secrets.append(reason)
            event["reason"] = f"held for control: {reason}"
        elif kind == "AgencyResponded":
            event |= {"agency": "customs", "message_id": draw(ids), "status": "released", "code": "08", "text": ""}
        events.append(event)
    return events, secrets


@settings(max_examples=200, deadline=None)
@given(histories())
def test_a_traders_history_never_holds_an_alerts_id_subject_reason_or_raiser(history: Any):
    events, secrets = history
    shown = visibility.history_for(TRADER, events)
    assert leaks(json.dumps(shown), secrets) == []
    assert [(e["type"], e["version"], e["time"]) for e in shown] == [(e["type"], e["version"], e["time"])
                                                                      for e in events]
    for before, after in zip(events, shown, strict=True):
        if before["type"] in visibility.ENFORCEMENT_EVENTS:
            assert set(after) == {"type", "version", "time", "note"}
        else:
            assert after == before
    assert visibility.history_for(ADMIN, events) == events  # the stored events keep everything
    assert visibility.history_for(OFFICER, events) == events


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["outbound", "inbound"]), st.sampled_from(AGENCIES), st.one_of(
    st.sampled_from(["alert-notice", "alert-cleared-notice", "release-notice", "release-revocation",
                     "recognition-notice", "declaration", "reply 08", "reply RNR"]),
    st.builds(lambda kind, subject: f"alert {kind} {subject}", st.sampled_from(["party", "vessel", "container"]),
              words))), max_size=15))
def test_a_trader_reads_every_message_but_the_alert_notices(rows: list[tuple[str, str, str]]):
    messages = [{"direction": direction, "agency": agency, "type": kind} for direction, agency, kind in rows]
    shown = visibility.messages_for(TRADER, messages)
    assert shown == [message for message in messages if not message["type"].startswith("alert")]
    assert visibility.messages_for(ADMIN, messages) == messages
    assert visibility.messages_for(OFFICER, messages) == [m for m in messages if m["agency"] == "customs"]


def test_a_release_revocation_stays_readable_and_its_events_reason_does_not():
    assert not visibility.is_enforcement_message("release-revocation")
    revoked = {"type": "GateOutRevoked", "version": 7, "time": "t", "reason": "held for control"}
    assert visibility.event_for(TRADER, revoked) == {"type": "GateOutRevoked", "version": 7, "time": "t",
                                                     "note": "gate-out revoked"}


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=20))
def test_held_since_is_when_the_standing_holds_began_without_a_break(steps: list[tuple[bool, int]]):
    events, standing, since = [], set(), None
    for number, (placing, alert) in enumerate(steps, start=1):
        if placing == (alert in standing):
            continue  # the aggregate places a hold once and lifts only a standing one
        moment = f"t{number:03d}"
        events.append({"type": "HoldPlaced" if placing else "HoldLifted", "version": number, "time": moment,
                       "alert_id": str(alert)})
        since = (since or moment) if placing else (since if len(standing) > 1 else None)
        (standing.add if placing else standing.discard)(alert)
    assert visibility.held_since(events) == since


@pytest.mark.parametrize("raised_by, owner", [("officer:customs", "customs"), ("agency:port", "port"),
                                              ("admin:admin", None), ("trader:x", None), ("customs", None)])
def test_an_alert_belongs_to_the_agency_that_raised_it(raised_by: str, owner: str | None):
    assert visibility.alert_owner(raised_by) == owner
    assert visibility.may_clear(ADMIN, raised_by)
    assert visibility.may_clear(OFFICER, raised_by) == (owner == "customs")
    assert not visibility.may_clear(TRADER, raised_by)
