"""The business register (一照一码): one `Party` per unified social credit code, and what declarations take from it.

Each legal person in China has one USCC on one licence. The register holds,
for each, its registered name, its address and whether it is still active.
It lives in the declarations' own log, keyed by `party_id(uscc)`, so a
party's changes are events like any other and the register can be rebuilt
or audited from the log.

When the hub is run with the register required (`TRADEHUB_PARTY_REGISTER`),
`fill_parties` is applied to a submitted document before it is validated:
the declarant and every Chinese party must be in the register and active, and
a party given by its USCC alone is filled with the register's name and
address ("reported once"), so the stored document holds what the register
said at the time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from . import values
from .documents import FieldError

ACTIVE, DEREGISTERED = "active", "deregistered"
STATUSES = (ACTIVE, DEREGISTERED)
# TRADEHUB_PARTY_REGISTER: "off" (the default: declarations are not checked against the register) or "required".
REGISTER_OFF, REGISTER_REQUIRED = "off", "required"
REGISTER_MODES = (REGISTER_OFF, REGISTER_REQUIRED)
NAME_LENGTH = 70  # a declaration's party name (documents.Name), and WCO's an..70
ADDRESS_LENGTH = 70  # one WCO Address Line (an..70), which is how customs gets it
# The roles whose parties the register checks: the declarant always (it is identified by its USCC), the others
# when they are Chinese.
ROLES = ("declarant", "consignor", "consignee")

# Fixed forever: a party's id derives from it, so the register is found by USCC alone.
PARTY_NAMESPACE = UUID("5b0c3f6e-2d7a-5e41-9c83-71f2a4d6e0b9")


def party_id(uscc: str) -> UUID:
    """The id of the register entry for a (canonical) USCC."""
    return uuid5(PARTY_NAMESPACE, uscc)


class PartyInvalid(ValueError):
    """A register entry with fields the hub cannot take; `errors` names each (`$.name`, ...)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


class Party(Aggregate):
    """One entry of the business register."""

    class Registered(Aggregate.Created):
        uscc: str
        name: str
        address: str
        status: str
        by: str

    class Changed(Aggregate.Event):
        name: str
        address: str
        by: str

    class Deregistered(Aggregate.Event):
        by: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = DEREGISTERED
            aggregate.deregistered_at = self.timestamp  # "deregistered since": the event's own time
            aggregate.updated_by = self.by

    class Reactivated(Aggregate.Event):
        by: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ACTIVE
            aggregate.deregistered_at = None
            aggregate.updated_by = self.by

    @staticmethod
    def create_id(uscc: str) -> UUID:
        return party_id(uscc)

    @event(Registered)
    def __init__(self, uscc: str, name: str, address: str, status: str, by: str) -> None:
        self.uscc = uscc
        self.name = name
        self.address = address
        self.status = status
        self.deregistered_at: datetime | None = self.created_on if status == DEREGISTERED else None
        self.updated_by = by

    @event(Changed)
    def _changed(self, name: str, address: str, by: str) -> None:
        self.name = name
        self.address = address
        self.updated_by = by

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def update(self, name: str, address: str, status: str, by: str) -> bool:
        """Bring the entry to these fields (already checked: `party_fields`); False when it already has them."""
        changed = False
        if (name, address) != (self.name, self.address):
            self._changed(name, address, by)
            changed = True
        if status != self.status:
            self.trigger_event(self.Deregistered if status == DEREGISTERED else self.Reactivated, by=by)
            changed = True
        return changed

    def fields(self) -> dict[str, str]:
        return {"uscc": self.uscc, "name": self.name, "address": self.address, "status": self.status}


def party_fields(uscc: Any, name: Any, address: Any, status: Any) -> dict[str, str]:
    """A register entry's fields in canonical form; `PartyInvalid` naming every field at fault."""
    errors: list[FieldError] = []
    checked: dict[str, str] = {}
    checks: dict[str, Callable[[str], str]] = {
        "uscc": values.uscc,
        "name": lambda value: values.text(value, NAME_LENGTH),
        "address": lambda value: values.text(value, ADDRESS_LENGTH),
        "status": _status,
    }
    for field, value in {"uscc": uscc, "name": name, "address": address, "status": status}.items():
        if value is None or value == "":
            errors.append(FieldError(f"$.{field}", "is required"))
        elif not isinstance(value, str):
            errors.append(FieldError(f"$.{field}", "must be a string"))
        else:
            try:
                checked[field] = checks[field](value)
            except ValueError as error:
                errors.append(FieldError(f"$.{field}", str(error)))
    if errors:
        raise PartyInvalid(errors)
    return checked


def _status(value: str) -> str:
    status = value.strip().lower()
    if status not in STATUSES:
        raise ValueError(f"must be one of {', '.join(STATUSES)}, got {value[:40]!r}")
    return status


# ---- declarations against the register --------------------------------------------------------------

# Distinct canonical USCCs -> the register's entries among them (those it does not hold are left out).
Lookup = Callable[[Collection[str]], Mapping[str, Party]]


def fill_parties(raw: Any, lookup: Lookup) -> tuple[Any, list[FieldError]]:
    """Check a submitted document's parties against the register and fill what they leave out.

    Returns the document (a shallow copy where a party was filled, else `raw` itself) and the refusals, each
    naming the party's id (`$.consignee.id`). Checked are the declarant and every party whose country is CN,
    or that gives no country but a valid USCC (no other country's party id is 18 characters: WCO's are
    an..17): such a party is Chinese, and its country is filled too. A checked party must be in the register
    and active; its name and address, where it gives none, are the register's. Anything malformed is left as
    it is for `validate_document` to report. `lookup` is called once, with every distinct USCC.
    """
    if not isinstance(raw, dict):
        return raw, []
    checked: dict[str, str] = {}  # role -> its canonical USCC
    errors: list[FieldError] = []
    for role in ROLES:
        party = raw.get(role)
        if not isinstance(party, dict):
            continue
        if role != "declarant":
            country = _country(party.get("country"))
            if country is None and "country" in party or country not in ("CN", None):
                continue  # foreign, or a country validation refuses
            if party.get("id") is None:
                if country == "CN":
                    errors.append(FieldError(f"$.{role}.id", "is required: a Chinese party is identified by its "
                                                             "USCC, which the business register must hold"))
                continue
        uscc = _uscc(party.get("id"))
        if uscc is not None:
            checked[role] = uscc
    if not checked:
        return raw, errors
    found = lookup(set(checked.values()))
    filled = raw
    for role, uscc in checked.items():
        entry = found.get(uscc)
        if entry is None:
            errors.append(FieldError(f"$.{role}.id", f"{uscc} is not in the business register"))
        elif not entry.active:
            since = entry.deregistered_at.date().isoformat() if entry.deregistered_at else "an unknown date"
            errors.append(FieldError(f"$.{role}.id", f"{uscc} is deregistered since {since}"))
        else:
            party = raw[role]
            additions = {key: value for key, value in _register_values(role, entry).items() if key not in party}
            if additions:
                if filled is raw:
                    filled = dict(raw)
                filled[role] = {**party, **additions}
    return filled, errors


def _register_values(role: str, entry: Party) -> dict[str, str]:
    found = {"name": entry.name, "address": entry.address}
    return found if role == "declarant" else {"country": "CN", **found}


def _country(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return values.country(value)
    except ValueError:
        return None


def _uscc(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return values.uscc(value.strip())
    except ValueError:
        return None
