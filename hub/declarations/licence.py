"""E-licences and certificates (docs/licences.md): the registry's aggregate and its ledger.

A licence is issued once by an authority (an agency, the commerce ministry, a
CCC certification body) to a holder, for goods whose HS codes start with one of
its prefixes, up to a quantity. Declarations cite it per goods item; the
quantities they cite are written off it by the rules CERTEX uses:

- submitting reserves the cited quantity, in the same transaction as the
  declaration's own event, so a crash never leaves one without the other;
- an amendment replaces the declaration's reservation;
- the release consumes it; withdrawal or rejection gives it back.

The ledger keeps one reservation per declaration, tagged with the declaration
version it was made for. Consuming and giving back name the declaration
version that caused them and act only on a reservation made at or before it,
so they are idempotent and cannot undo a later amendment's reservation when
they are applied late (the licensing follower applies them from the log).

Licences are stored in the declarations' own log. The aggregate knows no
cryptography: its signature is checked by a `LicenceSeal` the application is
given (adapters/licences.py), on intake and on every use.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from .domainmodel import AGENCIES

LICENCE_TYPES = (
    "import_licence", "export_licence", "automatic_import_licence", "health_certificate",
    "phytosanitary_certificate", "veterinary_certificate", "ccc_certificate", "certificate_of_origin",
)
# Who issues: the five agencies, the commerce ministry (import and export licences) and CNCA's certification
# bodies (CCC certificates).
ISSUERS = (*AGENCIES, "commerce", "cnca")
VALID, SUSPENDED, REVOKED, EXPIRED, NOT_YET_VALID = "valid", "suspended", "revoked", "expired", "not_yet_valid"
STATUSES = (VALID, SUSPENDED, REVOKED, EXPIRED)
SOURCES = ("api", "import", "broker")
# The signed content, in this order in the API (the signature covers RFC 8785 canonical JSON of it).
CONTENT_FIELDS = ("number", "type", "issuer", "holder", "hs_scope", "quantity", "unit", "valid_from", "valid_to")

# Fixed forever: a licence's id derives from it, so an import or a broker message finds the licence it made.
LICENCE_NAMESPACE = UUID("a4f3c2d1-7b6e-5f40-9c8d-2e1b0a9f8e7d")

# Units of mass convert into each other; every other UN/ECE Rec 20 unit only to itself.
_GRAMS = {"GRM": Decimal(1), "KGM": Decimal(1000), "TNE": Decimal(1000000)}


def licence_id(issuer: str, number: str) -> UUID:
    """The id of the licence `issuer` numbered `number` (a number is unique per issuer)."""
    return uuid5(LICENCE_NAMESPACE, f"{issuer}:{number}")


class UnitMismatch(ValueError):
    """A quantity in a unit that does not convert into the licence's unit."""


def convert(quantity: Decimal, from_unit: str, to_unit: str) -> Decimal:
    """`quantity` in `from_unit`, expressed in `to_unit`, exactly (no rounding)."""
    if from_unit == to_unit:
        return quantity
    if from_unit in _GRAMS and to_unit in _GRAMS:
        return quantity * _GRAMS[from_unit] / _GRAMS[to_unit]
    raise UnitMismatch(f"{from_unit} does not convert to the licence's unit {to_unit}")


