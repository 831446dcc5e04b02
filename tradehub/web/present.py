"""What the officer pages show, worked out from the hub's data: pure functions, no HTTP.

Times are stored as ISO 8601 strings or aware datetimes; pages show them in
UTC, to the second. The per-agency timeline interleaves the messages the hub
exchanged with an agency with the answers its log holds for that agency, in
the order they happened on the declaration's log.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from adapters.wording import answer_words
from hub.declarations import AGENCIES
from hub.declarations.documents import KINDS
from hub.declarations.domainmodel import OVERALL_STATUSES
from projections.messages import log_places
from projections.status_board import Filters
from tradehub.summaries import Fact, label, summary, value_total  # noqa: F401  (the pages' words and header)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string or a datetime; None if it is neither."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def utc(value: Any) -> str:
    """A time as people read it: `2026-03-02 08:30:15 UTC`; anything unreadable as it is."""
    moment = parse_time(value)
    if moment is None:
        return "" if value is None else str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: Any) -> str:
    """The machine-readable form, for `<time datetime=…>`."""
    moment = parse_time(value)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else ""


def duration(seconds: float | None) -> str:
    """A span in the two largest units that matter: `250 ms`, `45 s`, `4 min 12 s`, `2 h 30 min`, `3 d 4 h`."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 and seconds != whole else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# ---- the board's filters ------------------------------------------------------------------------

FILTER_FIELDS = ("status", "kind", "agency", "declarant", "reference", "submitted_from", "submitted_to")
_CHOICES = {"status": OVERALL_STATUSES, "kind": KINDS, "agency": AGENCIES}
_LENGTHS = {"declarant": 18, "reference": 35}


@dataclass
class BoardQuery:
    """The board's GET form as submitted: the values to echo, the filters, and what was wrong."""

    values: dict[str, str]
    filters: Filters
    cursor: str | None
    errors: dict[str, str] = field(default_factory=dict)

    def link(self, **changes: str | None) -> str:
        """The board's URL with these filters, and `changes` on top (None drops a parameter)."""
        params = {key: value for key, value in self.values.items() if value}
        for key, value in changes.items():
            if value:
                params[key] = value
            else:
                params.pop(key, None)
        return "/board" + ("?" + urlencode(params) if params else "")


def board_query(params: Mapping[str, str]) -> BoardQuery:
    """Read the board's form. Its filters are the caller's wish: what it may see of them is
    tradehub/visibility.py's `listing`."""
    values = {key: (params.get(key) or "").strip() for key in FILTER_FIELDS}
    errors: dict[str, str] = {}
    chosen: dict[str, Any] = {}
    for key, allowed in _CHOICES.items():
        if values[key] and values[key] not in allowed:
            errors[key] = f"{key} must be one of {', '.join(allowed)}"
        chosen[key] = values[key] if values[key] and key not in errors else None
    for key, longest in _LENGTHS.items():
        if len(values[key]) > longest:
            errors[key] = f"{key} has at most {longest} characters"
        chosen[key] = values[key] if values[key] and key not in errors else None
    for key, end_of_day in (("submitted_from", False), ("submitted_to", True)):
        chosen[key] = None
        if values[key]:
            try:
                chosen[key] = _bound(values[key], end_of_day)
            except ValueError:
                errors[key] = f"{label(key)} must be a date (YYYY-MM-DD) or an ISO 8601 time"
    cursor = (params.get("cursor") or "").strip()[:200] or None
    filters = Filters(status=chosen["status"], kind=chosen["kind"], agency=chosen["agency"],
                      declarant=chosen["declarant"], reference=chosen["reference"],
                      submitted_from=chosen["submitted_from"], submitted_to=chosen["submitted_to"])
    return BoardQuery(values, filters, cursor, errors)


def _bound(value: str, end_of_day: bool) -> datetime:
    """A date means the whole day (UTC): `from` its start, `to` the start of the next."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    return start + timedelta(days=1) if end_of_day else start


# ---- alerts -----------------------------------------------------------------------------------

def alert_row(alert: Any) -> dict[str, Any]:
    """An `Alert` aggregate as a row of the alerts view (projections/alerts.py); the declarations it holds are
    the enforcement follower's to find, so none yet."""
    cleared = alert.status == "cleared"
    return {"id": str(alert.id), "subject_kind": alert.subject_kind, "subject": alert.subject,
            "reason": alert.reason, "raised_by": alert.raised_by, "raised_at": alert.created_on,
            "status": alert.status, "cleared_at": alert.modified_on if cleared else None,
            "cleared_by": alert.cleared_by or None, "declarations": [], "catching_up": True}


