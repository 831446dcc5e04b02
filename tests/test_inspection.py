"""Inspection messages: SPS and health quarantine declarations out, decisions in."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree

from adapters.codes import DOCUMENT_CODES
from adapters.inspection import (
    DECISION_SCHEMA,
    DECISIONS,
    DECLARATION_SCHEMA,
    inspection_messages,
    items_under_inspection,
    parse_decisions,
)
from adapters.inspection.declaration import CERTIFICATES
from adapters.messages import AMENDMENT, CANCELLATION, ORIGINAL, message_id
from adapters.xml import InvalidMessage, Refused, check_outbound
from hub.declarations import Declarations, RoutingRules
from hub.declarations.routing import Rule

from . import citations, samples
from .messaging import EVENT_TIME, EXAMPLES, GOLDEN, amended, assert_golden, second_validator, submitted, withdrawn

NS = "urn:tradehub:inspection:1"
X = {"i": NS}
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}
RULES = RoutingRules.load()
SHRIMPS = {"hs_code": "0306170000", "description": "Frozen shrimps", "origin": "VN", "quantity": "100",
           "unit": "KGM", "gross_kg": "110", "net_kg": "100", "value": "900.00", "currency": "USD"}
TIMBER = {"hs_code": "4407110000", "description": "Sawn pine", "origin": "NZ", "quantity": "30", "unit": "MTQ",
          "gross_kg": "18000", "net_kg": "18000", "value": "9000.00", "currency": "USD"}
MACHINE = samples.goods()["items"][0]


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def only(change, action=ORIGINAL, rules=RULES):
    assert change.action_for("inspection") == action
    messages = inspection_messages(change, action, rules)
    assert len(messages) == 1
    return messages[0]


def tree(message) -> etree._Element:
    return etree.fromstring(message.body)


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text for element in root.xpath(path, namespaces=X)]


def statement(root: etree._Element, code: str) -> list[str]:
    return texts(root, f"/i:Declaration/i:AdditionalInformation[i:StatementCode='{code}']/i:StatementDescription")


def schema_enumeration(path, where: str) -> set[str]:
    """The values the schema enumerates for the XPath `where`."""
    return set(etree.parse(str(path)).xpath(f"{where}//xs:enumeration/@value", namespaces=XS))


# ---- the cases every validity test runs over ----------------------------------------------

def _cases() -> dict[str, callable]:
    import_example = example("goods-import.json")
    changed = example("goods-import.json")
    changed["items"][0]["net_kg"] = "11900"
    changed["documents"].append({"type": "veterinary_certificate", "number": "VN-VET-1"})
    routed_away = example("goods-import.json")
    routed_away["items"] = routed_away["items"][1:]
    routed_away["documents"] = routed_away["documents"][:1]
    departure = samples.vessel_call(dangerous_goods=[
        {"un_number": "2814", "imdg_class": "6.2", "description": "Infectious substance, affecting humans",
         "packing_group": "II"}])
    return {
        "goods-import-declaration": lambda: only(submitted(import_example)),
        "goods-by-certificate-declaration": lambda: only(submitted(samples.goods(
            items=[MACHINE, MACHINE], documents=[{"type": "phytosanitary_certificate", "number": "NZ-PC-77"}]))),
        "road-goods-declaration": lambda: only(submitted(samples.goods(
            transport={"mode": "road"}, containers=[], items=[TIMBER, SHRIMPS]))),
        "vessel-arrival-declaration": lambda: only(submitted(example("vessel-arrival.json"))),
        "vessel-departure-declaration": lambda: only(submitted(departure)),
        "goods-import-amendment": lambda: only(amended(import_example, changed), AMENDMENT),
        "goods-import-cancellation": lambda: only(
            withdrawn(import_example, "Sent twice;\n   see XM-IMP-2026-000122."), CANCELLATION),
        "goods-routed-away-cancellation": lambda: only(amended(import_example, routed_away), CANCELLATION),
        "vessel-crew-amendment": lambda: only(amended(departure, {**departure, "crew": departure["crew"] * 2}),
                                              AMENDMENT),
        # The certificates the shrimps cite, as dispatch verified them (tests/citations.py).
        "goods-citing-licences-declaration": lambda: only(
            replace(submitted(citations.import_citing()), licences=citations.VERDICTS)),
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_matches_its_golden_file(case: str):
    assert_golden(f"inspection/{case}.xml", CASES[case]().body)


def test_every_golden_file_belongs_to_a_case():
    assert {path.stem for path in (GOLDEN / "inspection").glob("*.xml")} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_is_valid_to_xmlschema_too(case: str):
    # lxml validated it inside the mapping (check_outbound); a second, independent validator must agree.
    validator = second_validator(DECLARATION_SCHEMA.name)
    errors = list(validator.iter_errors(tree(CASES[case]())))
    assert not errors, errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_is_the_same_bytes_every_time(case: str):
    first, again = CASES[case](), CASES[case]()
    assert first == again


def test_both_validators_refuse_a_broken_message():
    root = tree(only(submitted(example("vessel-arrival.json"))))
    root.find("i:BorderTransportMeans/i:CrewQuantity", X).text = "CHEN Wei"
    with pytest.raises(InvalidMessage, match="CrewQuantity"):
        check_outbound(root, DECLARATION_SCHEMA)
    assert not second_validator(DECLARATION_SCHEMA.name).is_valid(root)


@pytest.mark.parametrize(("path", "value"), [
    ("i:GoodsShipment/i:GovernmentAgencyGoodsItem/i:Commodity/i:Classification/i:ID", "7712345678"),
    ("i:GoodsShipment/i:GovernmentAgencyGoodsItem/i:SequenceNumeric", "01"),
    ("i:AdditionalInformation/i:StatementDescription", "two\nlines"),
    ("i:AdditionalDocument/i:TypeCode", "380"),
    ("i:Declarant/i:ID", "91350200MA2YQ4RK0"),
    ("i:IssueDateTime/i:DateTimeString", "20261301083015Z"),
    ("i:CategoryCode", "ARR "),
])
def test_the_schema_refuses_values_a_mapping_bug_would_produce(path: str, value: str):
    root = tree(only(submitted(example("goods-import.json"))))
    root.find(path, X).text = value
    with pytest.raises(InvalidMessage):
        check_outbound(root, DECLARATION_SCHEMA)


def test_the_schema_lists_exactly_the_certificate_codes_the_mapping_sends():
    assert schema_enumeration(
        DECLARATION_SCHEMA.path, "//xs:complexType[@name='AdditionalDocument']/xs:sequence/xs:element[@name='TypeCode']") == {
        DOCUMENT_CODES[kind] for kind in CERTIFICATES}


# ---- which goods items are under inspection -----------------------------------------------

def test_the_import_example_inspects_the_shrimps_and_not_the_laptops():
    root = tree(only(submitted(example("goods-import.json"))))
    item = "/i:Declaration/i:GoodsShipment/i:GovernmentAgencyGoodsItem"
    assert texts(root, f"{item}/i:SequenceNumeric") == ["1"]
    assert texts(root, f"{item}/i:Commodity/i:Classification/i:ID") == ["0306170000"]
    assert texts(root, f"{item}/i:Commodity/i:Description") == ["Frozen shrimps, peeled"]
    assert texts(root, f"{item}/i:Origin/i:CountryCode") == ["VN"]
    assert b"8471300000" not in etree.tostring(root) and b"Portable computers" not in etree.tostring(root)
    assert texts(root, "/i:Declaration/i:GoodsItemQuantity") == ["2"]


def test_items_keep_their_position_in_the_declaration():
    document = samples.goods(items=[MACHINE, SHRIMPS, MACHINE, TIMBER])
    assert items_under_inspection(document, RULES) == [2, 4]
    root = tree(only(submitted(document)))
    assert texts(root, "//i:GovernmentAgencyGoodsItem/i:SequenceNumeric") == ["2", "4"]
    assert texts(root, "//i:GovernmentAgencyGoodsItem/i:Commodity/i:Classification/i:ID") == [
        "0306170000", "4407110000"]


def test_routing_by_a_certificate_alone_puts_every_item_under_inspection():
    document = samples.goods(items=[MACHINE, MACHINE, MACHINE],
                             documents=[{"type": "veterinary_certificate", "number": "DE-VET-3"}])
    assert items_under_inspection(document, RULES) == [1, 2, 3]
    assert texts(tree(only(submitted(document))), "//i:GovernmentAgencyGoodsItem/i:SequenceNumeric") == [
        "1", "2", "3"]


def test_the_chapters_come_from_the_rules_not_from_the_adapter():
    machines_only = RoutingRules([Rule("inspection", ("goods",), ({"hs_chapters": ["84"]},))])
    document = samples.goods(items=[SHRIMPS, MACHINE])
    assert items_under_inspection(document, machines_only) == [2]
    assert items_under_inspection(document, RULES) == [1]


def test_a_chapter_condition_that_does_not_hold_selects_nothing():
    # Timber by road only: the sea shipment is routed by its certificate, so every item is inspected.
    rules = RoutingRules([Rule("inspection", ("goods",), (
        {"hs_chapters": ["44"], "transport_modes": ["road"]},
        {"document_types": ["phytosanitary_certificate"]},
    ))])
    document = samples.goods(items=[TIMBER, MACHINE],
                             documents=[{"type": "phytosanitary_certificate", "number": "NZ-PC-77"}])
    assert items_under_inspection(document, rules) == [1, 2]
    by_road = samples.goods(items=[TIMBER, MACHINE], transport={"mode": "road"}, containers=[])
    assert items_under_inspection(by_road, rules) == [1]


# ---- what the declaration carries ----------------------------------------------------------

def test_the_header_names_the_message_the_declaration_and_its_version():
    change = submitted(example("goods-import.json"))
    message = only(change)
    root = tree(message)
    assert message.filename == "inspection-declaration.xml"
    assert message.message_id == message_id(change.declaration_id, 1, "inspection", "declaration")
    assert (message.function_code, message.version, message.declaration_id) == ("9", 1, change.declaration_id)
    assert texts(root, "/i:Declaration/i:FunctionCode") == ["9"]
    assert texts(root, "/i:Declaration/i:FunctionalReferenceID") == [message.message_id]
    assert texts(root, "/i:Declaration/i:ID") == [change.declaration_id]
    assert texts(root, "/i:Declaration/i:VersionID") == ["1"]
    assert texts(root, "/i:Declaration/i:TypeCode") == ["SPS"]
    assert texts(root, "/i:Declaration/i:CategoryCode") == ["IMP"]


def test_the_issue_time_is_the_event_time_in_utc():
    change = replace(submitted(example("goods-import.json")),
                     time=datetime(2026, 5, 1, 16, 0, 5, tzinfo=timezone(timedelta(hours=8))))
    message = only(change)
    assert message.issued_at == change.time
    assert texts(tree(message), "/i:Declaration/i:IssueDateTime/i:DateTimeString") == ["20260501080005Z"]
    assert texts(tree(only(submitted(example("goods-import.json")))),
                 "//i:IssueDateTime/i:DateTimeString") == [EVENT_TIME.strftime("%Y%m%d%H%M%SZ")]


def test_certificates_go_as_additional_documents_and_other_documents_do_not():
    document = samples.goods(items=[SHRIMPS], documents=[
        {"type": "commercial_invoice", "number": "INV-1"},
        {"type": "phytosanitary_certificate", "number": "PC-1"},
        {"type": "health_certificate", "number": "HC-1"},
        {"type": "veterinary_certificate", "number": "VC-1"},
        {"type": "certificate_of_origin", "number": "CO-1"},
        {"type": "import_licence", "number": "IL-1"},
    ])
    root = tree(only(submitted(document)))
    assert texts(root, "/i:Declaration/i:AdditionalDocument/i:ID") == ["PC-1", "HC-1", "VC-1", "CO-1"]
    assert texts(root, "/i:Declaration/i:AdditionalDocument/i:TypeCode") == ["851", "852", "853", "861"]


def test_the_routing_reason_is_stated():
    change = submitted(example("goods-import.json"))
    assert statement(tree(only(change)), "ROUTING") == [change.routes["inspection"]]


def test_the_shipment_says_where_the_goods_are_and_who_trades_them():
    root = tree(only(submitted(example("goods-import.json"))))
    shipment = "/i:Declaration/i:GoodsShipment"
    assert texts(root, f"{shipment}/i:Consignor/i:Name") == ["Mekong Seafood Export JSC"]
    assert texts(root, f"{shipment}/i:Consignee/i:ID[@schemeID='USCC']") == ["91350200MA2YQ4RK0U"]
    assert texts(root, f"{shipment}/i:Consignment/i:LoadingLocation/i:ID") == ["VNSGN"]
    assert texts(root, f"{shipment}/i:Consignment/i:UnloadingLocation/i:ID") == ["CNXMN"]
    assert texts(root, f"{shipment}/i:Consignment/i:TransportEquipment/i:ID") == ["CSQU3054383", "MSKU1234565"]
    assert texts(root, f"{shipment}/i:PreviousDocument[i:TypeCode='705']/i:ID") == ["COSU6123456780"]
    assert texts(root, "/i:Declaration/i:BorderTransportMeans/i:JourneyID") == ["026N"]
    assert texts(root, "/i:Declaration/i:Declarant/i:ID") == ["91350200MA2YQ4RK0U"]


def test_goods_not_carried_by_a_ship_send_only_the_mode():
    root = tree(CASES["road-goods-declaration"]())
    means = root.find("i:BorderTransportMeans", X)
    assert [etree.QName(child).localname for child in means] == ["ModeCode"]
    assert means[0].text == "3"


def test_free_text_is_made_one_line():
    item = {**SHRIMPS, "description": "Frozen   shrimps,    peeled"}
    root = tree(only(submitted(samples.goods(items=[item]))))
    assert texts(root, "//i:Commodity/i:Description") == ["Frozen shrimps, peeled"]
    reason = "A reason\n\twith breaks,\u2028odd spaces\u00a0and " + "x" * 600
    cancellation = tree(only(withdrawn(samples.goods(items=[item]), reason), CANCELLATION))
    [text] = statement(cancellation, "REASON")
    assert text.startswith("A reason with breaks, odd spaces and xxx") and len(text) == 512


# ---- the health quarantine declaration -----------------------------------------------------

def test_a_vessel_call_is_a_health_quarantine_declaration_with_counts():
    root = tree(CASES["vessel-arrival-declaration"]())
    means = "/i:Declaration/i:BorderTransportMeans"
    assert texts(root, "/i:Declaration/i:TypeCode") == ["HQ"]
    assert texts(root, "/i:Declaration/i:CategoryCode") == ["ARR"]
    assert texts(root, f"{means}/i:Name") == ["HAI XI STAR"]
    assert texts(root, f"{means}/i:ID") == ["9074729"]
    assert texts(root, f"{means}/i:RegistrationNationalityCode") == ["CN"]
    assert texts(root, f"{means}/i:CallSignID") == ["BQXY"]
    assert texts(root, f"{means}/i:JourneyID") == ["026N"]
    assert texts(root, f"{means}/i:ArrivalDateTime/i:DateTimeString") == ["20261201000000Z"]  # 08:00+08:00
    assert texts(root, f"{means}/i:CrewQuantity") == ["2"]
    assert texts(root, f"{means}/i:PassengerQuantity") == ["0"]
    assert texts(root, "/i:Declaration/i:PortOfCall/i:ID") == ["CNXMN"]
    assert texts(root, "/i:Declaration/i:LastPortOfCall/i:ID") == ["VNSGN"]
    assert texts(root, "/i:Declaration/i:NextPortOfCall/i:ID") == ["CNSHA"]
    assert texts(root, "/i:Declaration/i:DangerousGoods/i:UNDGID") == ["1203"]
    assert root.find("i:GoodsShipment", X) is None


def test_a_departure_counts_its_passengers_and_summarises_dangerous_goods():
    root = tree(CASES["vessel-departure-declaration"]())
    assert texts(root, "/i:Declaration/i:CategoryCode") == ["DEP"]
    assert texts(root, "//i:BorderTransportMeans/i:DepartureDateTime/i:DateTimeString") == ["20261203183000Z"]
    assert texts(root, "//i:PassengerQuantity") == ["1"]
    assert texts(root, "//i:DangerousGoods/i:IMDGClassCode") == ["6.2"]


@pytest.mark.parametrize("case", ["vessel-arrival-declaration", "vessel-departure-declaration",
                                  "vessel-crew-amendment"])
def test_no_personal_data_reaches_the_inspection_agency(case: str):
    message = CASES[case]()
    root = tree(message)
    # Every value the message carries, as text: element content and attribute values (tags are no data).
    carried = "\n".join([*root.itertext(), *(value for element in root.iter() for value in element.attrib.values())])
    people = [*example("vessel-arrival.json")["crew"], *samples.vessel_call()["crew"],
              *samples.vessel_call()["passengers"]]
    for person in people:
        for value in (person["family_name"], person["given_names"], person["date_of_birth"],
                      person["document"]["number"], person.get("rank", "")):
            assert not value or not re.search(rf"\b{re.escape(value)}\b", carried), (
                f"{value!r} leaked into {message.filename}")
    assert "$.crew[" not in carried and "$.passengers[" not in carried


def test_an_amendment_of_the_crew_names_the_list_and_no_one_in_it():
    [changes] = statement(tree(CASES["vessel-crew-amendment"]()), "CHANGES")
    assert changes == "replaced by the declarant, changing $.crew"


# ---- amendments and cancellations ----------------------------------------------------------

def test_an_amendment_is_the_whole_replacement_with_what_changed():
    message = CASES["goods-import-amendment"]()
    root = tree(message)
    assert (message.name, message.function_code, message.version) == ("amendment", "13", 2)
    assert message.filename == "inspection-amendment.xml"
    assert texts(root, "/i:Declaration/i:FunctionCode") == ["13"]
    assert texts(root, "/i:Declaration/i:TypeCode") == ["COR"]
    assert texts(root, "/i:Declaration/i:CategoryCode") == ["IMP"]
    assert texts(root, "/i:Declaration/i:VersionID") == ["2"]
    assert statement(root, "CHANGES") == [
        "replaced by the declarant, changing $.documents[2].number, $.documents[2].type, $.items[0].net_kg"]
    assert statement(root, "ROUTING") == ["item 1 HS 0306170000 is in chapter 03 of the catalogue"]
    assert texts(root, "//i:GovernmentAgencyGoodsItem/i:Commodity/i:GoodsMeasure/i:NetNetWeightMeasure") == [
        "11900"]
    assert texts(root, "/i:Declaration/i:AdditionalDocument/i:TypeCode") == ["861", "852", "853"]


def test_an_amendment_listing_many_changes_stays_within_the_statement():
    before = samples.goods(items=[SHRIMPS] * 200)
    after = samples.goods(items=[{**SHRIMPS, "description": "Chilled shrimps", "net_kg": "99"}] * 200)
    [changes] = statement(tree(only(amended(before, after), AMENDMENT)), "CHANGES")
    assert len(changes) <= 512
    assert changes.startswith("replaced by the declarant, changing $.items[0].description, $.items[0].net_kg")
    shown = changes.count("$.items")
    assert changes.endswith(f" and {400 - shown} more")


def test_a_withdrawal_is_a_cancellation_with_the_reason():
    message = CASES["goods-import-cancellation"]()
    root = tree(message)
    assert (message.name, message.function_code) == ("cancellation", "13")
    assert message.filename == "inspection-cancellation.xml"
    assert texts(root, "/i:Declaration/i:TypeCode") == ["INV"]
    assert statement(root, "REASON") == ["Sent twice; see XM-IMP-2026-000122."]
    assert texts(root, "/i:Declaration/i:Declarant/i:ID") == ["91350200MA2YQ4RK0U"]
    assert root.find("i:GoodsShipment", X) is None and root.find("i:BorderTransportMeans", X) is None


def test_a_withdrawal_without_a_reason_still_states_one():
    assert statement(tree(only(withdrawn(example("goods-import.json"), " \n "), CANCELLATION)), "REASON") == [
        "withdrawn by the declarant"]


def test_an_amendment_that_routes_inspection_away_cancels():
    root = tree(CASES["goods-routed-away-cancellation"]())
    assert texts(root, "/i:Declaration/i:TypeCode") == ["INV"]
    assert statement(root, "REASON") == ["version 2 of the declaration is no longer routed to inspection"]


def test_ids_are_stable_for_a_version_and_differ_between_versions():
    not_inspected = samples.goods()
    change = amended(not_inspected, samples.goods(items=[SHRIMPS]))
    first = only(change)  # inspection newly routed by an amendment: an original, at version 2
    assert first.message_id == only(change).message_id
    assert first.message_id == message_id(change.declaration_id, 2, "inspection", "declaration")
    at_version_1 = only(submitted(samples.goods(items=[SHRIMPS])))
    assert at_version_1.declaration_id == first.declaration_id
    assert at_version_1.message_id != first.message_id
    ids = {CASES[case]().message_id for case in ("goods-import-declaration", "goods-import-amendment",
                                                 "goods-import-cancellation")}
    assert len(ids) == 3


# ---- decisions -----------------------------------------------------------------------------

DECLARATION_ID = "c2ad4b28-7e33-5848-82a5-407803017886"
ANSWERED = "269e9a3fb2365dc094cb76301bd0178b"


def decision(code: str = "REL", reference: str = "INSP-2026-000001", *, issued: str = "20260303101500Z",
             answers: str = ANSWERED, declaration_id: str = DECLARATION_ID, version: str = "1",
             statements: tuple[str, ...] = (), items: dict[int, list[tuple[str, str]]] | None = None) -> str:
    parts = [f"<FunctionCode>{code}</FunctionCode>" if code else "",
             f"<FunctionalReferenceID>{reference}</FunctionalReferenceID>" if reference else "",
             f'<IssueDateTime><DateTimeString formatCode="304">{issued}</DateTimeString></IssueDateTime>',
             "<Declaration>",
             f"<FunctionalReferenceID>{answers}</FunctionalReferenceID>" if answers else "",
             f"<ID>{declaration_id}</ID><VersionID>{version}</VersionID></Declaration>"]
    parts += [f"<AdditionalInformation><StatementDescription>{text}</StatementDescription>"
              "</AdditionalInformation>" for text in statements]
    for sequence, remarks in (items or {}).items():
        parts.append(f"<GovernmentAgencyGoodsItem><SequenceNumeric>{sequence}</SequenceNumeric>")
        for remark_code, text in remarks:
            parts.append("<AdditionalInformation>"
                         + (f"<StatementCode>{remark_code}</StatementCode>" if remark_code else "")
                         + f"<StatementDescription>{text}</StatementDescription></AdditionalInformation>")
        parts.append("</GovernmentAgencyGoodsItem>")
    return "<Decision>" + "".join(parts) + "</Decision>"


def message(*decisions: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Decisions xmlns="{NS}">'
            + "".join(decisions) + "</Decisions>").encode()


@pytest.mark.parametrize(("code", "status", "inspection", "meaning"), [
    ("RCV", "received", None, "received"),
    ("REL", "released", None, "released"),
    ("HDC", "inspection_required", None, "held for documentary check"),
    ("HPC", "inspection_required", None, "held for physical check"),
    ("NAC", "rejected", None, "not acceptable"),
    ("IRP", None, "pass", "inspection passed"),
    ("IRF", None, "fail", "inspection failed"),
    ("CAN", "cancelled", None, "cancellation acknowledged"),
])
def test_each_decision_becomes_the_right_reply(code, status, inspection, meaning):
    [reply] = parse_decisions(message(decision(code)))
    assert (reply.status, reply.inspection, reply.code, reply.text) == (status, inspection, code, meaning)
    assert reply.agency == "inspection"
    assert reply.message_id == "INSP-2026-000001"
    assert reply.answers == ANSWERED
    assert (reply.declaration_id, reply.version) == (DECLARATION_ID, 1)
    assert reply.issued_at == "2026-03-03T10:15:00Z"


def test_the_table_covers_exactly_the_codes_the_schema_admits():
    assert schema_enumeration(DECISION_SCHEMA.path, "//xs:element[@name='FunctionCode']") == set(DECISIONS)


def test_findings_become_the_text_and_item_remarks_point_at_items():
    [reply] = parse_decisions(message(decision(
        "IRF", statements=("Sample 2 positive for   Vibrio\n parahaemolyticus",),
        items={1: [("MICRO", "Vibrio detected"), ("", "Cold chain broken")], 3: [("LBL", "No label")]})))
    assert reply.inspection == "fail"
    assert reply.text == "inspection failed; Sample 2 positive for Vibrio parahaemolyticus"
    assert [(error.code, error.text, error.field) for error in reply.errors] == [
        ("MICRO", "Vibrio detected", "$.items[0]"), ("remark", "Cold chain broken", "$.items[0]"),
        ("LBL", "No label", "$.items[2]")]


def test_a_hold_says_which_check_and_why():
    [reply] = parse_decisions(message(decision("HDC", statements=("Original health certificate required",))))
    assert reply.text == "held for documentary check; Original health certificate required"


def test_one_message_may_carry_several_decisions_in_order():
    replies = parse_decisions(message(decision("RCV", "A-1"), decision("IRP", "A-2"), decision("REL", "A-3")))
    assert [(reply.message_id, reply.code) for reply in replies] == [("A-1", "RCV"), ("A-2", "IRP"), ("A-3", "REL")]


def test_a_local_issue_time_is_recorded_in_utc():
    [reply] = parse_decisions(message(decision(issued="20260303181500+0800")))
    assert reply.issued_at == "2026-03-03T10:15:00Z"


def test_decisions_apply_to_a_real_declaration():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(example("goods-import.json")).declaration
    ident = str(declaration.id)
    sent = message_id(ident, 1, "inspection", "declaration")
    answers = {"declaration_id": ident, "answers": sent}
    for reply in parse_decisions(message(decision("RCV", "D-1", **answers), decision("HPC", "D-2", **answers))):
        reply.apply(app)
    assert app.get(ident).agencies["inspection"]["status"] == "inspection_required"
    [result] = parse_decisions(message(decision("IRP", "D-3", statements=("No residues",), **answers)))
    result.apply(app)
    result.apply(app)  # a redelivery changes nothing
    inspected = app.get(ident)
    assert [(entry["result"], entry["findings"]) for entry in inspected.inspections] == [
        ("pass", "inspection passed; No residues")]
    [release] = parse_decisions(message(decision("REL", "D-4", **answers)))
    release.apply(app)
    assert app.get(ident).agencies["inspection"]["status"] == "released"


# ---- the gate ------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "code"), [
    (message(decision("XYZ")), "schema-invalid"),  # no such decision
    (message(decision(reference="")), "schema-invalid"),  # the decision's own id is missing
    (message(decision(answers="")), "schema-invalid"),  # the hub message answered is missing
    (message(decision(answers="269E9A3FB2365DC094CB76301BD0178B")), "schema-invalid"),
    (message(decision(version="0")), "schema-invalid"),
    (message(decision(issued="20260230101500Z")), "schema-invalid"),  # 30 February
    (message(decision(statements=("   ",))), "schema-invalid"),
    (message(decision(items={0: [("", "item zero")]})), "schema-invalid"),
    (message(), "schema-invalid"),  # no decision at all
    (b"<Decisions xmlns='urn:tradehub:inspection:1'><Decision>", "not-well-formed"),
    (b"<Response xmlns='urn:wco:datamodel:WCO:RES-DMS:2'/>", "unexpected-root"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b"<Decisions xmlns='urn:tradehub:inspection:1'>&x;</Decisions>", "doctype"),
    (b"", "empty"),
])
def test_the_gate_refuses_what_is_not_a_valid_decision(data: bytes, code: str):
    with pytest.raises(Refused) as refused:
        parse_decisions(data)
    assert refused.value.code == code


def test_xmlschema_agrees_with_the_gate_on_decisions():
    validator = second_validator(DECISION_SCHEMA.name)
    assert validator.is_valid(message(decision("IRF", items={2: [("X1", "remark")]})).decode())
    assert not validator.is_valid(message(decision("XYZ")).decode())
    assert not validator.is_valid(message(decision(answers="")).decode())


def test_the_schemas_are_local_and_self_contained():
    for schema in (DECLARATION_SCHEMA, DECISION_SCHEMA):
        document = etree.parse(str(schema.path))
        assert not document.xpath("//xs:import | //xs:include | //xs:redefine", namespaces=XS)
        assert document.getroot().get("targetNamespace") == NS

