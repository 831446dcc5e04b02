"""The access log of personal data (docs/personal-data.md, "Who read it"): one `PersonalDataRead` per read.

Whenever the hub hands a caller any person on board a vessel call (a document's crew or passenger lists, the
master's name, a message body that names them), it records who was shown what, of which declaration, where
and when, before the answer leaves. A read is its own small aggregate, created once and never changed, in the
declarations' own log: the record is an event like any other, kept as long as the log, and the access-log
view (projections/access_log.py) is rebuilt from it. It names the people by nothing but the list they are in,
so it outlives their erasure and reveals nothing of them.

Readers never contend: a read has its own stream (a fresh uuid4), so its save cannot clash with another's, and
it joins the application's group commit, so concurrent reads share one transaction with each other and with
whatever is being declared meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventsourcing.domain import Aggregate, event

if TYPE_CHECKING:
    from .application import Declarations


class PersonalDataRead(Aggregate):
    """One caller shown personal data of one declaration, once. Its time is its event's timestamp."""

    class Recorded(Aggregate.Created):
        """`reader` is the caller's subject (`officer:border`), with its role, agency or party, and the id of
        the token it read with (a person's token, for a person). `fields` are the personal data shown
        (`crew`, `passengers`, `master`); `messages` the message bodies they were shown in (`fal5`, `fal6`,
        `fal1`), if any; `route` where (`GET /v1/declarations/{id}`, the page `GET /declarations/{id}`)."""

        declaration_id: str
        reader: str
        role: str
        agency: str
        party: str
        token_id: str
        fields: list[str]
        messages: list[str]
        route: str

    @event(Recorded)
    def __init__(self, declaration_id: str, reader: str, role: str, agency: str, party: str, token_id: str,
                 fields: list[str], messages: list[str], route: str) -> None:
        self.declaration_id = declaration_id
        self.reader = reader
        self.role = role
        self.agency = agency
        self.party = party
        self.token_id = token_id
        self.fields = fields
        self.messages = messages
        self.route = route


def record_personal_data_read(app: Declarations, declaration_id: str, *, reader: str, role: str, agency: str,
                              party: str, token_id: str, fields: Sequence[str], messages: Sequence[str],
                              route: str) -> PersonalDataRead:
    """Record one read, saved when this returns; raises whatever the store raises, so that a read whose record
    failed is never answered."""
    read = PersonalDataRead(declaration_id=declaration_id, reader=reader, role=role, agency=agency, party=party,
                            token_id=token_id, fields=sorted(fields), messages=sorted(messages), route=route)
    app.record_together(read)
    return read