def with_alert(alerts: Sequence[Mapping[str, Any]], stored: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The view's alerts with `stored` (fresher: from the store) in place of its row, keeping the declarations
    the view found; at the top when the view has not got it yet."""
    for index, row in enumerate(alerts):
        if row["id"] == stored["id"]:
            behind = row["status"] != stored["status"] or not row["declarations"]
            fresh = {**stored, "declarations": row["declarations"], "catching_up": behind}
            return [*alerts[:index], fresh, *alerts[index + 1:]]
    return [stored, *alerts]


# ---- the declaration page -----------------------------------------------------------------------

def worded_exchange(exchange: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The information exchange view with each agency's answer in `answer_words`."""
    return {**exchange, "agencies": [{**row, "text": answer_words(kind, row["agency"], str(row.get("code") or ""),
                                                                 str(row.get("text") or ""))}
                                     for row in exchange.get("agencies", [])]}


_NOT_SHOWN = {"type", "version", "time", "document", "content_hash"}


def history_rows(events: Sequence[Mapping[str, Any]], kind: str = "goods") -> list[dict[str, Any]]:
    """Each event with its key fields as (name, text) pairs; documents are left to their own section. An
    answer's text reads as on the rest of the page (`answer_words`)."""
    rows = []
    for event in events:
        if event["type"] == "AgencyResponded" and event.get("text"):
            event = {**event, "text": answer_words(kind, str(event.get("agency", "")), str(event.get("code") or ""),
                                                   str(event["text"]))}
        fields = [(label(key), utc(value) if key.endswith("_at") and parse_time(value) else _text(value))
                  for key, value in event.items() if key not in _NOT_SHOWN and value not in ("", None, {}, [])]
        rows.append({"type": event["type"], "version": event["version"], "time": event["time"],
                     "fields": fields})
    return rows


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {_text(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_text(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class Entry:
    """One line of an agency's timeline."""

    time: str
    kind: str  # "sent", "received" or "answer"
    title: str
    detail: str = ""
    status: str = ""
    message_id: str = ""


@dataclass
class AgencyTimeline:
    agency: str
    routed: bool
    reason: str
    status: str
    code: str
    text: str
    updated_at: str
    entries: list[Entry]


def timelines(agencies: Mapping[str, Mapping[str, Any]], messages: Sequence[Mapping[str, Any]],
              events: Sequence[Mapping[str, Any]], kind: str = "goods") -> list[AgencyTimeline]:
    """For each agency the declaration was routed to: its messages and answers in the order they happened, and
    where it stands.

    `messages` come in the order they happened (`recorded_messages` with the history); each answer in `events`
    joins them at its place in the log, never by the clocks, which are the agencies' own for what they send.
    An inbound message shows the status its answer set; an answer with no recorded message (applied before the
    record existed, or the second reply in one message) stands on its own. Answers read in `answer_words` for
    the declaration's `kind`.
    """
    answers: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        if event["type"] in ("AgencyResponded", "InspectionRecorded"):
            answers.setdefault(event["agency"], []).append(event)
    result = []
    for name in _in_order(agencies):
        state = agencies[name]
        by_message: dict[str, list[Mapping[str, Any]]] = {}
        for event in answers.get(name, []):
            by_message.setdefault(str(event["message_id"]).split(":")[0], []).append(event)
        exchanged = _exchanged([message for message in messages if message["agency"] == name], events, by_message,
                               kind)
        unmatched = sorted((((event["version"], 0), Entry(
            time=event["time"], kind="answer", title=_answer_title(event), detail=_answer_text(event, kind),
            status=_answer_status(event), message_id=str(event["message_id"])))
            for group in by_message.values() for event in group), key=lambda pair: pair[0])
        entries = [entry for _, entry in heapq.merge(exchanged, unmatched, key=lambda pair: pair[0])]
        result.append(AgencyTimeline(
            agency=name, routed=bool(state.get("routed")), reason=str(state.get("reason", "")),
            status=str(state.get("status", "")), code=str(state.get("code", "")),
            text=answer_words(kind, name, str(state.get("code", "")), str(state.get("text", ""))),
            updated_at=str(state.get("updated_at", "")), entries=entries))
    return result


def _exchanged(messages: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
               by_message: dict[str, list[Mapping[str, Any]]], kind: str) -> list[tuple[tuple[int, int], Entry]]:
    """An agency's messages as timeline entries, each at its place in the log (`log_places`); the answers each
    inbound one carried are taken out of `by_message`."""
    entries = []
    for place, message in zip(log_places(messages, events), messages, strict=True):
        outbound = message["direction"] == "outbound"
        matched = [] if outbound else by_message.pop(message["message_id"], [])
        entries.append((place, Entry(
            time=message["time"], kind="sent" if outbound else "received",
            title=f"{'Sent' if outbound else 'Received'} {message['type']}",
            detail=" · ".join([f"version {message['version']}",
                               *filter(None, (_answer_text(event, kind) for event in matched))]),
            status=_answer_status(matched[-1]) if matched else "", message_id=message["message_id"])))
    return entries


def _in_order(agencies: Iterable[str]) -> list[str]:
    present = set(agencies)
    return [name for name in AGENCIES if name in present] + sorted(present - set(AGENCIES))


def _answer_status(event: Mapping[str, Any]) -> str:
    return str(event.get("status") or ("inspected" if event["type"] == "InspectionRecorded" else ""))


def _answer_title(event: Mapping[str, Any]) -> str:
    if event["type"] == "InspectionRecorded":
        return f"Inspection: {event.get('result', '')}"
    return f"Answer: {label(event.get('status', ''))}"


def _answer_text(event: Mapping[str, Any], kind: str) -> str:
    """What the answer said beyond its status (which the page shows as a chip)."""
    if event["type"] == "InspectionRecorded":
        parts = [f"inspection {event.get('result', '')}", str(event.get("findings") or "")]
    else:
        code = str(event.get("code") or "")
        parts = [code, answer_words(kind, str(event.get("agency", "")), code, str(event.get("text") or ""))]
    return " – ".join(part for part in parts if part)
