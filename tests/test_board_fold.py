"""The status board's fold (projections/board_fold.py) against the domain model it stands in for.

The board no longer replays a copy of each declaration: it folds what it shows from the events' fields. The
product decision (issue 20) allows that only if the fold is checked against the aggregate, not trusted. So a
hypothesis state machine issues random commands on two real `Declaration` aggregates, goods declarations or
vessel calls, whose events interleave: amendments, withdrawal, every agency's answers at any version,
inspections, holds placed and lifted, `settle`, dispatch failures, attachments and erasure. What the aggregate
refuses is skipped. Answers and amendments that today's guards refuse but an older log may hold (guards get
tightened; event bodies apply whatever is stored) are recorded too, through the event methods themselves. The
events go, in random batches, to a real `StatusBoard` and a real notifications feed (followers/notifications.py,
which folds the same way) writing to SQLite, which now and then forget what they kept (as after a rolled-back
transaction) and read declarations back from the store. The oracle is the aggregate replayed event by event:

- after every event, the fold alone gives the status, version, time and agencies the replayed aggregate has;
- after every batch, the board's rows are what the replayed aggregate gives, and the feed holds exactly the
  notifications the replayed aggregate gives: each agency decision and overall status change, with the
  declarant, reference, consignee and routes the aggregate has after the event.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as note_reached
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from followers.notifications import Notifications
from hub.declarations.domainmodel import AGENCIES, AGENCY_STATUSES, PENDING, RELEASED, Declaration, DeclarationError
from projections.board_fold import FOLDED, Folded, fold
from projections.database import SQLiteViews
from projections.notifications import DECISION, STATUS, TYPES, notification_id
from projections.status_board import StatusBoard, stamp

KINDS = ("goods", "vessel_call")
# Small pools, so that commands meet each other: a message applied twice, a hold lifted that stands, ...
MESSAGES = st.integers(0, 40).map(lambda n: f"message-{n}")
ALERTS = st.sampled_from(("alert-1", "alert-2", "alert-3"))
# Routes in any order (the board's summary keeps the aggregate's), every agency often: the port and a gate-out
# agency are what gate-out needs.
ROUTES = st.permutations(AGENCIES).map(list) | st.lists(st.sampled_from(AGENCIES), unique=True, max_size=len(AGENCIES))
# Released more often than the rest: a declaration is released only once every routed agency has released.
STATUSES = st.one_of(st.just(RELEASED), st.sampled_from(AGENCY_STATUSES))
WHICH = st.integers(0, 1)
# An agency by a pick that lands on a routed one more often than not (`agency`).
PICKS = st.integers(0, 9)
# The version an answer names, as so many behind the current one (-1: one it never had), or none.
ANSWERS = st.none() | st.integers(-1, 2)
# Whom a document consigns the goods to, if anyone: an amendment may change it; erasure must not.
CONSIGNEES = st.sampled_from((None, "CONSIGNEE-1", "CONSIGNEE-2"))
AT = "2026-12-01T09:00:00Z"


def shown(declaration: Declaration | Folded) -> tuple:
    """What the board takes of a declaration: status, version, time of its last event, agencies' summary."""
    agencies = {name: {"status": state["status"], "routed": state["routed"]}
                for name, state in declaration.agencies.items()}
    return declaration.status, declaration.version, stamp(declaration.modified_on), json.dumps(agencies)


def document(declaration_kind: str, reference: str, consignee: str | None) -> dict[str, Any]:
    parties = {"consignee": {"id": consignee}} if consignee else {}
    return {"kind": declaration_kind, "declarant": {"id": "DECLARANT"}, "reference": reference, **parties,
            "crew": [{"name": "Ada", "document": {"type": "passport", "number": "P1"}}]}


