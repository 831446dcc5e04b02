"""Hub notices: recognition of another agency's inspection, and risk alerts raised and cleared."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree

from adapters.messages import message_id
from adapters.notices import (
    ALERT_NOTICE_SCHEMA,
    RECOGNITION_NOTICE_SCHEMA,
    alert_cleared_notice,
    alert_notice,
    recognition_notice,
)
from adapters.xml import InvalidMessage, check_outbound
from hub.declarations import Declarations

from . import samples
from .messaging import EVENT_TIME, EXAMPLES, GOLDEN, assert_golden, second_validator

NS = "urn:tradehub:notices:1"
X = {"n": NS}
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}
DECLARATION_ID = "c2ad4b28-7e33-5848-82a5-407803017886"
SHRIMP_TEST = {"agency": "inspection", "message_id": "INSP-2026-000017", "result": "pass",
               "findings": "inspection passed;  No residues,\n cold chain intact",
               "inspected_at": "2026-03-02T09:40:00Z"}
ON_THE_TRADER = {"alert_id": "ALERT-2026-0007", "subject_kind": "party", "subject": samples.TRADER_A,
                 "reason": "Undervaluation of seafood imports under investigation", "raised_by": "customs",
                 "raised_at": "2026-03-01T16:00:00+08:00"}
ON_THE_SHIP = {"alert_id": "ALERT-2026-0008", "subject_kind": "vessel", "subject": "9074729",
               "reason": "Reported ballast water discharge in port\tlimits", "raised_by": "maritime",
               "raised_at": "2026-03-02T07:00:00Z"}
ON_THE_BOX = {"alert_id": "ALERT 2026/0009", "subject_kind": "container", "subject": "MSKU1234565",
              "reason": "Seal number does not match the manifest", "raised_by": "officer 3702-117 (customs)",
              "raised_at": "2026-02-28"}


def tree(message) -> etree._Element:
    return etree.fromstring(message.body)


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text for element in root.xpath(path, namespaces=X)]


def recorded(document: dict, agency: str, reference: str, result: str, when: str, findings: str = "") -> tuple:
    """A declaration with one inspection recorded through the hub, and that inspection as it stores it."""
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ident = str(app.submit(document).declaration.id)
    app.record_inspection(ident, agency, reference, result, when, findings=findings)
    declaration = app.get(ident)
    return ident, declaration.version, declaration.inspections[-1]


# ---- the cases every golden, validity and determinism test runs over ----------------------

def _cases() -> dict[str, callable]:
    goods = json.loads((EXAMPLES / "goods-import.json").read_text())
    passed = recorded(goods, "inspection", "INSP-2026-000017", "pass", "2026-03-02T09:40:00Z",
                      findings="inspection passed; No residues, cold chain intact")
    failed = recorded(samples.vessel_call(), "maritime", "MSA-PSC-2026-0311", "fail",
                      "2026-03-02T17:40:00+08:00", findings="Lifeboat release gear defective")
    return {
        "recognition-pass": lambda: recognition_notice(passed[0], passed[1], "customs", passed[2], EVENT_TIME),
        "recognition-fail": lambda: recognition_notice(failed[0], failed[1], "port", failed[2], EVENT_TIME),
        "alert-party-raised": lambda: alert_notice(ON_THE_TRADER, DECLARATION_ID, 1, "customs", EVENT_TIME),
        "alert-vessel-raised": lambda: alert_notice(ON_THE_SHIP, DECLARATION_ID, 3, "port", EVENT_TIME),
        "alert-container-cleared": lambda: alert_cleared_notice(ON_THE_BOX, DECLARATION_ID, 4, "inspection",
                                                                EVENT_TIME),
    }


CASES = _cases()
# What each case is: notice name, function code (UN/EDIFACT 1225), root element, recipient.
KINDS = {
    "recognition-pass": ("recognition-notice", "9", "RecognitionNotice", "customs"),
    "recognition-fail": ("recognition-notice", "9", "RecognitionNotice", "port"),
    "alert-party-raised": ("alert-notice", "9", "AlertNotice", "customs"),
    "alert-vessel-raised": ("alert-notice", "9", "AlertNotice", "port"),
    "alert-container-cleared": ("alert-cleared-notice", "1", "AlertNotice", "inspection"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_notice_matches_its_golden_file(case: str):
    assert_golden(f"notices/{case}.xml", CASES[case]().body)


def test_every_golden_file_belongs_to_a_case():
    assert {path.stem for path in (GOLDEN / "notices").glob("*.xml")} == set(CASES) == set(KINDS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_notice_is_valid_to_xmlschema_too(case: str):
    errors = list(second_validator(RECOGNITION_NOTICE_SCHEMA.name).iter_errors(tree(CASES[case]())))
    assert not errors, errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_notice_is_the_same_bytes_every_time(case: str):
    assert CASES[case]() == CASES[case]()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_notice_says_what_it_is_and_when(case: str):
    notice = CASES[case]()
    name, function, root, to_agency = KINDS[case]
    assert (notice.agency, notice.name, notice.function_code) == (to_agency, name, function)
    assert notice.filename == f"{to_agency}-{name}.xml"
    assert notice.issued_at == EVENT_TIME
    document = tree(notice)
    assert document.tag == f"{{{NS}}}{root}"
    assert texts(document, "/*/n:FunctionCode") == [function]
    assert texts(document, "/*/n:FunctionalReferenceID") == [notice.message_id]
    assert texts(document, "/*/n:ID") == [notice.declaration_id]
    assert texts(document, "/*/n:VersionID") == [str(notice.version)]
    assert texts(document, "/*/n:IssueDateTime/n:DateTimeString") == ["20260302083015Z"]


def test_the_issue_time_is_the_one_given_in_utc_and_never_the_id():
    local = datetime(2026, 3, 2, 16, 30, 15, tzinfo=timezone(timedelta(hours=8)))
    first = recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST, EVENT_TIME)
    later = recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST, local + timedelta(hours=1))
    assert texts(tree(later), "/*/n:IssueDateTime/n:DateTimeString") == ["20260302093015Z"]
    assert later.message_id == first.message_id and later.body != first.body


def test_every_notice_has_its_own_id_and_a_resend_the_same():
    notices = [
        recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST, EVENT_TIME),
        recognition_notice(DECLARATION_ID, 2, "port", SHRIMP_TEST, EVENT_TIME),
        recognition_notice(DECLARATION_ID, 3, "customs", SHRIMP_TEST, EVENT_TIME),
        recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"message_id": "INSP-2026-000018"},
                           EVENT_TIME),
        recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"agency": "maritime"}, EVENT_TIME),
        alert_notice(ON_THE_TRADER, DECLARATION_ID, 2, "customs", EVENT_TIME),
        alert_cleared_notice(ON_THE_TRADER, DECLARATION_ID, 2, "customs", EVENT_TIME),
        alert_notice(ON_THE_SHIP, DECLARATION_ID, 2, "customs", EVENT_TIME),
        alert_notice(ON_THE_TRADER, "94314c9a-8fff-527e-98f1-e15e3b5b8c30", 2, "customs", EVENT_TIME),
    ]
    assert len({notice.message_id for notice in notices}) == len(notices)
    assert notices[0].message_id == recognition_notice(DECLARATION_ID, 2, "customs", dict(SHRIMP_TEST),
                                                       EVENT_TIME).message_id
    assert notices[0].message_id == message_id(DECLARATION_ID, 2, "customs",
                                               "recognition-notice:inspection:INSP-2026-000017")
    assert notices[5].message_id == message_id(DECLARATION_ID, 2, "customs", "alert-notice:ALERT-2026-0007")


# ---- recognition -----------------------------------------------------------------------------

def test_a_recognition_notice_carries_who_inspected_what_they_found_and_when():
    root = tree(CASES["recognition-fail"]())
    inspection = "/n:RecognitionNotice/n:Inspection"
    assert texts(root, f"{inspection}/n:AgencyCode") == ["maritime"]
    assert texts(root, f"{inspection}/n:FunctionalReferenceID") == ["MSA-PSC-2026-0311"]
    assert texts(root, f"{inspection}/n:ResultCode") == ["fail"]
    assert texts(root, f"{inspection}/n:InspectionDateTime/n:DateTimeString") == ["20260302094000Z"]
    assert texts(root, f"{inspection}/n:AdditionalInformation/n:StatementDescription") == [
        "Lifeboat release gear defective"]


def test_findings_travel_on_one_line_and_none_means_no_statement():
    root = tree(recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST, EVENT_TIME))
    assert texts(root, "//n:Inspection/n:AdditionalInformation/n:StatementDescription") == [
        "inspection passed; No residues, cold chain intact"]
    silent = tree(recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"findings": " \n "}, EVENT_TIME))
    assert silent.xpath("//n:AdditionalInformation", namespaces=X) == []


def test_an_inspection_recorded_as_a_date_alone_stays_a_date():
    root = tree(recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"inspected_at": "2026-03-02"},
                                   EVENT_TIME))
    when = root.find("n:Inspection/n:InspectionDateTime/n:DateTimeString", X)
    assert (when.text, when.get("formatCode")) == ("20260302", "102")
    naive = tree(recognition_notice(DECLARATION_ID, 2, "customs",
                                    SHRIMP_TEST | {"inspected_at": "2026-03-02T09:40:00"}, EVENT_TIME))
    assert texts(naive, "//n:InspectionDateTime/n:DateTimeString") == ["20260302094000Z"]


def test_what_a_recognition_notice_refuses():
    with pytest.raises(ValueError, match="recorded this inspection itself"):
        recognition_notice(DECLARATION_ID, 2, "inspection", SHRIMP_TEST, EVENT_TIME)
    with pytest.raises(ValueError, match="no agency 'police'"):
        recognition_notice(DECLARATION_ID, 2, "police", SHRIMP_TEST, EVENT_TIME)
    with pytest.raises(InvalidMessage, match="ResultCode"):
        recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"result": "inconclusive"}, EVENT_TIME)
    with pytest.raises(InvalidMessage, match="AgencyCode"):
        recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"agency": "lab"}, EVENT_TIME)
    with pytest.raises(InvalidMessage, match="'last Tuesday'"):
        recognition_notice(DECLARATION_ID, 2, "customs", SHRIMP_TEST | {"inspected_at": "last Tuesday"}, EVENT_TIME)


# ---- alerts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("alert", "path", "scheme"), [
    (ON_THE_TRADER, "n:Party/n:ID", "USCC"),
    (ON_THE_SHIP, "n:BorderTransportMeans/n:ID", None),
    (ON_THE_BOX, "n:TransportEquipment/n:ID", None),
])
def test_an_alert_names_its_subject_where_its_kind_belongs(alert: dict, path: str, scheme: str | None):
    root = tree(alert_notice(alert, DECLARATION_ID, 1, "port", EVENT_TIME))
    [subject] = root.xpath(f"/n:AlertNotice/n:Alert/{path}", namespaces=X)
    assert (subject.text, subject.get("schemeID")) == (alert["subject"], scheme)
    assert len(root.find("n:Alert", X)) == 5  # ID, the one subject, RaisedBy, RaisedDateTime, the reason


def test_an_alert_says_who_raised_it_when_and_why():
    root = tree(CASES["alert-vessel-raised"]())
    alert = "/n:AlertNotice/n:Alert"
    assert texts(root, f"{alert}/n:ID") == ["ALERT-2026-0008"]
    assert texts(root, f"{alert}/n:BorderTransportMeans/n:IdentificationTypeCode") == ["10"]
    assert texts(root, f"{alert}/n:RaisedBy") == ["maritime"]
    assert texts(root, f"{alert}/n:RaisedDateTime/n:DateTimeString") == ["20260302070000Z"]
    assert texts(root, f"{alert}/n:AdditionalInformation/n:StatementDescription") == [
        "Reported ballast water discharge in port limits"]


def test_a_cleared_alert_cancels_the_notice_of_the_same_alert():
    raised = alert_notice(ON_THE_BOX, DECLARATION_ID, 4, "inspection", EVENT_TIME)
    cleared = CASES["alert-container-cleared"]()
    assert (raised.function_code, cleared.function_code) == ("9", "1")
    assert raised.message_id != cleared.message_id
    assert etree.tostring(tree(raised).find("n:Alert", X)) == etree.tostring(tree(cleared).find("n:Alert", X))
    # The alert id is carried exactly as given, inner space and slash included.
    assert texts(tree(cleared), "//n:Alert/n:ID") == ["ALERT 2026/0009"]


def test_what_an_alert_notice_refuses():
    with pytest.raises(ValueError, match="subject_kind is one of party, vessel, container, not 'ship'"):
        alert_notice(ON_THE_SHIP | {"subject_kind": "ship"}, DECLARATION_ID, 1, "port", EVENT_TIME)
    with pytest.raises(ValueError, match="no agency"):
        alert_cleared_notice(ON_THE_SHIP, DECLARATION_ID, 1, "harbour master", EVENT_TIME)
    for wrong in (ON_THE_SHIP | {"subject": "MSKU1234565"}, ON_THE_BOX | {"subject": "9074729"},
                  ON_THE_TRADER | {"subject": "9074729"}, ON_THE_TRADER | {"reason": " \n"},
                  ON_THE_TRADER | {"alert_id": " ALERT-1"}, ON_THE_TRADER | {"raised_by": ""}):
        with pytest.raises(InvalidMessage):
            alert_notice(wrong, DECLARATION_ID, 1, "customs", EVENT_TIME)


# ---- the schema ------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "path", "value"), [
    ("recognition-pass", "n:Inspection/n:ResultCode", "PASS"),
    ("recognition-pass", "n:FunctionCode", "1"),
    ("recognition-pass", "n:Inspection/n:InspectionDateTime/n:DateTimeString", "2026-03-02T09:40:00Z"),
    ("alert-party-raised", "n:Alert/n:Party/n:ID", "91350200MA2YQ4RK0"),
    ("alert-vessel-raised", "n:Alert/n:BorderTransportMeans/n:ID", "907472"),
    ("alert-container-cleared", "n:FunctionCode", "5"),
    ("alert-container-cleared", "n:Alert/n:RaisedBy", "two\nlines"),
])
def test_the_schema_refuses_values_a_mapping_bug_would_produce(case: str, path: str, value: str):
    root = tree(CASES[case]())
    root.find(path, X).text = value
    schema = RECOGNITION_NOTICE_SCHEMA if root.tag == RECOGNITION_NOTICE_SCHEMA.root else ALERT_NOTICE_SCHEMA
    with pytest.raises(InvalidMessage):
        check_outbound(root, schema)
    assert not second_validator(schema.name).is_valid(root)


def test_an_alert_is_on_exactly_one_subject():
    root = tree(CASES["alert-party-raised"]())
    root.find("n:Alert/n:Party", X).addnext(etree.fromstring(
        f"<TransportEquipment xmlns='{NS}'><ID>MSKU1234565</ID></TransportEquipment>"))
    with pytest.raises(InvalidMessage):
        check_outbound(root, ALERT_NOTICE_SCHEMA)
    assert not second_validator(ALERT_NOTICE_SCHEMA.name).is_valid(root)


def test_the_schema_is_local_and_self_contained():
    document = etree.parse(str(RECOGNITION_NOTICE_SCHEMA.path))
    assert not document.xpath("//xs:import | //xs:include | //xs:redefine", namespaces=XS)
    assert document.getroot().get("targetNamespace") == NS
    assert RECOGNITION_NOTICE_SCHEMA.name == ALERT_NOTICE_SCHEMA.name == "notices/notices.xsd"
