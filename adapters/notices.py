"""Hub notices: what the hub tells agencies beyond the declarations it routes to them (xsd/notices/).

Two notices (docs/messages.md), each to one agency's integration:

- a **recognition notice** carries an inspection result recorded by one agency
  to an agency whose rules recognise it (mutual recognition), so that agency
  can release without inspecting again;
- an **alert notice** tells an agency that a risk alert on a party (USCC), a
  ship (IMO number) or a container touches a declaration routed to it
  (enforcement assistance); when the alert is cleared, an **alert cleared
  notice** (function 1) cancels it.

They are not tied to one agency, so they live here beside the agency adapters.
Which agencies get them, and when, is decided by the processes that send them;
these are the pure mappings: explicit inputs, no clock, no lookups, and every
notice validated against the hub's schema before it may leave.

Each notice's id is `message_id(declaration_id, version, to_agency, key)`, with
a key naming the notice and what it carries
(`recognition-notice:<agency>:<result id>`, `alert-notice:<alert id>`,
`alert-cleared-notice:<alert id>`): a resend carries the same id, while two
inspections or alerts on one declaration never share one. `Message.name` is
the kind of notice alone, so it stays a safe file name whatever the ids hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from adapters.codes import IMO_NUMBER
from adapters.messages import Message, message_id
from adapters.xml import Schema, admit, check_outbound, one_line, wco_recorded_time
from hub.declarations import AGENCIES

NS = "urn:tradehub:notices:1"
RECOGNITION_NOTICE_SCHEMA = Schema("notices/notices.xsd", f"{{{NS}}}RecognitionNotice")
ALERT_NOTICE_SCHEMA = Schema("notices/notices.xsd", f"{{{NS}}}AlertNotice")

RECOGNITION_NOTICE, ALERT_NOTICE, ALERT_CLEARED_NOTICE = "recognition-notice", "alert-notice", "alert-cleared-notice"
# UN/EDIFACT 1225: an original notice, and the cancellation of one (the alert is cleared).
ORIGINAL, CANCELLATION = "9", "1"


def recognition_notice(declaration_id: str, version: int, to_agency: str, inspection: Mapping[str, str],
                       time: datetime) -> Message:
    """Tell `to_agency` of another agency's inspection result on the declaration, so it need not inspect again.

    `inspection` is an entry of `Declaration.inspections`: `agency`,
    `message_id` (that agency's id for the result), `result` ("pass" or
    "fail"), `findings` and `inspected_at` (ISO 8601). `version` is the
    declaration's version and `time` the time of the event that shares the
    result; the notice is issued at it.
    """
    if to_agency == inspection["agency"]:
        raise ValueError(f"{to_agency} recorded this inspection itself; recognition is for the other agencies")
    key = f"{RECOGNITION_NOTICE}:{inspection['agency']}:{inspection['message_id']}"
    ident = _notice_id(declaration_id, version, to_agency, key)
    root = _header(T["RecognitionNotice"], ORIGINAL, ident, declaration_id, version, time)
    element = _add(root, "Inspection")
    _add(element, "AgencyCode", inspection["agency"])
    _add(element, "FunctionalReferenceID", inspection["message_id"])
    _add(element, "ResultCode", inspection["result"])
    _recorded_time(element, "InspectionDateTime", inspection["inspected_at"], "the inspection")
    findings = one_line(inspection.get("findings", ""), 512)
    if findings:
        _statement(element, findings)
    body = check_outbound(root, RECOGNITION_NOTICE_SCHEMA)
    return Message(to_agency, RECOGNITION_NOTICE, ident, declaration_id, version, ORIGINAL, time, body)


def alert_notice(alert: Mapping[str, str], declaration_id: str, version: int, to_agency: str,
                 time: datetime) -> Message:
    """Tell `to_agency` that a risk alert was raised on something its declaration involves.

    `alert` has `alert_id`, `subject_kind` ("party", "vessel" or
    "container"), `subject` (the USCC, IMO number or ISO 6346 container
    number), `reason`, `raised_by` (the officer or agency) and `raised_at`
    (ISO 8601). `time` is the time of the event that flags the declaration.
    """
    return _alert_notice(ALERT_NOTICE, ORIGINAL, alert, declaration_id, version, to_agency, time)


def alert_cleared_notice(alert: Mapping[str, str], declaration_id: str, version: int, to_agency: str,
                         time: datetime) -> Message:
    """Tell `to_agency` that an alert it was told of is cleared: function 1, cancelling the alert notice.

    It carries the same alert as the notice it cancels; `time`, the time the
    alert was cleared, is its issue time.
    """
    return _alert_notice(ALERT_CLEARED_NOTICE, CANCELLATION, alert, declaration_id, version, to_agency, time)


def _alert_notice(name: str, function: str, alert: Mapping[str, str], declaration_id: str, version: int,
                  to_agency: str, time: datetime) -> Message:
    ident = _notice_id(declaration_id, version, to_agency, f"{name}:{alert['alert_id']}")
    body = _alert_body(function, ident, alert, declaration_id, version, time)
    return Message(to_agency, name, ident, declaration_id, version, function, time, body)


def _alert_body(function: str, ident: str, alert: Mapping[str, str], declaration_id: str, version: int,
                time: datetime) -> bytes:
    subject = _SUBJECTS.get(alert["subject_kind"])
    if subject is None:
        raise ValueError(f"an alert's subject_kind is one of {', '.join(_SUBJECTS)}, not {alert['subject_kind']!r}")
    root = _header(T["AlertNotice"], function, ident, declaration_id, version, time)
    element = _add(root, "Alert")
    _add(element, "ID", alert["alert_id"])
    subject(element, alert["subject"])
    _add(element, "RaisedBy", one_line(alert["raised_by"], 70))
    _recorded_time(element, "RaisedDateTime", alert["raised_at"], "the alert")
    _statement(element, alert["reason"])
    return check_outbound(root, ALERT_NOTICE_SCHEMA)


# ---- an agency's own alert (enforcement assistance, inbound) -----------------------------------------

@dataclass(frozen=True)
class AgencyAlert:
    """A risk alert an agency raises, in an alert notice of its own (function 9) about a declaration routed to it."""

    message_id: str  # the agency's id for its message: the hub's alert id derives from it
    function_code: str
    declaration_id: str
    version: int
    subject_kind: str
    subject: str
    reason: str
    raised_by: str


def agency_alert(alert: Mapping[str, str], message_id: str, declaration_id: str, version: int,
                 time: datetime) -> bytes:
    """The alert notice an agency sends the hub to raise `alert` (as for `alert_notice`), under its own id."""
    return _alert_body(ORIGINAL, message_id, alert, declaration_id, version, time)


def read_agency_alert(data: bytes | etree._Element) -> AgencyAlert:
    """An agency's alert notice, through the gate (`Refused` if it does not pass)."""
    root = admit(data, ALERT_NOTICE_SCHEMA)
    alert = root.find(T["Alert"])
    kind, subject = next((kind, _text(element, T["ID"])) for kind, tag in _SUBJECT_TAGS.items()
                         for element in alert.iterchildren(tag))
    return AgencyAlert(
        message_id=_text(root, T["FunctionalReferenceID"]), function_code=_text(root, T["FunctionCode"]),
        declaration_id=_text(root, T["ID"]), version=int(_text(root, T["VersionID"])), subject_kind=kind,
        subject=subject, reason=_text(alert, f"{T['AdditionalInformation']}/{T['StatementDescription']}"),
        raised_by=_text(alert, T["RaisedBy"]))


