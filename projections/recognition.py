"""Mutual recognition: each inspection result, who recognised it, and the inspections saved.

When an agency records an inspection result, each routed agency whose rules
recognise that agency gets a recognition notice (dispatch sends it; the rules
are the hub's routing rules, so this view and dispatch agree). A recognition
saves an inspection when the recognising agency then releases the
declaration without recording an inspection of its own.

Documents are recognised too: a licence or certificate issued by an agency
(inspection's phytosanitary certificate, say) and cited by a goods item of a
declaration routed to customs reaches customs as recognised when customs'
rules recognise its issuer (adapters/citations.py), to be taken with no
check of its own. The view keeps, per declaration as its latest version
cites them, the documents customs recognises, with their type and, if the
issuer revoked one since, when: all of it from the log (the declarations'
events and the licences'), so a rebuild gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.declarations import Declaration, Declarations, Licence
from hub.declarations.domainmodel import RELEASED

from .database import Cursor, ViewDatabase, rounds
from .status_board import stamp

NAME = "recognition"
# The agency every cited document is sent to (customs gets all of them; inspection only the certificates of the
# items it inspects): the one whose recognition of documents this view counts.
DOCUMENT_RECOGNISER = "customs"


class Recognition:
    name = NAME
    tables = (
        "CREATE TABLE IF NOT EXISTS recognition_routes (declaration_id TEXT PRIMARY KEY, reference TEXT NOT NULL,"
        " agencies TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS recognition_inspections ("
        " declaration_id TEXT NOT NULL, message_id TEXT NOT NULL, agency TEXT NOT NULL, result TEXT NOT NULL,"
        " findings TEXT NOT NULL, inspected_at TEXT NOT NULL, recorded_at TEXT NOT NULL,"
        " PRIMARY KEY (declaration_id, message_id))",
        "CREATE INDEX IF NOT EXISTS recognition_inspections_by_time ON recognition_inspections (recorded_at)",
        # One row per (inspection, agency that recognises it); `inspected` (not 0) if that agency inspected too.
        "CREATE TABLE IF NOT EXISTS recognitions ("
        " declaration_id TEXT NOT NULL, message_id TEXT NOT NULL, agency TEXT NOT NULL, notified_at TEXT NOT NULL,"
        " released_at TEXT, inspected INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (declaration_id, message_id, agency))",
        "CREATE INDEX IF NOT EXISTS recognitions_by_agency ON recognitions (declaration_id, agency)",
        # One row per document a declaration's latest version cites that an agency recognises; `items` the
        # 1-based positions of the goods items citing it.
        "CREATE TABLE IF NOT EXISTS recognition_documents ("
        " declaration_id TEXT NOT NULL, issuer TEXT NOT NULL, number TEXT NOT NULL, agency TEXT NOT NULL,"
        " items TEXT NOT NULL, version INTEGER NOT NULL, cited_at TEXT NOT NULL,"
        " PRIMARY KEY (declaration_id, issuer, number, agency))",
        "CREATE INDEX IF NOT EXISTS recognition_documents_by_time ON recognition_documents (cited_at)",
        # The licences of the log, for the type of each document and when its issuer revoked it.
        "CREATE TABLE IF NOT EXISTS recognition_licences (licence_id TEXT PRIMARY KEY, issuer TEXT NOT NULL,"
        " number TEXT NOT NULL, type TEXT NOT NULL, revoked_at TEXT)",
        "CREATE UNIQUE INDEX IF NOT EXISTS recognition_licences_by_number ON recognition_licences (issuer, number)",
    )

    def __init__(self, app: Declarations) -> None:
        self.rules = app.routing

    def forget(self) -> None:
        """Nothing kept in memory."""

    def apply(self, cursor: Cursor, events: Sequence[tuple[int, Any]]) -> None:
        routes: dict[str, tuple[str, str]] = {}  # declaration -> (reference, routed agencies), as of this batch
        inspections: list[tuple[Any, tuple[str, str] | None]] = []  # each with its routes, if in this batch
        released = []
        documents: dict[str, list[tuple]] = {}  # declaration -> the documents its latest version has recognised
        issued: list[tuple[str, str, str, str]] = []  # (licence id, issuer, number, type)
        revoked: list[tuple[str, str]] = []  # (licence id, when)
        for _, event in events:
            declaration_id = str(event.originator_id)
            if isinstance(event, Licence.Issued):  # the originator is the licence
                issued.append((str(event.originator_id), event.issuer, event.number, event.type))
                continue
            if isinstance(event, Licence.Revoked):
                revoked.append((str(event.originator_id), stamp(event.timestamp)))
                continue
            if isinstance(event, Declaration.Submitted | Declaration.Amended):
                routes[declaration_id] = (event.document["reference"], ",".join(event.routes))
                documents[declaration_id] = self._documents(declaration_id, event)
            elif isinstance(event, Declaration.InspectionRecorded):
                inspections.append((event, routes.get(declaration_id)))
            elif isinstance(event, Declaration.AgencyResponded) and event.status == RELEASED:
                released.append((declaration_id, event.agency, stamp(event.timestamp)))
        cursor.bulk(
            "INSERT INTO recognition_routes (declaration_id, reference, agencies) SELECT * FROM {rows} WHERE true"
            " ON CONFLICT (declaration_id) DO UPDATE SET agencies = excluded.agencies",
            "declaration_id text, reference text, agencies text",
            [(declaration_id, reference, agencies) for declaration_id, (reference, agencies) in routes.items()])
        if inspections:
            self._inspected(cursor, inspections)
        if documents or issued or revoked:
            _documents(cursor, documents, issued, revoked)
        # A release saves an inspection only if it came after the recognition notice.
        for releases in rounds(released, key=lambda row: row[:2]):
            cursor.bulk("UPDATE recognitions SET released_at = batch.released_at FROM {rows}"
                        " WHERE recognitions.declaration_id = batch.declaration_id"
                        " AND recognitions.agency = batch.agency AND recognitions.released_at IS NULL"
                        " AND recognitions.notified_at <= batch.released_at",
                        "declaration_id text, agency text, released_at text", releases)

    def _documents(self, declaration_id: str, event: Any) -> list[tuple]:
        """The documents `event`'s version of the declaration cites that the recogniser recognises, as rows."""
        if DOCUMENT_RECOGNISER not in event.routes:
            return []
        cited: dict[tuple[str, str], list[str]] = {}
        for position, item in enumerate(event.document.get("items") or (), 1):
            for citation in item.get("licences") or ():
                issuer = citation.get("issuer")
                if issuer and self.rules.recognises(DOCUMENT_RECOGNISER, issuer):
                    cited.setdefault((issuer, citation["number"]), []).append(str(position))
        cited_at = stamp(event.timestamp)
        return [(declaration_id, issuer, number, DOCUMENT_RECOGNISER, ",".join(items), event.originator_version,
                 cited_at) for (issuer, number), items in cited.items()]

    def _inspected(self, cursor: Cursor, inspections: list[tuple[Any, tuple[str, str] | None]]) -> None:
        unknown = sorted({str(event.originator_id) for event, routed in inspections if routed is None})
        stored: dict[str, str] = {}
        if unknown:  # routed in an earlier batch
            cursor.execute(f"SELECT declaration_id, agencies FROM recognition_routes WHERE declaration_id IN"
                           f" ({', '.join('?' * len(unknown))})", unknown)
            stored = dict(cursor.fetchall())
        rows, inspected, recognitions = [], [], []
        for event, routed in inspections:
            declaration_id, recorded = str(event.originator_id), stamp(event.timestamp)
            agencies = routed[1] if routed else stored.get(declaration_id, "")
            rows.append((declaration_id, event.message_id, event.agency, event.result, event.findings,
                         event.inspected_at, recorded))
            inspected.append((declaration_id, event.agency))
            recognitions += [(declaration_id, event.message_id, agency, recorded)
                             for agency in self.rules.recognisers(event.agency, agencies.split(","))]
        # An agency that inspected the goods itself, before or after, saved no inspection by recognising.
        cursor.bulk(
            "INSERT INTO recognition_inspections (declaration_id, message_id, agency, result, findings,"
            " inspected_at, recorded_at) SELECT * FROM {rows} WHERE true ON CONFLICT DO NOTHING",
            "declaration_id text, message_id text, agency text, result text, findings text, inspected_at text,"
            " recorded_at text", rows)
        cursor.bulk(
            "INSERT INTO recognitions (declaration_id, message_id, agency, notified_at, inspected)"
            " SELECT batch.declaration_id, batch.message_id, batch.agency, batch.notified_at,"
            " (SELECT COUNT(*) FROM recognition_inspections i WHERE i.declaration_id = batch.declaration_id"
            " AND i.agency = batch.agency) FROM {rows} WHERE true ON CONFLICT DO NOTHING",
            "declaration_id text, message_id text, agency text, notified_at text", recognitions)
        cursor.bulk("UPDATE recognitions SET inspected = 1 FROM {rows}"
                    " WHERE recognitions.declaration_id = batch.declaration_id AND recognitions.agency = batch.agency",
                    "declaration_id text, agency text", inspected)


