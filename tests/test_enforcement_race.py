"""I3 (docs/lifecycle.md): a hold cannot lose a race, over the real followers on both stores.

An officer raises an alert on a container while customs releases the goods
that use it: one after the other in both orders, and at the same moment from
two threads, many times, with the projections runner following the log on
its own thread as `tradehub worker project` does. Whatever the order the log
ends up with, an alert that came before the release never lets the goods out:
no release notice (`GateOutAllowed`) is ever recorded while it stands, and the
declaration is held. One that came after it revokes the gate-out if it was
allowed. Clearing the alert lets the goods out again.
"""

from __future__ import annotations

import threading
import time

import pytest
from stdnum import iso6346

from hub.declarations import Alert, Declaration
from tradehub.bootstrap import Hub

from . import samples

pytestmark = pytest.mark.slow

ROUNDS = 8  # of each order
QUIET = 30.0  # seconds the followers have to settle each round


def container(number: int) -> str:
    serial = f"XRAU{number:06d}"
    return serial + iso6346.calc_check_digit(serial)


def settled(hub: Hub) -> None:
    """Wait until the followers have applied the whole log, and it stops growing."""
    deadline = time.monotonic() + QUIET
    while time.monotonic() < deadline:
        head = hub.declarations.recorder.max_notification_id() or 0
        if max(hub.runner.lag(head).values()) == 0:
            time.sleep(0.3)  # what they wrote meanwhile (a hold, a gate-out) is taken by the next round
            if (hub.declarations.recorder.max_notification_id() or 0) == head:
                return
        time.sleep(0.05)
    raise AssertionError(f"the followers did not settle: {hub.runner.lag()}")


def positions(hub: Hub, declaration_id, alert_id) -> tuple[int, int]:
    """Where the alert was raised, and where customs released the declaration, in the log."""
    raised = released = 0
    for notification in hub.declarations.recorder.select_notifications(start=1, limit=1_000_000):
        if notification.originator_id == alert_id and notification.topic.endswith("Alert.Raised"):
            raised = notification.id
        elif notification.originator_id == declaration_id and notification.topic.endswith("AgencyResponded"):
            event = hub.declarations.mapper.to_domain_event(notification)
            if event.status == "released":
                released = notification.id
    return raised, released


def alert_and_release(app, ident, box: str, number: int, order: str) -> Alert:
    """Raise an alert on `box` and let customs release `ident`: in `order`, or at the same moment."""
    raised: list[Alert] = []

    def raise_alert() -> None:
        raised.append(app.raise_alert("container", box, "tip-off", "officer:customs"))

    def release() -> None:
        app.record_response(ident, "customs", f"c-{number}", "released", "2026-12-01T10:00:00Z", answers_version=1)

    if order == "racing":
        start = threading.Barrier(2)
        threads = [threading.Thread(target=lambda step=step: (start.wait(), step())) for step in (raise_alert, release)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for step in ((raise_alert, release) if order == "alert first" else (release, raise_alert)):
            step()
            time.sleep(0.02 * (number % 3))  # sometimes the follower runs in between, sometimes not
    return raised[0]


def test_an_alert_before_the_release_in_log_order_always_holds_and_one_after_it_revokes(hub: Hub):
    app = hub.declarations
    hub.runner.start()
    orders = ["alert first", "release first", "racing"] * ROUNDS
    seen = {"alert first": 0, "release first": 0}
    try:
        for number, order in enumerate(orders):
            box = container(number)
            ident = app.submit(samples.goods(reference=f"RACE-{number}", containers=[box])).declaration.id
            settled(hub)
            alert = alert_and_release(app, ident, box, number, order)
            settled(hub)

            raised, released = positions(hub, ident, alert.id)
            seen["alert first" if raised < released else "release first"] += 1
            declaration = app.get(ident)
            kinds = [event["type"] for event in app.history(ident)]
            assert declaration.status == "held" and not declaration.gate_out, (order, kinds)
            if raised < released:
                assert "GateOutAllowed" not in kinds, f"goods let out under an alert that came first: {kinds}"
            elif "GateOutAllowed" in kinds:
                assert kinds.index("GateOutRevoked") > kinds.index("GateOutAllowed"), kinds

            app.clear_alert(alert.id, "officer:customs")
            settled(hub)
            assert app.get(ident).gate_out and app.get(ident).status == "in_progress"
            assert app.history(ident)[-1]["type"] == Declaration.GateOutAllowed.__name__
    finally:
        hub.runner.stop()
    assert seen["alert first"] >= ROUNDS and seen["release first"] >= ROUNDS, seen
