"""The trader desk's goods form: the common fields of a goods declaration as named form fields, both ways.

A field's name is its JSON path without the leading `$.` (`consignee.name`, `items[2].hs_code`), so an error
the hub reports for `$.items[2].hs_code` lands beside the input of that name with no table to keep in step.

The form never loses what it does not show. It is filled over a *base* document (the one being amended or
copied; empty for a new declaration) that travels in a hidden field: the fields the form has replace the
base's, the base's other fields (documents, licences cited by an item, a party's address ...) stay. The base
comes from the browser, so it is only a convenience: the result is validated in full like any submission.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.declarations.documents import TRANSPORT_MODES, FieldError

ITEM_FIELDS = ("hs_code", "description", "origin", "quantity", "unit", "gross_kg", "net_kg", "value", "currency")
ITEM_ROWS_MIN = 3  # empty rows a new form offers
ITEM_ROWS_MAX = 50  # rows a form may carry; a longer list goes by JSON or spreadsheet upload
MAX_BASE_BYTES = 512 * 1024  # the hidden base document; larger ones are refused, not cut


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    choices: tuple[str, ...] = ()
    hint: str = ""
    maxlength: int = 70


HEADER = (
    Field("reference", "Your reference", maxlength=35, hint="unique among your declarations"),
    Field("direction", "Direction", choices=("import", "export")),
    Field("declarant.name", "Declarant name"),
    Field("customs_office", "Customs office", maxlength=8, hint="e.g. 3702"),
    Field("port_of_loading", "Port of loading", maxlength=5, hint="UN/LOCODE, e.g. VNSGN"),
    Field("port_of_discharge", "Port of discharge", maxlength=5, hint="UN/LOCODE, e.g. CNXMN"),
    Field("consignor.name", "Consignor name"),
    Field("consignor.country", "Consignor country", maxlength=2, hint="ISO 3166 alpha-2"),
    Field("consignee.id", "Consignee id", maxlength=18, hint="USCC for a Chinese party"),
    Field("consignee.name", "Consignee name"),
    Field("consignee.country", "Consignee country", maxlength=2),
    Field("transport.mode", "Transport mode", choices=TRANSPORT_MODES),
    Field("transport.vessel.name", "Vessel name", maxlength=35),
    Field("transport.vessel.imo", "Vessel IMO number", maxlength=10),
    Field("transport.vessel.voyage", "Voyage", maxlength=35),
    Field("transport.bill_of_lading", "Bill of lading", maxlength=35),
)
CONTAINERS = Field("containers", "Containers", hint="ISO 6346 numbers, one per line or separated by commas")
MAX_FIELDS = len(HEADER) + 1 + len(ITEM_FIELDS) * ITEM_ROWS_MAX + 10  # and a few of the page's own (base, version)
_ROW = re.compile(r"items\[(\d{1,3})\]\.(\w+)")
_SEPARATORS = re.compile(r"[\s,;]+")


class BaseRefused(ValueError):
    """The hidden base document is not a JSON object of a goods declaration (or is too large)."""


def base_of(text: str) -> dict[str, Any]:
    """The base document a form was filled over; {} for none."""
    if not text.strip():
        return {}
    if len(text.encode("utf-8")) > MAX_BASE_BYTES:
        raise BaseRefused(f"the form's base document is over {MAX_BASE_BYTES // 1024} KiB; upload it as JSON")
    try:
        base = json.loads(text)
    except ValueError:
        raise BaseRefused("the form's base document is not JSON; reload the form") from None
    if not isinstance(base, dict) or base.get("kind", "goods") != "goods":
        raise BaseRefused("the form's base document is not a goods declaration; reload the form")
    return base


def values_of(document: Mapping[str, Any]) -> dict[str, str]:
    """The form's field values for `document` (every field the form shows; "" where the document has none)."""
    values = {field.name: _text(_get(document, field.name)) for field in HEADER}
    values[CONTAINERS.name] = "\n".join(str(c) for c in document.get("containers") or () if isinstance(c, str))
    for i, item in enumerate(_items(document)[:ITEM_ROWS_MAX]):
        for name in ITEM_FIELDS:
            values[f"items[{i}].{name}"] = _text(item.get(name))
    return values


