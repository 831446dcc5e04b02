"""Dispatch isolation as properties: random submissions, amendments, withdrawals, refusals, recoveries, broker
outages and restarts, checked against what the log says each agency must get (docs/dispatch.md, D1-D4)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adapters.outbound import messages_for
from followers.dispatch import AgencyDispatch, Changes
from followers.runner import Followers
from hub.declarations import DeclarationError
from tradehub.bootstrap import Settings, build_hub

from . import samples
from .test_dispatch_isolation import Clock, Refusing

AGENCIES = ("customs", "port")
pytestmark = pytest.mark.slow


class Dispatching(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.hub = build_hub(Settings(Path(self.directory.name), secret="s" * 40))
        self.publisher, self.clock = Refusing(), Clock()
        self.runner = self._runner()
        self.ids: list[str] = []
        self.ever_broken: set[str] = set()

    def _runner(self) -> Followers:
        changes = Changes(self.hub.declarations)
        return Followers(self.hub.declarations, self.hub.views, [
            AgencyDispatch(self.hub.declarations, agency, self.publisher, changes=changes, clock=self.clock)
            for agency in AGENCIES])

    def teardown(self) -> None:
        self.hub.close()
        self.directory.cleanup()

    def _refusing(self, ident: str, refused: bool) -> None:
        """The broker refuses this declaration's messages from now on, or takes them again."""
        if refused:
            self.publisher.broken.add(ident)
            self.ever_broken.add(ident)
        else:
            self.publisher.broken.discard(ident)

    @rule(refused=st.booleans(), follow=st.booleans())
    def submit(self, refused: bool, follow: bool) -> None:
        reference = f"PROP-{len(self.ids):04d}"
        self.ids.append(str(self.hub.declarations.submit(samples.goods(reference)).declaration.id))
        self._refusing(self.ids[-1], refused)
        if follow:  # as a running dispatch would, at once
            self.run(0.0)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), office=st.sampled_from(["3701", "3702", "3703"]), refused=st.booleans(),
          follow=st.booleans())
    def amend(self, data: st.DataObject, office: str, refused: bool, follow: bool) -> None:
        ident = data.draw(st.sampled_from(self.ids))
        declaration = self.hub.declarations.get(ident)
        try:
            self.hub.declarations.amend(ident, declaration.version,
                                        samples.goods(declaration.reference, customs_office=office))
        except DeclarationError:
            pass  # withdrawn
        self._refusing(ident, refused)
        if follow:
            self.run(0.0)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        self.hub.declarations.withdraw(data.draw(st.sampled_from(self.ids)), "no longer shipped")

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def refuse(self, data: st.DataObject) -> None:
        self._refusing(data.draw(st.sampled_from(self.ids)), True)

    @rule()
    def recover(self) -> None:
        self.publisher.broken.clear()

    @rule(down=st.booleans())
    def broker(self, down: bool) -> None:
        self.publisher.down = down

    @rule(seconds=st.sampled_from([0.0, 1.0, 30.0, 700.0]))
    def run(self, seconds: float) -> None:
        self.clock.now += seconds
        for _ in range(4):
            for follower in self.runner.followers:
                try:
                    self.runner.step(follower)
                except Exception:  # noqa: BLE001 - the broker is down: the batch stays
                    assert self.publisher.down
            try:
                self.runner.retry()
            except Exception:  # noqa: BLE001
                assert self.publisher.down

    @rule()
    def restart(self) -> None:
        self.runner = self._runner()  # nothing kept in memory survives

    # ---- what the log says each agency must get, in order --------------------------------------

    def expected(self) -> dict[tuple[str, str], list[str]]:
        changes = Changes(self.hub.declarations)
        wanted: dict[tuple[str, str], list[str]] = {}
        for notification in self.hub.declarations.recorder.select_notifications(start=0, limit=100_000):
            change = changes.of(self.hub.declarations.mapper.to_domain_event(notification))
            if change is None:
                continue
            for message in messages_for(change, self.hub.declarations.routing, AGENCIES):
                wanted.setdefault((message.declaration_id, message.agency), []).append(message.message_id)
        return wanted

    def published(self) -> dict[tuple[str, str], list[str]]:
        got: dict[tuple[str, str], list[str]] = {}
        for message in self.publisher.published:
            sequence = got.setdefault((message.declaration_id, message.agency), [])
            if message.message_id not in sequence:
                sequence.append(message.message_id)
        return got

    @invariant()
    def published_in_log_order_per_declaration_and_agency(self) -> None:
        expected = self.expected()
        for key, sequence in self.published().items():
            assert sequence == expected[key][:len(sequence)], key  # a prefix: nothing skipped, nothing overtaken

    @invariant()
    def nothing_recorded_that_was_not_published(self) -> None:
        sent = {message.message_id for message in self.publisher.published}
        recorded = {row[0] for row in self.hub.views.query("SELECT message_id FROM agency_messages")}
        assert recorded <= sent

    @invariant()
    def a_failure_never_delays_another_declaration(self) -> None:
        if self.publisher.down or any(self.runner.lag().values()):
            return
        published = self.published()
        for (ident, agency), wanted in self.expected().items():
            if ident not in self.ever_broken:
                assert published.get((ident, agency), []) == wanted, (ident, agency)

    @precondition(lambda self: not self.publisher.broken and not self.publisher.down)
    @rule()
    def once_healed_and_due_everything_goes(self) -> None:
        self.clock.now += 10_000  # past any back-off
        for _ in range(3):
            self.runner.catch_up()
            self.runner.retry()
        assert self.published() == self.expected()
        assert self.hub.views.query("SELECT COUNT(*) FROM dispatch_parked") == [(0,)]
        self.ever_broken.clear()


TestDispatching = Dispatching.TestCase
TestDispatching.settings = settings(max_examples=60, stateful_step_count=20, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
