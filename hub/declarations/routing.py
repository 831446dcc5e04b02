"""Routing rules as data: which agencies a declaration concerns, and why.

The rules live in a TOML file (the shipped `data/routing.toml`, or the file
`TRADEHUB_ROUTING_FILE` names). They are checked when loaded, so a typo in a
rule file stops the hub at start-up instead of misrouting declarations.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .documents import KINDS, TRANSPORT_MODES
from .domainmodel import AGENCIES

Document = dict[str, Any]


class RoutingError(ValueError):
    """The routing rules file is not valid."""


def _hs_chapters(document: Document, chapters: list[str]) -> str | None:
    for number, item in enumerate(document.get("items", ()), start=1):
        if item["hs_code"][:2] in chapters:
            return f"item {number} HS {item['hs_code']} is in chapter {item['hs_code'][:2]} of the catalogue"
    return None


def _document_types(document: Document, types: list[str]) -> str | None:
    for declared in document.get("documents", ()):
        if declared["type"] in types:
            return f"{declared['type']} {declared['number']} is declared"
    return None


def _transport_modes(document: Document, modes: list[str]) -> str | None:
    mode = document.get("transport", {}).get("mode")
    return f"{mode} transport" if mode in modes else None


def _has_containers(document: Document, wanted: bool) -> str | None:
    containers = document.get("containers", ())
    if bool(containers) != wanted:
        return None
    return f"{len(containers)} container(s)" if wanted else "no containers"


def _has_dangerous_goods(document: Document, wanted: bool) -> str | None:
    numbers = [item["un_number"] for item in document.get("items", ()) if "un_number" in item]
    numbers += [goods["un_number"] for goods in document.get("dangerous_goods", ())]
    if bool(numbers) != wanted:
        return None
    return f"dangerous goods UN {', '.join(numbers)}" if wanted else "no dangerous goods"


_PREDICATES: dict[str, tuple[type, Callable[[Document, Any], str | None]]] = {
    "hs_chapters": (list, _hs_chapters),
    "document_types": (list, _document_types),
    "transport_modes": (list, _transport_modes),
    "has_containers": (bool, _has_containers),
    "has_dangerous_goods": (bool, _has_dangerous_goods),
}


@dataclass(frozen=True)
class Rule:
    agency: str
    kinds: tuple[str, ...]
    when: tuple[dict[str, Any], ...]
    reason: str = ""

    def explain(self, document: Document) -> str | None:
        """Why this rule routes the document to its agency, or None if it does not."""
        for condition in self.when:
            reasons = [self._check(key, argument, document) for key, argument in condition.items()]
            if all(reasons):
                return ", ".join(reasons)  # type: ignore[arg-type]
        return None

    def _check(self, key: str, argument: Any, document: Document) -> str | None:
        if key == "always":
            return (self.reason or f"every {document['kind'].replace('_', ' ')}") if argument else None
        return _PREDICATES[key][1](document, argument)


class RoutingRules:
    """An ordered list of rules; `route` gives each involved agency with its reason.

    `recognition` maps each agency to the agencies whose inspection results it recognises.
    """

    def __init__(self, rules: list[Rule], recognition: dict[str, frozenset[str]] | None = None) -> None:
        self.rules = rules
        self.recognition = recognition or {}

    def recognises(self, agency: str, inspector: str) -> bool:
        """Whether `agency` takes `inspector`'s inspection results as its own (never its own results)."""
        return agency != inspector and inspector in self.recognition.get(agency, ())

    def recognisers(self, inspector: str, routed: Iterable[str]) -> list[str]:
        """The agencies among `routed` that recognise `inspector`'s results, in the hub's agency order."""
        routed = set(routed)
        return [agency for agency in AGENCIES if agency in routed and self.recognises(agency, inspector)]

    @classmethod
    def load(cls, path: str | Path | None = None) -> RoutingRules:
        if path is None:
            text = resources.files(__package__).joinpath("data/routing.toml").read_text("utf-8")
            source = "the shipped routing rules"
        else:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as error:
                raise RoutingError(f"{path}: {error.strerror}") from None
            source = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise RoutingError(f"{source}: {error}") from None
        return cls(list(_parse_rules(data, source)), _parse_recognition(data.get("recognition", {}), source))

    def route(self, document: Document) -> dict[str, str]:
        routes: dict[str, str] = {}
        for rule in self.rules:
            if document["kind"] in rule.kinds and rule.agency not in routes:
                reason = rule.explain(document)
                if reason is not None:
                    routes[rule.agency] = reason
        return {agency: routes[agency] for agency in AGENCIES if agency in routes}


def _parse_rules(data: dict[str, Any], source: str) -> Iterator[Rule]:
    unknown = set(data) - {"rule", "recognition"}
    if unknown:
        raise RoutingError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    for number, raw in enumerate(data.get("rule", []), start=1):
        where = f"{source}: rule {number}"
        extra = set(raw) - {"agency", "kinds", "when", "reason"}
        if extra:
            raise RoutingError(f"{where}: unknown key(s) {sorted(extra)}")
        if raw.get("agency") not in AGENCIES:
            raise RoutingError(f"{where}: agency must be one of {AGENCIES}, got {raw.get('agency')!r}")
        kinds = raw.get("kinds")
        if not kinds or not isinstance(kinds, list) or not set(kinds) <= set(KINDS):
            raise RoutingError(f"{where}: kinds must be a non-empty list drawn from {KINDS}")
        when = raw.get("when")
        if not when or not isinstance(when, list):
            raise RoutingError(f"{where}: when must be a non-empty list of conditions")
        for condition in when:
            _check_condition(condition, where)
        yield Rule(raw["agency"], tuple(kinds), tuple(when), str(raw.get("reason", "")))


def _parse_recognition(data: Any, source: str) -> dict[str, frozenset[str]]:
    where = f"{source}: [recognition]"
    if not isinstance(data, dict):
        raise RoutingError(f"{where} must be a table of agency = [agencies it recognises]")
    recognition = {}
    for agency, inspectors in data.items():
        if agency not in AGENCIES:
            raise RoutingError(f"{where}: {agency!r} is not an agency; use one of {AGENCIES}")
        if not isinstance(inspectors, list) or not set(inspectors) <= set(AGENCIES) - {agency}:
            raise RoutingError(f"{where}: {agency} must list other agencies, drawn from {AGENCIES}")
        recognition[agency] = frozenset(inspectors)
    return recognition


def _check_condition(condition: Any, where: str) -> None:
    if not isinstance(condition, dict) or not condition:
        raise RoutingError(f"{where}: each condition must be a non-empty table")
    for key, argument in condition.items():
        expected = bool if key == "always" else _PREDICATES.get(key, (None,))[0]
        if expected is None:
            raise RoutingError(f"{where}: unknown condition {key!r}; use always or {sorted(_PREDICATES)}")
        if not isinstance(argument, expected):
            raise RoutingError(f"{where}: {key} must be a {expected.__name__}")
        if key == "transport_modes" and not set(argument) <= set(TRANSPORT_MODES):
            raise RoutingError(f"{where}: transport_modes must be drawn from {TRANSPORT_MODES}")