def _text(parent: etree._Element, path: str) -> str:
    element = parent.find(path)
    return (element.text or "").strip() if element is not None else ""


def _notice_id(declaration_id: str, version: int, to_agency: str, key: str) -> str:
    if to_agency not in AGENCIES:
        raise ValueError(f"no agency {to_agency!r}; the agencies are {', '.join(AGENCIES)}")
    return message_id(declaration_id, version, to_agency, key)


# ---- building ------------------------------------------------------------------------------

# Tags in Clark notation, made once.
T = {name: f"{{{NS}}}{name}" for name in (
    "AdditionalInformation", "AgencyCode", "Alert", "AlertNotice", "BorderTransportMeans", "DateTimeString",
    "FunctionCode", "FunctionalReferenceID", "ID", "IdentificationTypeCode", "Inspection", "InspectionDateTime",
    "IssueDateTime", "Party", "RaisedBy", "RaisedDateTime", "RecognitionNotice", "ResultCode",
    "StatementDescription", "TransportEquipment", "VersionID",
)}
_SubElement = etree.SubElement


def _add(parent: etree._Element, name: str, text: str | None = None, attributes: dict[str, str] | None = None,
         ) -> etree._Element:
    element = _SubElement(parent, T[name], attributes)
    if text is not None:
        element.text = text
    return element


def _header(tag: str, function: str, ident: str, declaration_id: str, version: int,
            time: datetime) -> etree._Element:
    root = etree.Element(tag, nsmap={None: NS})
    _add(root, "FunctionCode", function)
    _add(root, "FunctionalReferenceID", ident)
    _add(root, "ID", declaration_id)
    _add(root, "VersionID", str(version))
    _add(_add(root, "IssueDateTime"), "DateTimeString", time.astimezone(UTC).strftime("%Y%m%d%H%M%SZ"),
         {"formatCode": "304"})
    return root


def _statement(parent: etree._Element, text: str) -> None:
    _add(_add(parent, "AdditionalInformation"), "StatementDescription", one_line(text, 512))


def _recorded_time(parent: etree._Element, name: str, text: str, what: str) -> None:
    """A time the hub recorded (ISO 8601), as WCO writes it; an unreadable one fails loudly, never goes out."""
    value, code = wco_recorded_time(text, what)
    _add(_add(parent, name), "DateTimeString", value, {"formatCode": code})


def _party(alert: etree._Element, uscc: str) -> None:
    _add(_add(alert, "Party"), "ID", uscc, {"schemeID": "USCC"})


def _vessel(alert: etree._Element, imo: str) -> None:
    means = _add(alert, "BorderTransportMeans")
    _add(means, "ID", imo)
    _add(means, "IdentificationTypeCode", IMO_NUMBER)


def _container(alert: etree._Element, number: str) -> None:
    _add(_add(alert, "TransportEquipment"), "ID", number)


# What an alert can be on, and how each is identified in the notice.
_SUBJECTS: dict[str, Callable[[etree._Element, str], None]] = {
    "party": _party, "vessel": _vessel, "container": _container,
}
_SUBJECT_TAGS = {"party": T["Party"], "vessel": T["BorderTransportMeans"], "container": T["TransportEquipment"]}
