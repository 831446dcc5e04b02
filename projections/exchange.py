"""Information exchange: for a declaration, each agency's messages sent, acknowledged and decided, with times.

Each agency's decision is shown beside the others', and the flows between
agencies that the hub carries without the trader: the release notice that
tells the port customs and inspection have released (and its revocation,
when a hold or an amendment comes after it), recognition notices,
and alert notices, each with the `type` of the message that carries it, so
that who may see a flow is decided as for the message. Times are the hub's:
when it recorded each answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.declarations import Declaration
from hub.declarations.domainmodel import AGENCIES, GATE_OUT_AGENCIES, INSPECTED, RECEIVED

from . import messages as message_record
from .database import Cursor, ViewDatabase
from .status_board import stamp

NAME = "exchange"
# The messages that carry each flow, named as dispatch records them (their Message.name): a flow's `type`.
RELEASE_NOTICE, RELEASE_REVOCATION = "release-notice", "release-revocation"
RELEASES = {RELEASE_NOTICE: "release notice", RELEASE_REVOCATION: "release revoked"}
RECOGNITION_NOTICE, ALERT_NOTICE, ALERT_CLEARED_NOTICE = "recognition-notice", "alert-notice", "alert-cleared-notice"


class Exchange:
    name = NAME
    tables = (
        "CREATE TABLE IF NOT EXISTS exchange_agencies ("
        " declaration_id TEXT NOT NULL, agency TEXT NOT NULL, acknowledged_at TEXT, decided_at TEXT,"
        " decision TEXT, code TEXT NOT NULL DEFAULT '', text TEXT NOT NULL DEFAULT '',"
        " PRIMARY KEY (declaration_id, agency))",
    )

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        # One row per (declaration, agency) a batch: its first answer of any kind is the acknowledgement
        # (a decision acknowledges too), its last decision is the decision.
        rows: dict[tuple[str, str], list[Any]] = {}
        for _, event in events:
            if isinstance(event, Declaration.AgencyResponded):
                decision = None if event.status == RECEIVED else (event.status, event.code, event.text)
            elif isinstance(event, Declaration.InspectionRecorded):
                decision = (INSPECTED, event.result, event.findings)
            else:
                continue
            key, moment = (str(event.originator_id), event.agency), stamp(event.timestamp)
            row = rows.get(key)
            if row is None:
                row = rows[key] = [*key, moment, None, None, "", ""]
            if decision is not None:
                row[3:] = [moment, *decision]
        cursor.bulk(
            "INSERT INTO exchange_agencies (declaration_id, agency, acknowledged_at, decided_at, decision, code, text)"
            " SELECT * FROM {rows} WHERE true ON CONFLICT (declaration_id, agency) DO UPDATE SET"
            " acknowledged_at = COALESCE(exchange_agencies.acknowledged_at, excluded.acknowledged_at),"
            " decided_at = COALESCE(excluded.decided_at, exchange_agencies.decided_at),"
            " decision = COALESCE(excluded.decision, exchange_agencies.decision),"
            " code = CASE WHEN excluded.decided_at IS NULL THEN exchange_agencies.code ELSE excluded.code END,"
            " text = CASE WHEN excluded.decided_at IS NULL THEN exchange_agencies.text ELSE excluded.text END",
            "declaration_id text, agency text, acknowledged_at text, decided_at text, decision text, code text,"
            " text text", list(rows.values()))


def exchange_view(database: ViewDatabase, declaration_id: str) -> dict[str, Any]:
    """The matrix of agencies by message sent, acknowledged and decided, and the flows between agencies."""
    states = {agency: (status, bool(routed)) for agency, status, routed in database.query(
        "SELECT agency, status, routed FROM board_agencies WHERE declaration_id = ?", (declaration_id,))}
    answers = {row[0]: row[1:] for row in database.query(
        "SELECT agency, acknowledged_at, decided_at, decision, code, text FROM exchange_agencies"
        " WHERE declaration_id = ?", (declaration_id,))}
    sent = message_record.first_sent(database, declaration_id)
    first_sent: dict[str, str] = {}
    messages: dict[str, int] = {}
    for agency, _, moment, count in sent:
        first_sent[agency] = min(first_sent.get(agency, moment), moment)
        messages[agency] = messages.get(agency, 0) + count
    agencies = []
    for agency in AGENCIES:
        if agency not in states:
            continue
        status, routed = states[agency]
        acknowledged_at, decided_at, decision, code, text = answers.get(agency, (None, None, None, "", ""))
        agencies.append({"agency": agency, "routed": routed, "status": status, "code": code, "text": text,
                         "sent_at": first_sent.get(agency), "messages_sent": messages.get(agency, 0),
                         "acknowledged_at": acknowledged_at, "decided_at": decided_at, "decision": decision})
    return {"declaration_id": declaration_id, "agencies": agencies, "flows": _flows(database, declaration_id, states)}


def _flows(database: ViewDatabase, declaration_id: str, states: dict[str, tuple[str, bool]]
           ) -> list[dict[str, Any]]:
    """Information one agency's decision sent to another through the hub, in time order."""
    flows = []
    routed = [agency for agency, (_, is_routed) in states.items() if is_routed]
    sources = [agency for agency in GATE_OUT_AGENCIES if agency in routed]
    for agency, kind, moment in message_record.sent_of_types(
            database, declaration_id, (RELEASE_NOTICE, RELEASE_REVOCATION)):
        flows.extend({"from": source, "to": agency, "type": kind, "message": RELEASES[kind], "time": moment}
                     for source in sources)
    for inspector, recogniser, moment, result in database.query(
            "SELECT i.agency, r.agency, r.notified_at, i.result FROM recognitions r JOIN recognition_inspections i"
            " ON i.declaration_id = r.declaration_id AND i.message_id = r.message_id WHERE r.declaration_id = ?",
            (declaration_id,)):
        flows.append({"from": inspector, "to": recogniser, "type": RECOGNITION_NOTICE,
                      "message": f"recognition notice ({result})", "time": moment})
    for raised_by, subject, moment, lifted in database.query(
            "SELECT a.raised_by, a.subject_kind || ' ' || a.subject, h.held_at, h.lifted_at FROM alert_holds h"
            " JOIN alerts a ON a.id = h.alert_id WHERE h.declaration_id = ?", (declaration_id,)):
        flows.extend({"from": raised_by, "to": agency, "type": ALERT_NOTICE, "message": f"alert notice: {subject}",
                      "time": moment} for agency in routed)
        if lifted:
            flows.extend({"from": raised_by, "to": agency, "type": ALERT_CLEARED_NOTICE,
                          "message": f"alert cleared: {subject}", "time": lifted} for agency in routed)
    return sorted(flows, key=lambda flow: (flow["time"], flow["from"], flow["to"]))
