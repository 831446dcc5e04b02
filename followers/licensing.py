"""Licensing: the ledger's second half, and the licences read model (docs/licences.md).

Reservations are made with the declaration's own event, in one transaction (`Declarations.submit`/`amend`).
What the declaration's outcome does to them follows the log, here:

- `Released`: the reservation is consumed;
- `Withdrawn` or `Rejected`: it is given back.

The commands name the declaration version that caused them and act only on a reservation made at or before it
(`Licence.consume`, `Licence.give_back`), so a batch applied again after a crash, a rebuild, or an outcome
read late (after an amendment reserved afresh) changes nothing it should not. A crash between a declaration's
release and its consumption therefore leaves the consumption due, never lost: this follower's position is
behind the release until the consumption is stored.

It also writes the licences read model (projections.licences).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

from hub.declarations import Declaration, Declarations, Licence, licence_id
from hub.declarations.licence import LEDGER_KINDS
from projections.database import Cursor
from projections.licences import NAME, TABLES, cited_by
from projections.status_board import stamp

_OUTCOMES = {Declaration.Released: "released", Declaration.Withdrawn: "withdrawn", Declaration.Rejected: "rejected"}


class Licensing:
    name = NAME
    tables = TABLES

    def __init__(self, app: Declarations) -> None:
        self.app = app

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        for position, event in events:
            if isinstance(event, Declaration.Submitted | Declaration.Amended):
                self._cites(cursor, str(event.originator_id), event.document)
            elif type(event) in _OUTCOMES:
                declaration = str(event.originator_id)
                ids = [UUID(ident) for ident in cited_by(cursor, declaration)]
                if ids:
                    self.app.settle_licences(declaration, event.originator_version, _OUTCOMES[type(event)], ids)
            elif isinstance(event, Licence.Event):
                self._licence_event(cursor, position, event)

    def _cites(self, cursor: Cursor, declaration_id: str, document: dict[str, Any]) -> None:
        cursor.execute("DELETE FROM licence_citations WHERE declaration_id = ?", (declaration_id,))
        cited = {str(licence_id(citation["issuer"], citation["number"]))
                 for item in (document.get("items") or ()) if document.get("kind") == "goods"
                 for citation in (item.get("licences") or ()) if "issuer" in citation}
        for ident in sorted(cited):
            cursor.execute("INSERT INTO licence_citations (declaration_id, licence_id) VALUES (?, ?)",
                           (declaration_id, ident))

    def _licence_event(self, cursor: Cursor, position: int, event: Any) -> None:
        ident, at = str(event.originator_id), stamp(event.timestamp)
        if isinstance(event, Licence.Issued):
            cursor.execute(
                "INSERT INTO licences (id, number, issuer, type, holder, hs_scope, quantity, unit, valid_from,"
                " valid_to, reserved, consumed, source, issued_by, issued_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '0', '0', ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (ident, event.number, event.issuer, event.type, event.holder, " ".join(event.hs_scope),
                 event.quantity, event.unit, event.valid_from, event.valid_to, event.source, event.issued_by, at))
        elif isinstance(event, Licence.Suspended):
            cursor.execute("UPDATE licences SET suspended_at = ? WHERE id = ?", (event.at, ident))
        elif isinstance(event, Licence.Reinstated):
            cursor.execute("UPDATE licences SET suspended_at = NULL WHERE id = ?", (ident,))
        elif isinstance(event, Licence.Revoked):
            cursor.execute("UPDATE licences SET revoked_at = ?, revocation_reason = ? WHERE id = ?",
                           (event.at, event.reason, ident))
        elif isinstance(event, Licence.Reserved | Licence.Returned | Licence.Consumed):
            self._ledger(cursor, ident, position, event, at)

    def _ledger(self, cursor: Cursor, ident: str, position: int, event: Any, at: str) -> None:
        cursor.execute("SELECT position, kind, quantity FROM licence_ledger WHERE licence_id = ? AND declaration_id = ?"
                       " ORDER BY position DESC LIMIT 1", (ident, event.declaration_id))
        last = cursor.fetchone()
        if last is not None and last[0] >= position:
            return  # already written
        cursor.execute("SELECT reserved, consumed FROM licences WHERE id = ?", (ident,))
        totals = cursor.fetchone()
        reserved, consumed = (Decimal(totals[0]), Decimal(totals[1])) if totals else (Decimal(0), Decimal(0))
        if last is not None and last[1] == "reserved":
            reserved -= Decimal(last[2])  # a declaration holds one reservation: the new entry replaces it
        kind = LEDGER_KINDS[type(event)]
        if kind == "reserved":
            reserved += Decimal(event.quantity)
        elif kind == "consumed":
            consumed += Decimal(event.quantity)
        cursor.execute(
            "INSERT INTO licence_ledger (licence_id, position, kind, declaration_id, declaration_version, quantity,"
            " reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (ident, position, kind, event.declaration_id, event.declaration_version, event.quantity,
             getattr(event, "reason", ""), at))
        cursor.execute("UPDATE licences SET reserved = ?, consumed = ? WHERE id = ?",
                       (_plain(reserved), _plain(consumed), ident))


def _plain(quantity: Decimal) -> str:
    return format(quantity.normalize(), "f")
