"""Dispatch: the hub's event log, followed per agency, published as that agency's messages.

Each agency's dispatch is a view for the projection runner (followers.runner),
with its own tracked position, so one agency's trouble never holds up the
others. For a batch of events it builds the agency's messages with
`adapters.outbound.messages_for` (the path `tradehub render` uses), publishes
them and waits until the broker has acknowledged them, then records them and
moves its position in one transaction.

- A crash after publishing and before committing publishes the batch again on
  restart, with the same message ids: the broker drops the repeats inside its
  duplicate window, and agencies de-duplicate by id beyond it.
- A message that cannot be built, or that the broker refuses (too large for
  its payload limit, say), fails that declaration's dispatch to this agency
  only: the declaration is parked (projections.dispatch_parking, in this
  view's transaction), `DispatchFailed` is recorded on it, and its later
  messages to this agency wait behind the failed one; every other declaration
  goes on. Parked ones are tried again with exponential back-off (or at once,
  when an admin asks), built again from the log so they keep their ids, and
  `DispatchResumed` is recorded once all that waited is out. Nothing is
  skipped (docs/dispatch.md).
- A broker that cannot be reached fails the whole batch (PublishFailed): the
  position stays, and the runner tries again with back-off.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol
from uuid import UUID

from adapters import citations
from adapters.messages import AMENDMENT, ORIGINAL, Change, Message, advance
from adapters.outbound import messages_for
from adapters.signing import Signer
from hub.declarations import (
    Declaration,
    Declarations,
    Licence,
    LicenceAmbiguous,
    LicenceNotFound,
    LicenceSignatureInvalid,
    PersonalDataGone,
    RoutingRules,
)
from hub.declarations.personal_data import DataKeys
from hub.declarations.replay import Replay
from messaging.publishing import Refusal
from projections import dispatch_parking as parking
from projections.database import Cursor, rounds
from projections.messages import OUTBOUND, Record, record
from projections.messages import TABLES as MESSAGE_TABLES

log = logging.getLogger(__name__)
_CACHE_SIZE = 20_000  # declarations (and events) remembered
FIRST_RETRY = 1.0  # seconds before a parked declaration's first retry; doubled after each failure...
RETRY_CEILING = 600.0  # ...up to this
RETRIES_PER_ROUND = 100  # parked declarations tried per agency each time the runner looks


class Publisher(Protocol):
    def publish(self, messages: Sequence[Message]) -> Sequence[Refusal]:
        """Publish the messages, waiting for the broker's acknowledgements; those it refused, each with why.

        Raises (messaging.broker.PublishFailed) when the broker cannot be reached: then nothing is known of any
        one message, and the caller tries the whole batch again.
        """


def retry_delay(attempts: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempts`-th failure: doubling from FIRST_RETRY to RETRY_CEILING, and jittered
    down by up to a half so that declarations parked together are not all tried in the same instant."""
    delay = min(RETRY_CEILING, FIRST_RETRY * 2 ** min(attempts - 1, 30))
    return delay * (0.5 + draw() / 2)


DISPATCH_PREFIX = "dispatch:"


def view_name(agency: str) -> str:
    return DISPATCH_PREFIX + agency