def told(position: int, event: Any, status: str | None, answered: str | None, after: Declaration) -> list[tuple]:
    """The notifications rows `event` gives, from the replayed aggregate: `status` and `answered` (the overall
    status, and that of the agency it answers or inspects) as they were before it, `after` the aggregate after."""
    changes = []
    if isinstance(event, Declaration.AgencyResponded | Declaration.InspectionRecorded):
        decided = after.agencies[event.agency]["status"]
        if decided != answered:
            code = (event.code or None) if isinstance(event, Declaration.AgencyResponded) else None
            changes.append((DECISION, decided, event.agency, code))
    if after.status != status:
        changes.append((STATUS, after.status, None, None))
    party = after.document.get("consignee")
    return [(notification_id(position, ordinal), str(after.id), after.declarant,
             party.get("id") if isinstance(party, dict) else None, ",".join(sorted(after.agencies)), kind,
             TYPES[kind], after.reference, status_now, agency, code, stamp(event.timestamp))
            for ordinal, (kind, status_now, agency, code) in enumerate(changes)]


def replayed(events: list[Any]) -> Declaration | None:
    declaration = None
    for event in events:
        declaration = event.mutate(declaration)
    return declaration


def agency(declaration: Declaration, pick: int) -> str:
    """A routed agency for most picks, any agency for the rest."""
    choices = [*declaration.routed_agencies, *AGENCIES]
    return choices[pick % len(choices)]


def answered(declaration: Declaration, behind: int | None) -> int | None:
    return None if behind is None else declaration.version - behind


class Store:
    """The event store as the board's fold reads it back: each declaration at a version, replayed."""

    def __init__(self) -> None:
        self.events: dict[UUID, list[Any]] = {}

    def get(self, ident: UUID, version: int) -> Declaration:
        return replayed(self.events[ident][:version])