def _documents(cursor: Cursor, documents: dict[str, list[tuple]], issued: list[tuple], revoked: list[tuple]) -> None:
    """Replace each declaration's recognised documents by its latest version's; note licences issued and revoked."""
    cursor.bulk("DELETE FROM recognition_documents WHERE declaration_id IN (SELECT declaration_id FROM {rows})",
                "declaration_id text", [(declaration_id,) for declaration_id in documents])
    cursor.bulk(
        "INSERT INTO recognition_documents (declaration_id, issuer, number, agency, items, version, cited_at)"
        " SELECT * FROM {rows} WHERE true ON CONFLICT DO NOTHING",
        "declaration_id text, issuer text, number text, agency text, items text, version integer, cited_at text",
        [row for rows in documents.values() for row in rows])
    cursor.bulk("INSERT INTO recognition_licences (licence_id, issuer, number, type) SELECT * FROM {rows} WHERE true"
                " ON CONFLICT DO NOTHING", "licence_id text, issuer text, number text, type text", issued)
    cursor.bulk("UPDATE recognition_licences SET revoked_at = batch.revoked_at FROM {rows}"
                " WHERE recognition_licences.licence_id = batch.licence_id AND recognition_licences.revoked_at IS NULL",
                "licence_id text, revoked_at text", revoked)


