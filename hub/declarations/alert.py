"""The risk alert aggregate (enforcement assistance, docs/lifecycle.md).

An officer or an agency raises an alert on a party (its USCC), a ship (its IMO
number) or a container (its ISO 6346 number); an officer clears it. While it
is open, every open declaration that involves the subject is held. Alerts are
stored in the declarations' own log, so one follower sees alerts and
declarations in a single order and can never miss a declaration that arrives
while an alert is raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from hashlib import sha256
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

SUBJECT_KINDS = ("party", "vessel", "container")
OPEN, CLEARED = "open", "cleared"

# Fixed forever: an agency's alert id derives from it, so a redelivered alert message finds the alert it
# already raised.
ALERT_NAMESPACE = UUID("0f6f1d8e-3c52-5b7a-8e21-6a4c2d9b7e13")


def agency_alert_id(agency: str, message_id: str, subject_kind: str, subject: str, reason: str,
                    declaration_id: str) -> UUID:
    """The id of the alert an agency's message raises: the same for the same message delivered again, and not
    to be guessed from the message id alone, which traders and other agencies may see (I6): it also derives
    from the alert's reason, which only those who may see the alert are told."""
    content = json.dumps([agency, message_id, subject_kind, subject, reason, declaration_id], ensure_ascii=False)
    return uuid5(ALERT_NAMESPACE, sha256(content.encode()).hexdigest())


class AlertClosed(Exception):
    """The alert is already cleared."""


class Alert(Aggregate):
    """A risk alert on one subject, open until an officer clears it."""

    class Raised(Aggregate.Created):
        subject_kind: str
        subject: str
        reason: str
        raised_by: str

    class Cleared(Aggregate.Event):
        cleared_by: str

    @event(Raised)
    def __init__(self, subject_kind: str, subject: str, reason: str, raised_by: str) -> None:
        self.subject_kind = subject_kind
        self.subject = subject
        self.reason = reason
        self.raised_by = raised_by
        self.cleared_by = ""

    @event(Cleared)
    def _cleared(self, cleared_by: str) -> None:
        self.cleared_by = cleared_by

    @property
    def status(self) -> str:
        return CLEARED if self.cleared_by else OPEN

    @property
    def key(self) -> str:
        return subject_key(self.subject_kind, self.subject)

    def clear(self, cleared_by: str) -> bool:
        """Clear the alert. Returns False when it already was cleared."""
        if self.cleared_by:
            return False
        self._cleared(cleared_by)
        return True

    def details(self) -> dict[str, str]:
        """What an agency is told of the alert (`adapters.notices.alert_notice`)."""
        return {"alert_id": str(self.id), "subject_kind": self.subject_kind, "subject": self.subject,
                "reason": self.reason, "raised_by": self.raised_by, "raised_at": self.created_on.isoformat()}


def subject_key(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


def subjects_of(document: dict[str, Any]) -> set[str]:
    """Every subject a declaration involves, as `subject_key`s: its parties' USCCs, its ship, its containers."""
    return {subject_key(kind, value) for kind, value in _subjects(document) if value}


def _subjects(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for role in ("declarant", "consignor", "consignee"):
        party = document.get(role) or {}
        yield "party", party.get("id", "")
    vessel = document.get("vessel") or (document.get("transport") or {}).get("vessel") or {}
    yield "vessel", vessel.get("imo", "")
    for container in document.get("containers", ()):
        yield "container", container