class BoardAgainstDomain(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="board-fold-"))
        self.views = SQLiteViews(self.directory / "views.sqlite")
        self.views.create(StatusBoard.tables)
        self.views.create(Notifications.tables)
        self.store = Store()
        self.board = StatusBoard(SimpleNamespace(repository=self.store))
        self.feed = Notifications(SimpleNamespace(repository=self.store))
        self.told: list[tuple] = []  # the notifications the replayed aggregate gives, in log order
        self.declarations: list[Declaration] = []
        self.pending: list[Any] = []  # recorded, not yet given to the board
        self.position = 0
        self.oracle: dict[UUID, Declaration] = {}  # each declaration replayed through the events delivered
        self.folded: dict[UUID, Folded] = {}  # the fold alone, through the same events
        self.released_at: dict[UUID, str] = {}  # when the latest `Released` delivered was recorded

    def teardown(self) -> None:
        try:
            self.deliver(len(self.pending))  # whatever the steps left undelivered, checked too
        finally:
            self.views.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- commands on the real aggregates ------------------------------------------------------------

    @initialize(kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=2), routes=st.tuples(ROUTES, ROUTES),
                keyed=st.tuples(st.booleans(), st.booleans()), consignees=st.tuples(CONSIGNEES, CONSIGNEES))
    def submit(self, kinds: list[str], routes: tuple[list[str], list[str]], keyed: tuple[bool, bool],
               consignees: tuple[str | None, str | None]) -> None:
        for n, (kind, routed, key, consignee) in enumerate(zip(kinds, routes, keyed, consignees, strict=True)):
            reference = f"REF-{n}"
            self.declarations.append(Declaration(kind, "DECLARANT", reference, document(kind, reference, consignee),
                                                 "hash-0", dict.fromkeys(routed, "rule"), "key" if key else ""))
            self._recorded(self.declarations[-1])

    @rule(which=WHICH, revision=st.integers(0, 3), routes=ROUTES, consignee=CONSIGNEES)
    def amend(self, which: int, revision: int, routes: list[str], consignee: str | None) -> None:
        declaration = self.declarations[which]
        self._command(which, declaration.amend, document(declaration.kind, declaration.reference, consignee),
                      f"hash-{revision}", dict.fromkeys(routes, "rule"))

    @rule(which=WHICH, dice=st.integers(0, 5))
    def withdraw(self, which: int, dice: int) -> None:
        if dice == 0:  # rarely: a withdrawal closes the declaration to nearly every other command
            self._command(which, self.declarations[which].withdraw, "no longer needed")

    @rule(which=WHICH, pick=PICKS, message=MESSAGES, status=STATUSES, code=st.sampled_from(("", "REL", "01")),
          behind=ANSWERS)
    def respond(self, which: int, pick: int, message: str, status: str, code: str, behind: int | None) -> None:
        declaration = self.declarations[which]
        self._command(which, declaration.record_response, agency(declaration, pick), message, status, AT,
                      code=code, answers_version=answered(declaration, behind))

    @rule(which=WHICH, code=st.sampled_from(("", "REL")))
    def release_everywhere(self, which: int, code: str) -> None:
        """Every routed agency releases: the way to a declaration released, if `settle` finds no hold."""
        declaration = self.declarations[which]
        for name in list(declaration.routed_agencies):
            self._command(which, declaration.record_response, name, f"release-{name}-{declaration.version}",
                          RELEASED, AT, code=code)

    @rule(which=WHICH, pick=PICKS, message=MESSAGES, result=st.sampled_from(("pass", "fail")), behind=ANSWERS)
    def inspect(self, which: int, pick: int, message: str, result: str, behind: int | None) -> None:
        declaration = self.declarations[which]
        self._command(which, declaration.record_inspection, agency(declaration, pick), message, result, AT,
                      answers_version=answered(declaration, behind))

    @rule(which=WHICH, alert=ALERTS, dice=st.integers(0, 2))
    def place_hold(self, which: int, alert: str, dice: int) -> None:
        if dice:
            return  # less often than the rest: a hold stands until lifted, and every release waits for it
        details = {"alert_id": alert, "subject_kind": "container", "subject": "HLXU8000014", "reason": "tip-off"}
        self._command(which, self.declarations[which].place_hold, details)

    @rule(which=WHICH, alert=ALERTS)
    def lift_hold(self, which: int, alert: str) -> None:
        self._command(which, self.declarations[which].lift_hold, alert)

    @rule(which=WHICH, behind=st.integers(0, 2))
    def settle(self, which: int, behind: int) -> None:
        declaration = self.declarations[which]
        self._command(which, declaration.settle, declaration.version - behind)

    @rule(which=WHICH, agency=st.sampled_from(AGENCIES), behind=st.integers(0, 2))
    def dispatch_fails(self, which: int, agency: str, behind: int) -> None:
        declaration = self.declarations[which]
        self._command(which, declaration.dispatch_failed, agency, declaration.version - behind, "broker away", AT)

    @rule(which=WHICH, agency=st.sampled_from(AGENCIES))
    def dispatch_resumes(self, which: int, agency: str) -> None:
        self._command(which, self.declarations[which].dispatch_resumed, agency)

    @rule(which=WHICH, document=st.sampled_from(("a" * 64, "b" * 64)))
    def attach(self, which: int, document: str) -> None:
        self._command(which, self.declarations[which].attach_document, document, "invoice.pdf", "application/pdf",
                      1024, "trader", AT)

    @rule(which=WHICH)
    def erase(self, which: int) -> None:
        self._command(which, self.declarations[which].erase_personal_data, "officer", "request", AT, 0)

    # ---- what an older log may hold: events today's guards refuse, applied as their bodies say ----

    @rule(which=WHICH, pick=PICKS, status=st.sampled_from([s for s in AGENCY_STATUSES if s != PENDING]))
    def unguarded_response(self, which: int, pick: int, status: str) -> None:
        """An answer recorded before a guard was tightened: from an agency routed away, after a rejection, ..."""
        declaration = self.declarations[which]
        known = list(declaration.agencies)
        if known:
            declaration._responded(known[pick % len(known)], f"old-{declaration.version}", status, "", "", AT)
        self._recorded(declaration)

    @rule(which=WHICH, routes=ROUTES, consignee=CONSIGNEES)
    def unguarded_amendment(self, which: int, routes: list[str], consignee: str | None) -> None:
        """An amendment recorded before a guard was tightened: of a released or withdrawn declaration, say."""
        declaration = self.declarations[which]
        declaration._amended(document(declaration.kind, declaration.reference, consignee),
                             f"old-{declaration.version}", dict.fromkeys(routes, "rule"))
        self._recorded(declaration)

    def _command(self, which: int, command: Any, *args: Any, **kwargs: Any) -> None:
        """Issue a command; one the aggregate refuses records nothing, and is skipped."""
        try:
            command(*args, **kwargs)
        except (DeclarationError, ValueError) as refused:
            note_reached(f"refused: {type(refused).__name__}")
        self._recorded(self.declarations[which])

    def _recorded(self, declaration: Declaration) -> None:
        events = declaration.collect_events()
        self.store.events.setdefault(declaration.id, []).extend(events)
        self.pending += events

    # ---- the board follows ------------------------------------------------------------------------

    @rule(count=st.integers(1, 12))
    def deliver(self, count: int) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending[:count], self.pending[count:]
        positioned = [(self.position + n, event) for n, event in enumerate(batch, 1)]
        for position, event in positioned:
            self._check_fold(position, event)
        with self.views.transaction() as cursor:
            self.board.apply(cursor, positioned)
            self.feed.apply(cursor, positioned)
        self.position += len(batch)
        for ident in {event.originator_id for event in batch}:
            self._check_rows(self.oracle[ident])
        assert self.views.query("SELECT * FROM notifications ORDER BY id") == self.told

    @rule(which=st.sampled_from(("board", "feed", "both")))
    def forget(self, which: str) -> None:
        """As after a rolled-back transaction: the view reads what it needs back from the store."""
        if which in ("board", "both"):
            self.board.forget()
        if which in ("feed", "both"):
            self.feed.forget()

    def _check_fold(self, position: int, event: Any) -> None:
        ident = event.originator_id
        before = self.oracle.get(ident)
        status = before.status if before is not None else None
        agency = getattr(event, "agency", None)
        answered = before.agencies.get(agency, {}).get("status") if before is not None and agency else None
        self.oracle[ident] = declaration = event.mutate(before)  # `before` itself, changed in place
        self.told += told(position, event, status, answered, declaration)
        self.folded[ident] = fold(self.folded.get(ident), event)
        assert shown(self.folded[ident]) == shown(declaration), type(event).__name__
        if isinstance(event, Declaration.Released):
            self.released_at[ident] = stamp(event.timestamp)
        note_reached(f"{type(event).__name__} -> {declaration.status}")

    def _check_rows(self, declaration: Declaration) -> None:
        key = str(declaration.id)
        [row] = self.views.query("SELECT kind, declarant, reference, status, version, submitted_at, updated_at,"
                                 " released_at, agencies FROM board_declarations WHERE id = ?", (key,))
        status, version, updated_at, agencies = shown(declaration)
        released_at = self.released_at[declaration.id] if declaration.outcome == RELEASED else None
        assert row == (declaration.kind, declaration.declarant, declaration.reference, status, version,
                       stamp(declaration.created_on), updated_at, released_at, agencies)
        assert sorted(self.views.query("SELECT agency, status, routed FROM board_agencies WHERE declaration_id = ?",
                                       (key,))) == sorted(
            (name, state["status"], int(state["routed"])) for name, state in declaration.agencies.items())

    @invariant()
    def nothing_is_lost(self) -> None:
        delivered = sum(len(events) for events in self.store.events.values()) - len(self.pending)
        assert delivered == self.position


BoardAgainstDomain.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None,
                                                suppress_health_check=[HealthCheck.too_slow])
TestBoardAgainstDomain = pytest.mark.slow(BoardAgainstDomain.TestCase)


def test_the_fold_has_a_rule_for_every_declaration_event():
    """A new declaration event must be placed in the fold, as changing what the board shows or not."""
    events = {kind for kind in vars(Declaration).values()
              if isinstance(kind, type) and issubclass(kind, Declaration.Event)
              and kind not in (Declaration.Event, Declaration.Created)}
    assert events == FOLDED