def recognition_view(database: ViewDatabase, agency: str | None = None, *, limit: int = 500) -> dict[str, Any]:
    """Inspections, newest first, with who recognised each; for an officer, on its agency's declarations only."""
    visible = ("" if agency is None else
               " JOIN board_agencies v ON v.declaration_id = i.declaration_id AND v.agency = ?")
    scope = [agency] if agency else []
    rows = database.query(
        "SELECT i.declaration_id, COALESCE(r.reference, ''), i.agency, i.result, i.inspected_at, i.message_id,"
        " i.findings, i.recorded_at FROM recognition_inspections i"
        f" LEFT JOIN recognition_routes r ON r.declaration_id = i.declaration_id{visible}"
        " ORDER BY i.recorded_at DESC, i.message_id LIMIT ?", (*scope, limit))
    inspections = [{"declaration_id": declaration_id, "reference": reference, "agency": inspector,
                    "result": result, "inspected_at": inspected_at, "message_id": message_id,
                    "findings": findings, "recorded_at": recorded_at, "recognised_by": []}
                   for declaration_id, reference, inspector, result, inspected_at, message_id, findings, recorded_at
                   in rows]
    if inspections:
        keyed = {(item["declaration_id"], item["message_id"]): item for item in inspections}
        declarations = sorted({item["declaration_id"] for item in inspections})
        for declaration_id, message_id, recogniser, notified_at, released_at, inspected in database.query(
                "SELECT declaration_id, message_id, agency, notified_at, released_at, inspected FROM recognitions"
                f" WHERE declaration_id IN ({', '.join('?' * len(declarations))}) ORDER BY agency", declarations):
            item = keyed.get((declaration_id, message_id))
            if item is not None:
                item["recognised_by"].append({"agency": recogniser, "notified_at": notified_at,
                                              "released_at": released_at,
                                              "saved": released_at is not None and not inspected})
    [(count, recognitions, saved)] = database.query(
        "SELECT (SELECT COUNT(*) FROM recognition_inspections i"
        f"{visible}), COUNT(*), COUNT(CASE WHEN x.released_at IS NOT NULL AND x.inspected = 0 THEN 1 END)"
        " FROM recognitions x" + ("" if agency is None else
                                  " JOIN board_agencies w ON w.declaration_id = x.declaration_id AND w.agency = ?"),
        scope * 2)
    documents, recognised = _recognised_documents(database, agency, limit)
    return {"inspections": inspections, "documents": documents,
            "totals": {"inspections": count, "recognitions": recognitions, "inspections_saved": saved,
                       "documents_recognised": recognised}}


def _recognised_documents(database: ViewDatabase, agency: str | None, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Declarations whose documents an agency recognised, newest first, each with those documents; and how many
    documents were recognised in all. An officer sees its agency's declarations only."""
    visible = ("" if agency is None else
               " JOIN board_agencies v ON v.declaration_id = d.declaration_id AND v.agency = ?")
    scope = [agency] if agency else []
    rows = database.query(
        "SELECT d.declaration_id, COALESCE(r.reference, ''), d.version, d.agency, d.cited_at, d.issuer, d.number,"
        " d.items, COALESCE(l.type, ''), l.revoked_at FROM recognition_documents d"
        " LEFT JOIN recognition_routes r ON r.declaration_id = d.declaration_id"
        f" LEFT JOIN recognition_licences l ON l.issuer = d.issuer AND l.number = d.number{visible}"
        " ORDER BY d.cited_at DESC, d.declaration_id, d.agency, d.issuer, d.number LIMIT ?", (*scope, limit))
    declarations: dict[tuple[str, str], dict[str, Any]] = {}
    for declaration_id, reference, version, recogniser, cited_at, issuer, number, items, kind, revoked_at in rows:
        entry = declarations.setdefault((declaration_id, recogniser), {
            "declaration_id": declaration_id, "reference": reference, "version": version,
            "recognised_by": recogniser, "cited_at": cited_at, "documents": []})
        entry["documents"].append({"number": number, "issuer": issuer, "type": kind or None,
                                   "items": [int(position) for position in items.split(",")],
                                   "revoked_at": revoked_at})
    [(count,)] = database.query(f"SELECT COUNT(*) FROM recognition_documents d{visible}", scope)
    return list(declarations.values()), count
