"""Value types of a declaration: trade identifiers, code lists, exact quantities.

Each checker takes the submitted string and returns its canonical form, or
raises ValueError with a reason a trader can act on. Identifiers with check
digits go through python-stdnum, countries and currencies through pycountry,
units through the shipped UN/ECE Recommendation 20 list.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from importlib import resources

import pycountry
from stdnum import imo as stdnum_imo
from stdnum import iso6346
from stdnum.cn import uscc as stdnum_uscc
from stdnum.exceptions import InvalidChecksum, InvalidLength

_DECIMAL = re.compile(r"-?\d+(\.\d+)?", re.ASCII)
_LOCODE = re.compile(r"[A-Z]{2}[A-Z2-9]{3}", re.ASCII)
_HS_CODE = re.compile(r"\d{6}(\d{2}){0,2}", re.ASCII)
_UN_NUMBER = re.compile(r"\d{4}", re.ASCII)
_CALL_SIGN = re.compile(r"[A-Z0-9]{3,7}", re.ASCII)
# ISO 6346 itself, which stdnum checks only loosely (its owner code is any three \w, digits included).
_CONTAINER = re.compile(r"[A-Z]{3}[UJZR]\d{7}", re.ASCII)
_CUSTOMS_OFFICE = re.compile(r"\d{4}|[A-Z]{2}[A-Z0-9]{6}", re.ASCII)
# ISO 8601 in the extended calendar form only: no week dates, no basic (compact) form.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?", re.ASCII)
IMDG_CLASSES = frozenset(
    "1.1 1.2 1.3 1.4 1.5 1.6 2.1 2.2 2.3 3 4.1 4.2 4.3 5.1 5.2 6.1 6.2 7 8 9".split()
)


def text(value: str, max_length: int) -> str:
    """Free text: not blank, no control characters, at most `max_length` characters."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters, got {len(value)}")
    if value.isprintable():  # the common case, checked in C
        return value
    for position, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValueError(f"contains control or unassigned character U+{ord(char):04X} at {position}")
    return value


# Identifiers recur across declarations (the same declarant, vessel, ports), so
# the pure checkers below remember recent answers. Failures are not cached.
_remember = lru_cache(maxsize=8192)


def _checked(validate, value: str, what: str) -> str:
    try:
        return validate(value)
    except InvalidChecksum:
        raise ValueError(f"{value!r} is not a valid {what}: the check digit is wrong") from None
    except InvalidLength:
        raise ValueError(f"{value!r} is not a valid {what}: wrong length") from None
    except ValueError:  # stdnum's ValidationError, or a plain ValueError on odd characters
        raise ValueError(f"{value!r} is not a valid {what}") from None


@_remember
def uscc(value: str) -> str:
    """China unified social credit code (GB 32100-2015), 18 characters."""
    return _checked(stdnum_uscc.validate, value, "unified social credit code (USCC)").upper()


@_remember
def imo_number(value: str) -> str:
    """IMO ship identification number, seven digits (the `IMO` prefix is dropped)."""
    return _checked(stdnum_imo.validate, value, "IMO ship number")


@_remember
def container_number(value: str) -> str:
    """ISO 6346 freight container number: owner code (three letters), category, serial, check digit."""
    number = _checked(iso6346.validate, value, "ISO 6346 container number")
    if not _CONTAINER.fullmatch(number):
        raise ValueError(f"{value!r} is not a valid ISO 6346 container number: the owner code must be three letters")
    return number


@_remember
def country(value: str) -> str:
    """ISO 3166-1 alpha-2 country code."""
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code


@_remember
def currency(value: str) -> str:
    """ISO 4217 alphabetic currency code."""
    code = value.strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return code


@_remember
def locode(value: str) -> str:
    """UN/LOCODE: a country code and three letters or digits 2-9 (`CNXMN`, `CN XMN`)."""
    code = value.replace(" ", "").upper()
    if not _LOCODE.fullmatch(code):
        raise ValueError(f"{value!r} is not a UN/LOCODE (country code + 3 letters or digits 2-9)")
    country(code[:2])
    return code


@_remember
def hs_code(value: str) -> str:
    """Harmonized System code: 6 digits, or 8 or 10 with national subdivisions."""
    code = value.replace(".", "").replace(" ", "")
    if not _HS_CODE.fullmatch(code):
        raise ValueError(f"{value!r} is not an HS code (6, 8 or 10 digits)")
    chapter = int(code[:2])  # 01-97, 77 reserved; 98 and 99 are for national use
    if chapter == 0 or chapter == 77:
        raise ValueError(f"{value!r} is not an HS code: chapter {code[:2]} does not exist")
    return code