def items_beyond(document: Mapping[str, Any]) -> int:
    """How many items of `document` the form does not show (they are kept as they are)."""
    return max(0, len(_items(document)) - ITEM_ROWS_MAX)


def item_rows(document: Mapping[str, Any]) -> int:
    """How many item rows the form shows for `document`: its items and one empty row, at least ITEM_ROWS_MIN."""
    return min(ITEM_ROWS_MAX, max(ITEM_ROWS_MIN, len(_items(document)) + 1))


def document_of(form: Mapping[str, str], base: Mapping[str, Any],
                declarant: str) -> tuple[dict[str, Any], dict[int, int]]:
    """The document the form describes, over `base`, declared by `declarant`; and for each goods item of it the
    form row it came from (blank rows are left out, so item 1 may be row 2: errors are shown on the row). The
    base's items past ITEM_ROWS_MAX, which the form does not show, follow unchanged.

    An emptied field is removed rather than sent blank, so the hub names it as missing."""
    document = json.loads(json.dumps(base))  # a copy the form may change freely
    document["kind"] = "goods"
    for field in HEADER:
        _put(document, field.name, form.get(field.name, "").strip())
    for field in sorted(HEADER, key=lambda f: -f.name.count(".")):  # objects the form emptied go too
        parent = field.name.rpartition(".")[0]
        if parent and _get(document, parent) == {}:
            _put(document, parent, "")
    declarant_part = document.get("declarant") if isinstance(document.get("declarant"), dict) else {}
    document["declarant"] = {**declarant_part, "id": declarant}
    containers = [c for c in _SEPARATORS.split(form.get(CONTAINERS.name, "").strip().upper()) if c]
    document["containers"] = containers
    base_items = _items(base)
    items, rows = [], {}
    for row in range(ITEM_ROWS_MAX):
        entered = {name: form.get(f"items[{row}].{name}", "").strip() for name in ITEM_FIELDS}
        if not any(entered.values()):
            continue
        item = dict(base_items[row]) if row < len(base_items) and isinstance(base_items[row], dict) else {}
        for name, value in entered.items():
            if value:
                item[name] = value
            else:
                item.pop(name, None)
        rows[len(items)] = row
        items.append(item)
    items.extend(base_items[ITEM_ROWS_MAX:])  # the form shows the first ITEM_ROWS_MAX; the rest stay as they are
    document["items"] = items
    return document, rows


def errors_by_field(errors: list[FieldError], rows: Mapping[int, int]) -> tuple[dict[str, str], list[str]]:
    """The hub's errors as {form field name: message} for the fields the form shows, and the rest as lines
    ("$.documents[0].number: ...") for the top of the form."""
    shown = {field.name for field in HEADER} | {CONTAINERS.name}
    beside: dict[str, str] = {}
    rest: list[str] = []
    for error in errors:
        name = error.path.removeprefix("$.")
        row = _ROW.match(name)
        if row is not None and int(row.group(1)) not in rows:  # an item the form does not show
            rest.append(str(error))
            continue
        if row is not None:
            name = f"items[{rows[int(row.group(1))]}].{row.group(2)}" + name[row.end():]
        if name.startswith("containers["):
            name = CONTAINERS.name
        target = _nearest(name, shown)
        if target is None:
            rest.append(str(error))
        else:
            beside[target] = f"{beside[target]}; {error.message}" if target in beside else error.message
    return beside, rest


def _nearest(name: str, shown: set[str]) -> str | None:
    """The form field an error's path is about: itself, or for an item's field the row's input of that name."""
    if name in shown:
        return name
    row = _ROW.fullmatch(name)
    if row is not None and row.group(2) in ITEM_FIELDS:
        return name
    if name in ("declarant", "declarant.id"):
        return None  # the token's party: not a field of the form
    for field in HEADER:  # "transport.vessel" missing: shown on its first input
        if field.name.startswith(name + "."):
            return field.name
    return None


def _items(document: Mapping[str, Any]) -> list[Any]:
    items = document.get("items")
    return items if isinstance(items, list) else []


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _get(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _put(document: dict[str, Any], path: str, value: str) -> None:
    """Set (or with "" remove) the value at a dotted path, making the objects on the way."""
    *parents, last = path.split(".")
    target = document
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            if not value:
                return
            child = target[part] = {}
        target = child
    if value:
        target[last] = value
    else:
        target.pop(last, None)