def plain(quantity: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros ("600", "0.0125")."""
    return format(quantity.normalize(), "f")


class LicenceSignatureInvalid(ValueError):
    """The licence's signature does not verify; the message says why."""


class LicenceSeal(Protocol):
    """Signs licences for their issuers and verifies the signatures (adapters/licences.py)."""

    def sign(self, issuer: str, content: dict[str, Any]) -> dict[str, str]: ...

    def verify(self, issuer: str, content: dict[str, Any], signature: dict[str, str]) -> None: ...


def number_index_id(number: str) -> UUID:
    return uuid5(LICENCE_NAMESPACE, f"number:{number}")


class LicenceNumber(Aggregate):
    """Which issuers have used a licence number: lets a citation without an issuer find its licence with one read,
    and see when two issuers' numbers collide. Saved with each licence's `Issued`, so it is never behind."""

    @staticmethod
    def create_id(number: str, **_: Any) -> UUID:
        return number_index_id(number)

    class Listed(Aggregate.Created):
        number: str
        issuer: str

    class IssuerAdded(Aggregate.Event):
        issuer: str

    @event(Listed)
    def __init__(self, number: str, issuer: str) -> None:
        self.number = number
        self.issuers = [issuer]

    @event(IssuerAdded)
    def _issuer_added(self, issuer: str) -> None:
        self.issuers.append(issuer)

    def add(self, issuer: str) -> bool:
        if issuer in self.issuers:
            return False
        self._issuer_added(issuer)
        return True


class LicenceClosed(Exception):
    """A command the licence refuses because it is revoked."""


class Licence(Aggregate):
    """One licence or certificate, with its reservations and what declarations consumed of it."""

    @staticmethod
    def create_id(issuer: str, number: str, **_: Any) -> UUID:
        return licence_id(issuer, number)

    class Issued(Aggregate.Created):
        number: str
        type: str
        issuer: str
        holder: str
        hs_scope: list[str]
        quantity: str
        unit: str
        valid_from: str
        valid_to: str
        signature: dict[str, str]
        source: str
        issued_by: str

    class Reserved(Aggregate.Event):
        """A declaration's version reserved `quantity` (in the licence's unit), replacing its earlier reservation.
        `items` says which goods items cited what, in their own units."""

        declaration_id: str
        declaration_version: int
        quantity: str
        items: list[dict[str, Any]]

    class Returned(Aggregate.Event):
        """The declaration's reservation went back to the licence (withdrawn, rejected, or amended away)."""

        declaration_id: str
        declaration_version: int
        quantity: str
        reason: str

    class Consumed(Aggregate.Event):
        """The declaration was released: its reservation is written off for good."""

        declaration_id: str
        declaration_version: int
        quantity: str

    class Suspended(Aggregate.Event):
        by: str
        reason: str
        at: str

    class Reinstated(Aggregate.Event):
        by: str
        reason: str
        at: str

    class Revoked(Aggregate.Event):
        by: str
        reason: str
        at: str

    # ---- event bodies: assignment only ------------------------------------------------

    @event(Issued)
    def __init__(self, number: str, type: str, issuer: str, holder: str, hs_scope: list[str], quantity: str,
                 unit: str, valid_from: str, valid_to: str, signature: dict[str, str], source: str,
                 issued_by: str) -> None:
        self.number = number
        self.type = type
        self.issuer = issuer
        self.holder = holder
        self.hs_scope = list(hs_scope)
        self.quantity = quantity
        self.unit = unit
        self.valid_from = valid_from
        self.valid_to = valid_to
        self.signature = dict(signature)
        self.source = source
        self.issued_by = issued_by
        self.suspended: dict[str, str] | None = None
        self.revoked: dict[str, str] | None = None
        self.reservations: dict[str, dict[str, Any]] = {}
        self.consumed: dict[str, dict[str, Any]] = {}
        # Running totals, so that checking a citation costs the same however often the licence was used.
        self.reserved_total = Decimal(0)
        self.consumed_total = Decimal(0)

    @event(Reserved)
    def _reserved(self, declaration_id: str, declaration_version: int, quantity: str,
                  items: list[dict[str, Any]]) -> None:
        self._unreserve(declaration_id)
        self.reservations[declaration_id] = {"version": declaration_version, "quantity": quantity, "items": items}
        self.reserved_total += Decimal(quantity)

    @event(Returned)
    def _returned(self, declaration_id: str, declaration_version: int, quantity: str, reason: str) -> None:
        self._unreserve(declaration_id)

    @event(Consumed)
    def _consumed(self, declaration_id: str, declaration_version: int, quantity: str) -> None:
        self._unreserve(declaration_id)
        self.consumed[declaration_id] = {"version": declaration_version, "quantity": quantity}
        self.consumed_total += Decimal(quantity)

    def _unreserve(self, declaration_id: str) -> None:
        own = self.reservations.pop(declaration_id, None)
        if own is not None:
            self.reserved_total -= Decimal(own["quantity"])

    @event(Suspended)
    def _suspended(self, by: str, reason: str, at: str) -> None:
        self.suspended = {"by": by, "reason": reason, "at": at}

    @event(Reinstated)
    def _reinstated(self, by: str, reason: str, at: str) -> None:
        self.suspended = None

    @event(Revoked)
    def _revoked(self, by: str, reason: str, at: str) -> None:
        self.revoked = {"by": by, "reason": reason, "at": at}

    # ---- derived state -------------------------------------------------------------------

    def content(self) -> dict[str, Any]:
        """What the issuer signed."""
        return {"number": self.number, "type": self.type, "issuer": self.issuer, "holder": self.holder,
                "hs_scope": list(self.hs_scope), "quantity": self.quantity, "unit": self.unit,
                "valid_from": self.valid_from, "valid_to": self.valid_to}

    @property
    def remaining(self) -> Decimal:
        """What declarations may still reserve, in the licence's unit."""
        return Decimal(self.quantity) - self.reserved_total - self.consumed_total

    def available_to(self, declaration_id: str) -> Decimal:
        """What `declaration_id` may reserve: the remaining quantity plus its own current reservation."""
        own = self.reservations.get(declaration_id)
        return self.remaining + (Decimal(own["quantity"]) if own else 0)

    def status_on(self, day: date) -> str:
        """valid, suspended, revoked, expired, or not_yet_valid (before `valid_from`) on `day`."""
        if self.revoked:
            return REVOKED
        if self.suspended:
            return SUSPENDED
        if day.isoformat() > self.valid_to:
            return EXPIRED
        if day.isoformat() < self.valid_from:
            return NOT_YET_VALID
        return VALID

    def covers(self, hs_code: str) -> bool:
        return any(hs_code.startswith(prefix) for prefix in self.hs_scope)

    # ---- commands: guards, then events ---------------------------------------------------

    def reserve(self, declaration_id: str, declaration_version: int, quantity: Decimal,
                items: list[dict[str, Any]]) -> bool:
        """Reserve `quantity` for the declaration's version, replacing its reservation. The caller has checked
        the quantity is available (`available_to`). Returns False when the same reservation already stands for
        this version.

        An amendment citing the same quantities still reserves anew: the reservation must carry the amended
        version, or an outcome of an earlier version (a rejection the licensing follower reads late) would give
        it back."""
        own = self.reservations.get(declaration_id)
        text = plain(quantity)
        if own is not None and (own["version"], own["quantity"], own["items"]) == (declaration_version, text, items):
            return False
        if declaration_id in self.consumed:
            raise LicenceClosed(f"declaration {declaration_id} has already consumed its quantity of this licence")
        self._reserved(declaration_id, declaration_version, text, items)
        return True

    def give_back(self, declaration_id: str, declaration_version: int, reason: str) -> bool:
        """Return the declaration's reservation, if one made at or before `declaration_version` stands."""
        own = self.reservations.get(declaration_id)
        if own is None or own["version"] > declaration_version:
            return False
        self._returned(declaration_id, declaration_version, own["quantity"], reason)
        return True

    def consume(self, declaration_id: str, declaration_version: int) -> bool:
        """Write off the declaration's reservation for good, if one made at or before `declaration_version`
        stands."""
        own = self.reservations.get(declaration_id)
        if own is None or own["version"] > declaration_version:
            return False
        self._consumed(declaration_id, declaration_version, own["quantity"])
        return True

    def suspend(self, by: str, reason: str, at: str) -> bool:
        if self.revoked:
            raise LicenceClosed("a revoked licence cannot be suspended")
        if self.suspended:
            return False
        self._suspended(by, reason, at)
        return True

    def reinstate(self, by: str, reason: str, at: str) -> bool:
        if self.revoked:
            raise LicenceClosed("a revoked licence cannot be reinstated")
        if not self.suspended:
            return False
        self._reinstated(by, reason, at)
        return True

    def revoke(self, by: str, reason: str, at: str) -> bool:
        if self.revoked:
            return False
        self._revoked(by, reason, at)
        return True


# How each of the ledger's events is named in the API, the views and the pages.
LEDGER_KINDS = {Licence.Reserved: "reserved", Licence.Returned: "returned", Licence.Consumed: "consumed"}