def hs_prefix(value: str) -> str:
    """The start of HS codes a licence covers: 2 to 10 digits, an even number of them (chapter, heading...)."""
    code = value.strip().replace(".", "")
    if not (code.isascii() and code.isdigit() and 2 <= len(code) <= 10 and len(code) % 2 == 0):
        raise ValueError(f"{value!r} is not an HS prefix (2, 4, 6, 8 or 10 digits)")
    return code


def un_number(value: str) -> str:
    """UN number of a dangerous substance (UN Model Regulations), `0004` to `3599`."""
    code = value.strip().upper().removeprefix("UN").strip()
    if not _UN_NUMBER.fullmatch(code) or not 4 <= int(code) <= 3599:
        raise ValueError(f"{value!r} is not a UN number (four digits, 0004 to 3599)")
    return code


def imdg_class(value: str) -> str:
    if value not in IMDG_CLASSES:
        raise ValueError(f"{value!r} is not an IMDG hazard class or division (1.1 ... 9)")
    return value


def call_sign(value: str) -> str:
    code = value.replace(" ", "").upper()
    if not _CALL_SIGN.fullmatch(code):
        raise ValueError(f"{value!r} is not a radio call sign (3 to 7 letters or digits)")
    return code


def customs_office(value: str) -> str:
    """A customs office: a Chinese 4-digit customs code or an 8-character EU reference."""
    code = value.strip().upper()
    if not _CUSTOMS_OFFICE.fullmatch(code):
        raise ValueError(f"{value!r} is not a customs office code (4 digits, or 2 letters + 6)")
    return code


@cache
def rec20_units() -> frozenset[str]:
    """The UN/ECE Recommendation 20 unit codes shipped with the hub."""
    rows = resources.files(__package__).joinpath("data/rec20.tsv").read_text("utf-8").splitlines()
    return frozenset(row.split("\t", 1)[0] for row in rows[1:] if row)


@_remember
def unit(value: str) -> str:
    """A unit of measure from UN/ECE Recommendation 20 (`KGM`, `H87`, `LTR` ...)."""
    code = value.strip().upper()
    if code not in rec20_units():
        raise ValueError(f"{value!r} is not a UN/ECE Recommendation 20 unit code")
    return code


def decimal(value: str, *, positive: bool = False, max_places: int = 6, max_digits: int = 16) -> Decimal:
    """An exact decimal written as a string (`"12650.5"`); JSON numbers are refused upstream."""
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"{value!r} is not a decimal number written like \"1250.50\"")
    try:
        number = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError(f"{value!r} is not a decimal number") from None
    if value.startswith("-"):
        raise ValueError(f"must not be negative, got {value}")
    if positive and number == 0:
        raise ValueError("must be greater than zero")
    places = -number.as_tuple().exponent if "." in value else 0
    if places > max_places:
        raise ValueError(f"must have at most {max_places} decimal places, got {places}")
    if len(value.replace(".", "").replace("-", "").lstrip("0")) > max_digits:
        raise ValueError(f"must have at most {max_digits} digits")
    return number


@cache
def _plain_decimal(max_places: int) -> re.Pattern[str]:
    return re.compile(rf"\d+(\.\d{{1,{max_places}}})?", re.ASCII)


def decimal_string(value: str, *, positive: bool = False, max_places: int = 6, max_digits: int = 16) -> str:
    """`decimal`, as the string given: a fast path for the common well-formed case."""
    if (_plain_decimal(max_places).fullmatch(value) and value[0] != "0"
            and len(value) - ("." in value) <= max_digits):
        return value
    decimal(value, positive=positive, max_places=max_places, max_digits=max_digits)
    return value


def calendar_date(value: str, *, earliest: date = date(1900, 1, 1), latest: date | None = None) -> str:
    """An ISO 8601 calendar date, YYYY-MM-DD."""
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)") from None
    if day < earliest or (latest is not None and day > latest):
        raise ValueError(f"{value} is outside {earliest} .. {latest or 'any'}")
    return value


# Ship movements the hub can report: agency formats (IMO FAL as Trafic2000 writes it) stop at 2999.
_EARLIEST_MOVEMENT, _LATEST_MOVEMENT = datetime(2000, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)


def timestamp(value: str) -> datetime:
    """An ISO 8601 date and time with a UTC offset (`2026-12-01T08:00:00+08:00`), in 2000-2999."""
    try:
        if not _DATE_TIME.fullmatch(value):
            raise ValueError
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (add Z or +08:00, say)")
    if not _EARLIEST_MOVEMENT <= moment < _LATEST_MOVEMENT:
        raise ValueError(f"{value} is outside the years 2000-2999")
    return moment