class Changes:
    """What each event of the log changed, worked out once for every agency's dispatch that follows it.

    Working it out needs the declaration as it was before the event: kept from the event before, else
    read back from the store. The results depend on the log alone, so they stay valid whatever happens
    to the transactions of the views that use them. One follower thread uses it.
    """

    def __init__(self, app: Declarations, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self._states = Replay(app, size)
        self._changes: OrderedDict[tuple[UUID, int], Change | None] = OrderedDict()

    def of(self, event: Any) -> Change | None:
        if not isinstance(event, Declaration.Event):
            return None  # an alert's own events: agencies hear of an alert by the holds it places
        key = (event.originator_id, event.originator_version)
        if key in self._changes:
            return self._changes[key]
        if isinstance(event, Declaration.PersonalDataErased):  # what was worked out before names the people
            for cached in [cached for cached in self._changes if cached[0] == event.originator_id]:
                del self._changes[cached]
        change, after = advance(event, self._states.before(event))
        self._states.keep(after)
        self._changes[key] = change
        if len(self._changes) > self.size:
            self._changes.popitem(last=False)
        return change


@dataclass
class _Entry:
    """One event's messages to the agency (or why they could not be built)."""

    declaration_id: str
    version: int
    messages: list[Message] = field(default_factory=list)
    reason: str = ""  # not built: why


class AgencyDispatch:
    """One agency's dispatch, as a view: its messages published, then recorded with the position."""

    tables = (*MESSAGE_TABLES, *parking.TABLES)

    def __init__(self, app: Declarations, agency: str, publisher: Publisher, rules: RoutingRules | None = None,
                 *, changes: Changes | None = None, clock: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random, signer: Signer | None = None):
        self.app = app
        self.signer = signer  # the hub's key (adapters.signing); None only in tests of what is not signing
        self.agency = agency
        self.name = view_name(agency)
        self.publisher = publisher
        self.rules = rules or app.routing
        self.changes = changes or Changes(app)  # share one between the agencies of a runner
        self.clock = clock
        self.draw = draw

    def forget(self) -> None:
        """Nothing to drop: what `changes` holds follows from the log, not from this view's transactions."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        entries: list[_Entry] = []
        failures_seen: set[str] = set()  # declarations whose DispatchFailed to this agency the batch holds
        for _, event in events:
            if isinstance(event, Declaration.DispatchFailed) and event.agency == self.agency:
                failures_seen.add(str(event.originator_id))
            change = self.changes.of(event)
            if change is None or change.action_for(self.agency) is None:
                continue
            entries.append(self._entry(change))
        parked = parking.parked_declarations(cursor, self.agency)
        if entries:
            self._send(cursor, [entry for entry in entries if entry.messages or entry.reason], parked)
        # A failure recorded by a batch that was then rolled back (and went through when applied again) is
        # recorded on the declaration but parks nothing: say it resumed, or it would show for ever.
        if failures_seen:
            for declaration_id in sorted(failures_seen - parking.parked_declarations(cursor, self.agency)):
                self.app.dispatch_resumed(declaration_id, self.agency)

    def _entry(self, change: Change) -> _Entry:
        entry = _Entry(change.declaration_id, change.version)
        try:
            entry.messages = self.build(change)
        except Exception as error:  # noqa: BLE001 - a mapping or schema bug: this declaration's alone, parked
            log.exception("cannot build %s's messages for declaration %s version %s", self.agency,
                          change.declaration_id, change.version)
            entry.reason = f"could not build the {self.agency} message: {type(error).__name__}: {error}"
        return entry

    def build(self, change: Change) -> list[Message]:
        """The agency's messages for a change, final as the agency gets them: whatever is done to a message's
        bytes before it goes out (a signature) belongs here, so that the broker's size check, the record and a
        retry all see the same bytes. An exception parks the declaration."""
        messages = messages_for(self._with_licences(change), self.rules, [self.agency])
        if self.signer is None:
            return messages
        # The id stays: it derives from the declaration, version, agency and name, never from these bytes
        # (ECDSA signatures differ each time, so a rebuilt message is signed anew under the same id).
        return [replace(message, body=self.signer.sign(message.body)) for message in messages]

    def _with_licences(self, change: Change) -> Change:
        """`change` with what the registry says now of each licence its goods items cite, verified again: a
        licence revoked since the submission goes out as not verified (adapters/citations.py)."""
        if self.agency not in CITING_AGENCIES or change.action_for(self.agency) not in (ORIGINAL, AMENDMENT):
            return change
        licences = checked_licences(self.app, change.document)
        return replace(change, licences=licences) if licences else change

    def _send(self, cursor: Cursor, entries: Sequence[_Entry], parked: set[str]) -> None:
        """Publish what is not held back, a declaration's messages in log order; park what fails.

        A declaration's entries go out in successive rounds (its second after its first was acknowledged), so
        that a refused message is never overtaken by a later one of the same declaration.
        """
        failed: dict[str, tuple[int, str]] = {}  # declaration -> (version, why), parked by this batch
        sent: list[Message] = []
        for wave in rounds(entries, key=lambda entry: entry.declaration_id):
            going = []
            for entry in wave:
                if entry.declaration_id in parked or entry.declaration_id in failed:
                    parking.wait(cursor, self.agency, entry.declaration_id, entry.version)
                elif entry.reason:
                    failed[entry.declaration_id] = (entry.version, entry.reason)
                else:
                    going.append(entry)
            refused = self._publish([message for entry in going for message in entry.messages])
            for entry in going:
                reasons = [refused[message.message_id] for message in entry.messages if message.message_id in refused]
                if reasons:
                    failed[entry.declaration_id] = (entry.version, "; ".join(reasons))
                else:
                    sent.extend(entry.messages)
        _record(cursor, sent, self.app.data_keys)
        now = self.clock()
        for declaration_id, (version, reason) in failed.items():
            log.warning("dispatch to %s parks declaration %s at version %s: %s", self.agency, declaration_id,
                        version, reason)
            failed_at = _stamp(now)
            parking.park(cursor, self.agency, declaration_id, version, reason, failed_at,
                         now + retry_delay(1, self.draw))
            # Given before the position moves, like enforcement's commands: a crash repeats it, and it is
            # idempotent (the same failure is recorded once).
            self.app.dispatch_failed(declaration_id, self.agency, version, reason, failed_at)

    def _publish(self, messages: Sequence[Message]) -> dict[str, str]:
        """Publish; the refused ones' reasons by message id."""
        if not messages:
            return {}
        return {refusal.message_id: refusal.reason for refusal in self.publisher.publish(messages)}

    def retry(self, cursor: Cursor) -> int:
        """Try the parked declarations that are due again; how many went out.

        Each one's waiting versions are built again from the log and published in order, up to the first that
        fails again; that one is then tried later, after a longer wait. An admin's retry makes one due at once.
        """
        now = self.clock()
        resumed = 0
        for declaration_id, failed_version, attempts in parking.due(cursor, self.agency, now, RETRIES_PER_ROUND):
            resumed += self._retry_one(cursor, declaration_id, failed_version, attempts, now)
        return resumed

    def _retry_one(self, cursor: Cursor, declaration_id: str, failed_version: int, attempts: int,
                   now: float) -> bool:
        sent: list[Message] = []
        for version in parking.waiting_versions(cursor, self.agency, declaration_id):
            try:
                messages = self._rebuilt(declaration_id, version)
            except Exception as error:  # noqa: BLE001 - still a bug: stays parked
                reason = f"could not build the {self.agency} message: {type(error).__name__}: {error}"
            else:
                refused = self._publish(messages)
                reason = "; ".join(refused[message.message_id] for message in messages if message.message_id in refused)
            if reason:
                _record(cursor, sent, self.app.data_keys)
                failed_at = _stamp(now) if version != failed_version else None
                parking.postpone(cursor, self.agency, declaration_id, version, reason, failed_at, attempts + 1,
                                 now + retry_delay(attempts + 1, self.draw))
                if failed_at is not None:  # a later version fails now: the declaration says so
                    self.app.dispatch_failed(declaration_id, self.agency, version, reason, failed_at)
                log.info("dispatch to %s of declaration %s still fails at version %s (attempt %s): %s", self.agency,
                         declaration_id, version, attempts + 1, reason)
                return False
            sent.extend(messages)
            parking.published(cursor, self.agency, declaration_id, version)
        _record(cursor, sent, self.app.data_keys)
        parking.unpark(cursor, self.agency, declaration_id)
        self.app.dispatch_resumed(declaration_id, self.agency)
        log.info("dispatch to %s of declaration %s resumed", self.agency, declaration_id)
        return True

    def _rebuilt(self, declaration_id: str, version: int) -> list[Message]:
        """A version's messages to the agency, built again from its event in the log: the same ids as before."""
        [event] = self.app.events.get(UUID(declaration_id), gt=version - 1, lte=version)
        change = self.changes.of(event)
        if change is None or change.action_for(self.agency) is None:
            return []
        if change.document.get("kind") == "vessel_call" and self.app.get(declaration_id).personal_data_erased:
            # Asked of the declaration as the log has it now: a cached change, or a key a process still holds,
            # would build the people again.
            raise PersonalDataGone("the declaration's personal data was erased: the hub can no longer build its "
                                   "messages again (the agency has what was sent)")
        return self.build(change)


# ---- the licences goods items cite, checked again for each message ---------------------------

CITING_AGENCIES = frozenset({"customs", "inspection"})  # whose messages carry them (adapters/citations.py)


def checked_licences(app: Declarations, document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each licence the goods items of `document` cite, keyed by the citation's (issuer, number), as the registry
    has it now, its signature verified again ("verified on every use", docs/licences.md) and its status taken
    today: the plain mapping the agencies' mappings read (`Change.licences`)."""
    if document.get("kind") != "goods":
        return {}
    cited = {(citation.get("issuer"), citation["number"])
             for item in document["items"] for citation in item.get("licences") or ()}
    day = app.today()
    return {key: _checked(app, key[0], key[1], day) for key in cited}


def _checked(app: Declarations, issuer: str | None, number: str, day: date) -> dict[str, Any]:
    entry: dict[str, Any] = {"number": number, "issuer": issuer, "type": None, "valid_to": None, "verified": False,
                             "reason": "", "detail": "", "key": None}
    try:
        licence = app.get_licence(number, issuer)
    except (LicenceNotFound, LicenceAmbiguous) as error:
        return entry | {"reason": citations.UNKNOWN, "detail": str(error)}
    entry |= {"issuer": licence.issuer, "type": licence.type, "valid_to": licence.valid_to,
              "key": licence.signature.get("key")}
    if app.seal is None:
        return entry | {"reason": citations.NO_SEAL, "detail": "this hub has no licence seal"}
    try:
        app.seal.verify(licence.issuer, licence.content(), licence.signature)
    except LicenceSignatureInvalid as error:
        return entry | {"reason": citations.BAD_SIGNATURE, "detail": str(error)}
    status = licence.status_on(day)
    if status != "valid":
        reason, detail = _STATUS_REASONS[status](licence)
        return entry | {"reason": reason, "detail": detail}
    return entry | {"verified": True}


_STATUS_REASONS: dict[str, Callable[[Licence], tuple[str, str]]] = {
    "revoked": lambda licence: (citations.REVOKED, (licence.revoked or {}).get("reason", "")),
    "suspended": lambda licence: (citations.SUSPENDED, (licence.suspended or {}).get("reason", "")),
    "expired": lambda licence: (citations.EXPIRED, f"valid to {licence.valid_to}"),
    "not_yet_valid": lambda licence: (citations.NOT_YET_VALID, f"valid from {licence.valid_from}"),
}


def _record(cursor: Cursor, messages: Sequence[Message], data_keys: DataKeys) -> None:
    record(cursor, [Record(OUTBOUND, message.agency, message.message_id, message.declaration_id, message.version,
                           message.name, message.function_code, message.issued_at.isoformat(),
                           message.body.decode()) for message in messages], data_keys=data_keys)


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def dispatches(app: Declarations, agencies: Sequence[str], publisher: Publisher, *, signer: Signer | None = None
               ) -> list[AgencyDispatch]:
    """Each agency's dispatch, sharing what the events changed, each message signed by `signer`."""
    changes = Changes(app)
    return [AgencyDispatch(app, agency, publisher, changes=changes, signer=signer) for agency in agencies]
