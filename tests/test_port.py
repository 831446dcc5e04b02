"""Port messages: cargo notices, visit requests and release notices out, replies in."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lxml import etree

from adapters.messages import (
    AMENDMENT,
    CANCELLATION,
    GATE_OUT,
    GATE_OUT_REVOKED,
    ORIGINAL,
    RELEASE_NOTICE,
    RELEASE_REVOCATION,
    Change,
    change_of,
    message_id,
)
from adapters.port import (
    CARGO_NOTICE_SCHEMA,
    OUTCOMES,
    RELEASE_NOTICE_SCHEMA,
    REPLIES_SCHEMA,
    VISIT_REQUEST_SCHEMA,
    parse_port_replies,
    port_messages,
)
from adapters.xml import MAX_MESSAGE_BYTES, InvalidMessage, Refused, check_outbound
from hub.declarations import Declarations, RoutingRules

from . import samples
from .messaging import EVENT_TIME, EXAMPLES, GOLDEN, amended, assert_golden, second_validator, submitted, withdrawn

NS = "urn:tradehub:port:1"
X = {"p": NS}
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}
RULES = RoutingRules.load()
SHRIMPS = {"hs_code": "0306170000", "description": "Frozen shrimps", "origin": "VN", "quantity": "100",
           "unit": "KGM", "gross_kg": "110", "net_kg": "100", "value": "900.00", "currency": "USD"}
INFECTIOUS = {"un_number": "2814", "imdg_class": "6.2", "description": "Infectious substance, affecting humans",
              "packing_group": "II", "gross_kg": "12.5", "container": "HLXU8000014"}
PAINT = {"un_number": "1263", "imdg_class": "3", "description": "Paint"}


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def only(change: Change, action: str = ORIGINAL):
    assert change.action_for("port") == action
    messages = port_messages(change, action, RULES)
    assert len(messages) == 1
    return messages[0]


def tree(message) -> etree._Element:
    return etree.fromstring(message.body)


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text for element in root.xpath(path, namespaces=X)]


def statement(root: etree._Element, code: str) -> list[str]:
    return texts(root, f"/*/p:AdditionalInformation[p:StatementCode='{code}']/p:StatementDescription")


def schema_enumeration(path, where: str) -> set[str]:
    """The values the schema enumerates under the XPath `where`."""
    return set(etree.parse(str(path)).xpath(f"{where}//xs:enumeration/@value", namespaces=XS))


def gate_out(document: dict, answers: list[tuple], app: Declarations | None = None) -> Change:
    """The gate-out change real answers make, replayed from the stored events as dispatch does, at EVENT_TIME.

    Each answer is (agency, message id, status, time, code, text); the answers keep their own times.
    """
    app = app or Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ident = app.submit(document).declaration.id
    for agency, reference, status, time, code, text in answers:
        app.record_response(ident, agency, reference, status, time, code=code, text=text)
    samples.settle(app, ident)
    changes, before = [], None
    for event in app.events.get(ident):
        change = change_of(event, copy.deepcopy(before) if before is not None else None)
        if change is not None and change.event == GATE_OUT:
            changes.append(change)
        before = event.mutate(before)
    assert changes, "the answers never allowed gate-out"
    return replace(changes[-1], time=EVENT_TIME)


# Customs and inspection release the import example at their own times, the port having acknowledged it first.
RELEASES = [
    ("port", "PORT-1", "received", "2026-03-02T09:00:00Z", "RCV", "received"),
    ("customs", "CUS-1", "released", "2026-03-02T10:00:00Z", "08", "goods released"),
    ("inspection", "INSP-7", "released", "2026-03-02T19:15:00+08:00", "REL", "released;   no residues\nfound"),
]


# ---- the cases every golden, validity and determinism test runs over -----------------------

def _cases() -> dict[str, callable]:
    import_example = example("goods-import.json")
    changed = example("goods-import.json")
    changed["containers"] = [changed["containers"][1], "TGHU9876542"]
    changed["items"][0]["gross_kg"] = "12700"
    by_road = example("goods-import.json") | {"transport": {"mode": "road"}, "containers": []}
    departure = samples.vessel_call(dangerous_goods=[INFECTIOUS, PAINT])
    return {
        "cargo-notice-import": lambda: only(submitted(import_example)),
        "cargo-notice-export": lambda: only(submitted(example("goods-export.json"))),
        "cargo-notice-amendment": lambda: only(amended(import_example, changed), AMENDMENT),
        "cargo-notice-cancellation": lambda: only(
            withdrawn(import_example, "Booked on the wrong vessel;\n   resubmitting."), CANCELLATION),
        "cargo-notice-routed-away-cancellation": lambda: only(amended(import_example, by_road), CANCELLATION),
        "visit-request-arrival": lambda: only(submitted(example("vessel-arrival.json"))),
        "visit-request-departure": lambda: only(submitted(departure)),
        "visit-request-amendment": lambda: only(
            amended(departure, {**departure, "crew": departure["crew"] * 2, "next_port": "JPTYO"}), AMENDMENT),
        "visit-request-cancellation": lambda: only(withdrawn(departure, "Call cancelled by the owner"),
                                                   CANCELLATION),
        "release-notice": lambda: only(gate_out(import_example, RELEASES), RELEASE_NOTICE),
        "release-revocation": lambda: only(revoked(import_example, RELEASES), RELEASE_REVOCATION),
    }


def revoked(document: dict, answers: list[tuple]) -> Change:
    """The revocation a hold placed after gate-out makes, replayed from the stored events, at EVENT_TIME."""
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    notice = gate_out(document, answers, app)
    app.place_hold(notice.declaration_id, {"alert_id": "A-1", "subject_kind": "container", "subject": "X",
                                           "reason": "tip-off", "raised_by": "officer:customs", "raised_at": "x"})
    changes, before = [], None
    for event in app.events.get(app.get(notice.declaration_id).id):
        change = change_of(event, copy.deepcopy(before) if before is not None else None)
        if change is not None and change.event == GATE_OUT_REVOKED:
            changes.append(change)
        before = event.mutate(before)
    [change] = changes
    assert change.revoked == notice.version
    return replace(change, time=EVENT_TIME)


CASES = _cases()
# What each case is: message name, function code (UN/EDIFACT 1225) and root element.
KINDS = {
    "cargo-notice-import": ("cargo-notice", "9", "CargoNotice"),
    "cargo-notice-export": ("cargo-notice", "9", "CargoNotice"),
    "cargo-notice-amendment": ("cargo-notice-amendment", "5", "CargoNotice"),
    "cargo-notice-cancellation": ("cargo-notice-cancellation", "1", "CargoNotice"),
    "cargo-notice-routed-away-cancellation": ("cargo-notice-cancellation", "1", "CargoNotice"),
    "visit-request-arrival": ("visit-request", "9", "VisitRequest"),
    "visit-request-departure": ("visit-request", "9", "VisitRequest"),
    "visit-request-amendment": ("visit-request-amendment", "5", "VisitRequest"),
    "visit-request-cancellation": ("visit-request-cancellation", "1", "VisitRequest"),
    "release-notice": ("release-notice", "9", "ReleaseNotice"),
    "release-revocation": ("release-revocation", "1", "ReleaseRevocation"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_matches_its_golden_file(case: str):
    assert_golden(f"port/{case}.xml", CASES[case]().body)


def test_every_golden_file_belongs_to_a_case():
    assert {path.stem for path in (GOLDEN / "port").glob("*.xml")} == set(CASES) == set(KINDS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_is_valid_to_xmlschema_too(case: str):
    # lxml validated it inside the mapping (check_outbound); a second, independent validator must agree.
    errors = list(second_validator(CARGO_NOTICE_SCHEMA.name).iter_errors(tree(CASES[case]())))
    assert not errors, errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_is_the_same_bytes_every_time(case: str):
    assert CASES[case]() == CASES[case]()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_says_what_it_is(case: str):
    message = CASES[case]()
    name, function, root = KINDS[case]
    assert (message.agency, message.name, message.function_code) == ("port", name, function)
    assert message.filename == f"port-{name}.xml"
    document = tree(message)
    assert document.tag == f"{{{NS}}}{root}"
    assert texts(document, "/*/p:FunctionCode") == [function]
    assert texts(document, "/*/p:FunctionalReferenceID") == [message.message_id]
    assert texts(document, "/*/p:ID") == [message.declaration_id]
    assert texts(document, "/*/p:VersionID") == [str(message.version)]
    assert message.message_id == message_id(message.declaration_id, message.version, "port", name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_issue_time_is_the_events_not_the_clocks(case: str):
    message = CASES[case]()
    assert message.issued_at == EVENT_TIME
    assert texts(tree(message), "/*/p:IssueDateTime/p:DateTimeString") == ["20260302083015Z"]


def test_another_event_time_changes_the_issue_time_and_not_the_id():
    change = submitted(example("goods-import.json"))
    local = datetime(2026, 3, 3, 1, 2, 3).astimezone()
    first, later = only(change), only(replace(change, time=local))
    assert texts(tree(later), "/*/p:IssueDateTime/p:DateTimeString") == [
        local.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")]
    assert later.message_id == first.message_id and later.body != first.body


def test_message_ids_are_deterministic_and_differ_per_version_and_message():
    document = example("goods-import.json")
    original = only(submitted(document))
    assert original.message_id == only(submitted(document)).message_id
    changed = document | {"containers": ["TGHU9876542"]}
    amendment = only(amended(document, changed), AMENDMENT)
    cancellation = only(withdrawn(document, "duplicate"), CANCELLATION)
    release = only(gate_out(document, RELEASES), RELEASE_NOTICE)
    ids = [original.message_id, amendment.message_id, cancellation.message_id, release.message_id]
    assert len(set(ids)) == 4
    assert [original.version, amendment.version] == [1, 2]
    # The same declaration version tells customs and the port apart.
    assert message_id(original.declaration_id, 1, "customs", "cargo-notice") != original.message_id


# ---- the cargo notice ------------------------------------------------------------------------

def test_a_cargo_notice_carries_the_ship_voyage_bill_of_lading_and_containers():
    document = example("goods-import.json")
    root = tree(only(submitted(document)))
    assert texts(root, "/p:CargoNotice/p:CategoryCode") == ["IMP"]
    assert texts(root, "/p:CargoNotice/p:BorderTransportMeans/p:ID") == ["9074729"]
    assert texts(root, "/p:CargoNotice/p:BorderTransportMeans/p:Name") == ["HAI XI STAR"]
    assert texts(root, "/p:CargoNotice/p:BorderTransportMeans/p:JourneyID") == ["026N"]
    consignment = "/p:CargoNotice/p:GoodsShipment/p:Consignment"
    assert texts(root, f"{consignment}/p:TransportContractDocument[p:TypeCode='705']/p:ID") == ["COSU6123456780"]
    assert texts(root, f"{consignment}/p:TransportEquipment/p:ID") == document["containers"]
    assert texts(root, f"{consignment}/p:TransportEquipment/p:SequenceNumeric") == ["1", "2"]
    assert texts(root, f"{consignment}/p:LoadingLocation/p:ID") == ["VNSGN"]
    assert texts(root, f"{consignment}/p:UnloadingLocation/p:ID") == ["CNXMN"]
    assert statement(root, "ROUTING") == ["sea transport, 2 container(s)"]


def test_every_item_travels_with_its_mass_and_any_un_number():
    root = tree(only(submitted(example("goods-export.json"))))
    item = "/p:CargoNotice/p:GoodsShipment/p:GovernmentAgencyGoodsItem"
    assert texts(root, f"{item}/p:SequenceNumeric") == ["1", "2"]
    assert texts(root, f"{item}/p:Commodity/p:GoodsMeasure/p:GrossMassMeasure") == ["7200", "840"]
    assert texts(root, f"{item}/p:Commodity/p:DangerousGoods/p:UNDGID") == ["3082"]
    assert texts(root, f"{item}[p:SequenceNumeric='2']/p:Commodity/p:DangerousGoods/p:UNDGID") == ["3082"]
    assert texts(root, "/p:CargoNotice/p:CategoryCode") == ["EXP"]


def test_the_port_never_gets_tariff_or_commercial_data():
    document = example("goods-import.json")
    body = only(submitted(document)).body.decode()
    for item in document["items"]:
        for field in ("hs_code", "value"):
            assert item[field] not in body, field
        assert ">USD<" not in body and 'currencyID' not in body
    for entry in document["documents"]:
        assert entry["number"] not in body
    assert "OriginCountry" not in body and document["customs_office"] not in body


def test_a_cargo_notice_of_goods_routed_without_a_ship_still_holds_what_is_known():
    # Routing is data: a rule may route the port goods without a ship, containers or a bill of lading.
    document = samples.goods(transport={"mode": "road"}, containers=[])
    change = replace(submitted(document), routes={"customs": "always", "port": "an inland terminal"})
    root = tree(only(change))
    assert texts(root, "/p:CargoNotice/p:BorderTransportMeans/*") == ["3"]
    assert root.xpath("//p:TransportEquipment | //p:TransportContractDocument", namespaces=X) == []


def test_an_amendment_replaces_the_whole_notice_and_says_what_changed():
    root = tree(CASES["cargo-notice-amendment"]())
    assert texts(root, "/p:CargoNotice/p:FunctionCode") == ["5"]
    assert statement(root, "CHANGES") == [
        "replaced by the declarant, changing $.containers[0], $.containers[1], $.items[0].gross_kg"]
    assert texts(root, "//p:TransportEquipment/p:ID") == ["MSKU1234565", "TGHU9876542"]
    assert len(root.xpath("//p:GovernmentAgencyGoodsItem", namespaces=X)) == 2


def test_a_cancellation_says_why_on_one_line():
    withdrawn_root = tree(CASES["cargo-notice-cancellation"]())
    assert statement(withdrawn_root, "REASON") == ["Booked on the wrong vessel; resubmitting."]
    assert withdrawn_root.xpath("//p:GoodsShipment | //p:BorderTransportMeans", namespaces=X) == []
    routed_away = tree(CASES["cargo-notice-routed-away-cancellation"]())
    assert statement(routed_away, "REASON") == ["version 2 of the declaration is no longer routed to the port"]
    blank = tree(only(withdrawn(example("goods-import.json"), " \n\t "), CANCELLATION))
    assert statement(blank, "REASON") == ["withdrawn by the declarant"]


# ---- the visit request -----------------------------------------------------------------------

def test_a_visit_request_carries_the_ship_its_times_and_the_dangerous_goods_on_board():
    root = tree(CASES["visit-request-departure"]())
    means = "/p:VisitRequest/p:BorderTransportMeans"
    assert texts(root, "/p:VisitRequest/p:CategoryCode") == ["DEP"]
    assert texts(root, f"{means}/p:CallSignID") == ["DJNP2"]
    assert texts(root, f"{means}/p:RegistrationNationalityCode") == ["DE"]
    assert texts(root, f"{means}/p:DepartureDateTime/p:DateTimeString") == ["20261203183000Z"]
    assert root.xpath(f"{means}/p:ArrivalDateTime", namespaces=X) == []
    assert texts(root, f"{means}/p:CrewQuantity") == ["1"] and texts(root, f"{means}/p:PassengerQuantity") == ["1"]
    assert texts(root, "/p:VisitRequest/p:PortOfCall/p:ID") == ["CNXMN"]
    assert texts(root, "/p:VisitRequest/p:NextPortOfCall/p:ID") == ["KRPUS"]
    goods = root.xpath("/p:VisitRequest/p:DangerousGoods", namespaces=X)
    assert [[child.text for child in entry.iter() if child.text and child.text.strip()] for entry in goods] == [
        ["1", "Infectious substance, affecting humans", "2814", "6.2", "II", "12.5", "HLXU8000014"],
        ["2", "Paint", "1263", "3"]]


def test_an_arrival_gives_its_eta_in_utc():
    root = tree(CASES["visit-request-arrival"]())
    # 2026-12-01T08:00:00+08:00
    assert texts(root, "//p:BorderTransportMeans/p:ArrivalDateTime/p:DateTimeString") == ["20261201000000Z"]
    assert texts(root, "/p:VisitRequest/p:DangerousGoods/p:TransportEquipment/p:ID") == ["MSKU1234565"]


def test_personal_data_never_reaches_the_port():
    call = samples.vessel_call(
        crew=[{"family_name": "OYELARAN", "given_names": "Adebayo Tunde", "nationality": "NG",
               "date_of_birth": "1968-02-29", "rank": "Chief engineer",
               "document": {"type": "seafarer_id", "number": "NGS7731920"}}],
        passengers=[{"family_name": "SVENSDOTTIR", "given_names": "Ingrid", "nationality": "IS",
                     "date_of_birth": "1999-12-31", "document": {"type": "passport", "number": "A4471928"},
                     "port_of_embarkation": "ISREY"}])
    more_people = {**call, "crew": call["crew"] + samples.vessel_call()["crew"],
                   "passengers": samples.vessel_call()["passengers"]}
    messages = [only(submitted(call)), only(amended(call, more_people), AMENDMENT),
                only(withdrawn(call, "no longer calling"), CANCELLATION)]
    people = call["crew"] + call["passengers"] + more_people["crew"] + more_people["passengers"]
    for message in messages:
        root = tree(message)
        # What the message says, not its tag names: every text and attribute value, one per line.
        body = "\n".join([*root.itertext(), *(value for element in root.iter() for value in element.attrib.values())])
        for person in people:
            for value in (person["family_name"], person["given_names"], person["date_of_birth"],
                          person["date_of_birth"].replace("-", ""), person["document"]["number"],
                          person.get("rank", person["family_name"]), person.get("port_of_embarkation", "")):
                if value:
                    assert value not in body, (message.name, value)
        for nationality in ("NG", "IS"):
            assert nationality not in body.split(), (message.name, nationality)
    amendment = tree(messages[1])
    assert statement(amendment, "CHANGES") == ["replaced by the declarant, changing $.crew, $.passengers"]
    assert texts(amendment, "//p:CrewQuantity") == ["2"] and texts(amendment, "//p:PassengerQuantity") == ["1"]


# ---- the release notice ----------------------------------------------------------------------

def test_the_release_notice_says_who_released_and_when():
    change = gate_out(example("goods-import.json"), RELEASES)
    message = only(change, RELEASE_NOTICE)
    root = tree(message)
    assert (message.name, message.function_code, message.version) == ("release-notice", "9", change.version)
    statuses = root.xpath("/p:ReleaseNotice/p:Status", namespaces=X)
    assert [(texts(status, "p:AgencyCode"), texts(status, "p:NameCode"),
             texts(status, "p:ReleaseDateTime/p:DateTimeString"), texts(status, "p:StatementDescription"))
            for status in statuses] == [
        (["customs"], ["08"], ["20260302100000Z"], ["goods released"]),
        (["inspection"], ["REL"], ["20260302111500Z"], ["released; no residues found"])]
    assert all(status.find("p:ReleaseDateTime/p:DateTimeString", X).get("formatCode") == "304"
               for status in statuses)


def test_the_release_notice_carries_the_containers_and_the_bill_of_lading():
    document = example("goods-import.json")
    root = tree(only(gate_out(document, RELEASES), RELEASE_NOTICE))
    consignment = "/p:ReleaseNotice/p:GoodsShipment/p:Consignment"
    assert texts(root, f"{consignment}/p:TransportEquipment/p:ID") == document["containers"]
    assert texts(root, f"{consignment}/p:TransportContractDocument/p:ID") == ["COSU6123456780"]
    assert texts(root, "/p:ReleaseNotice/p:BorderTransportMeans/p:JourneyID") == ["026N"]
    assert texts(root, "/p:ReleaseNotice/p:GoodsShipment/p:Consignee/p:Name") == [document["consignee"]["name"]]
    assert texts(root, "/p:ReleaseNotice/p:GoodsShipment/p:UCR/p:TraderAssignedReferenceID") == [
        document["reference"]]
    assert root.xpath("//p:GovernmentAgencyGoodsItem", namespaces=X) == []


def test_without_inspection_the_customs_release_alone_is_named():
    document = samples.goods()
    change = gate_out(document, [("customs", "C-9", "released", "2026-03-04T06:00:00Z", "09", "cleared")])
    assert "inspection" not in change.routes
    root = tree(only(change, RELEASE_NOTICE))
    assert texts(root, "/p:ReleaseNotice/p:Status/p:AgencyCode") == ["customs"]
    assert texts(root, "/p:ReleaseNotice/p:Status/p:NameCode") == ["09"]
    assert texts(root, "/p:ReleaseNotice/p:GoodsShipment/p:Consignment/p:TransportEquipment/p:ID") == [
        "HLXU8000014"]


def test_a_release_given_as_a_date_alone_stays_a_date_and_a_silent_one_says_nothing():
    change = gate_out(samples.goods(), [("customs", "C-1", "released", "2026-03-04", "", "")])
    [status] = tree(only(change, RELEASE_NOTICE)).xpath("/p:ReleaseNotice/p:Status", namespaces=X)
    when = status.find("p:ReleaseDateTime/p:DateTimeString", X)
    assert (when.text, when.get("formatCode")) == ("20260304", "102")
    assert status.find("p:NameCode", X) is None and status.find("p:StatementDescription", X) is None


def test_a_release_after_an_amendment_is_a_new_notice_for_the_new_version():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    document = samples.goods()
    first = only(gate_out(document, [("customs", "C-1", "released", "2026-03-02T10:00:00Z", "08", "")], app),
                 RELEASE_NOTICE)
    ident = first.declaration_id
    app.amend(ident, app.get(ident).version, samples.goods(customs_office="3701"))
    app.record_response(ident, "customs", "C-2", "released", "2026-03-02T12:00:00Z", code="08")
    samples.settle(app, ident)
    changes, before = [], None
    for event in app.events.get(app.get(ident).id):
        change = change_of(event, copy.deepcopy(before) if before is not None else None)
        if change is not None and change.event == GATE_OUT:
            changes.append(change)
        before = event.mutate(before)
    second = only(changes[-1], RELEASE_NOTICE)
    assert second.version > first.version and second.message_id != first.message_id
    assert texts(tree(second), "//p:Status/p:ReleaseDateTime/p:DateTimeString") == ["20260302120000Z"]


def test_a_release_notice_is_never_built_on_a_guess():
    change = gate_out(example("goods-import.json"), RELEASES)
    held = copy.deepcopy(change.agencies)
    held["inspection"]["status"] = "held"
    with pytest.raises(ValueError, match="not released by inspection"):
        port_messages(replace(change, agencies=held), RELEASE_NOTICE, RULES)
    with pytest.raises(ValueError, match="not released by customs or inspection"):
        port_messages(replace(change, routes={"port": "sea"}), RELEASE_NOTICE, RULES)
    unreadable = copy.deepcopy(change.agencies)
    unreadable["customs"]["updated_at"] = "yesterday"
    with pytest.raises(InvalidMessage, match="customs's release has time 'yesterday'"):
        port_messages(replace(change, agencies=unreadable), RELEASE_NOTICE, RULES)


# ---- the schema catches mapping bugs ----------------------------------------------------------

@pytest.mark.parametrize(("case", "path", "value"), [
    ("cargo-notice-import", "p:GoodsShipment/p:Consignment/p:TransportEquipment/p:ID", "CSQU305438"),
    ("cargo-notice-import", "p:GoodsShipment/p:Consignment/p:TransportContractDocument/p:TypeCode", "740"),
    ("cargo-notice-import", "p:CategoryCode", "ARR"),
    ("cargo-notice-import", "p:FunctionCode", "13"),
    ("cargo-notice-import", "p:AdditionalInformation/p:StatementDescription", "two\nlines"),
    ("cargo-notice-import", "p:IssueDateTime/p:DateTimeString", "20260302083015+0800"),
    ("visit-request-departure", "p:BorderTransportMeans/p:CrewQuantity", "MEIER Jonas"),
    ("visit-request-departure", "p:DangerousGoods/p:IMDGClassCode", "6.3"),
    ("visit-request-departure", "p:BorderTransportMeans/p:ModeCode", "3"),
    ("release-notice", "p:Status/p:AgencyCode", "port"),
    ("release-notice", "p:FunctionCode", "5"),
    ("release-notice", "p:Status/p:ReleaseDateTime/p:DateTimeString", "2026-03-02"),
])
def test_the_schema_refuses_values_a_mapping_bug_would_produce(case: str, path: str, value: str):
    root = tree(CASES[case]())
    root.find(path, X).text = value
    schema = {"CargoNotice": CARGO_NOTICE_SCHEMA, "VisitRequest": VISIT_REQUEST_SCHEMA,
              "ReleaseNotice": RELEASE_NOTICE_SCHEMA}[etree.QName(root).localname]
    with pytest.raises(InvalidMessage):
        check_outbound(root, schema)
    assert not second_validator(schema.name).is_valid(root)


def test_a_cancellation_carries_no_cargo_and_an_original_no_less():
    cancellation = tree(CASES["cargo-notice-cancellation"]())
    cancellation.append(copy.deepcopy(tree(CASES["cargo-notice-import"]()).find("p:GoodsShipment", X)))
    with pytest.raises(InvalidMessage):
        check_outbound(cancellation, CARGO_NOTICE_SCHEMA)
    original = tree(CASES["visit-request-arrival"]())
    original.remove(original.find("p:PortOfCall", X))
    with pytest.raises(InvalidMessage):
        check_outbound(original, VISIT_REQUEST_SCHEMA)


def test_the_schemas_are_local_and_self_contained():
    for schema in (CARGO_NOTICE_SCHEMA, REPLIES_SCHEMA):
        document = etree.parse(str(schema.path))
        assert not document.xpath("//xs:import | //xs:include | //xs:redefine", namespaces=XS)
        assert document.getroot().get("targetNamespace") == NS
    assert {CARGO_NOTICE_SCHEMA.name, VISIT_REQUEST_SCHEMA.name, RELEASE_NOTICE_SCHEMA.name} == {"port/messages.xsd"}


# ---- replies ---------------------------------------------------------------------------------

DECLARATION_ID = "c2ad4b28-7e33-5848-82a5-407803017886"
ANSWERED = "3e41234c6b34f85ed26a00b8abe0438a"


def reply(kind: str = "Decision", code: str = "ACC", reference: str = "PORT-2026-000001", *,
          issued: str = "20260303101500Z", answers: str = ANSWERED, declaration_id: str = DECLARATION_ID,
          version: str = "1", visit: str | None = None, statements: tuple[str, ...] = (),
          containers: dict[int, list[tuple[str, str]]] | None = None) -> str:
    parts = [f"<FunctionCode>{code}</FunctionCode>" if code else "",
             f"<FunctionalReferenceID>{reference}</FunctionalReferenceID>" if reference else "",
             f'<IssueDateTime><DateTimeString formatCode="304">{issued}</DateTimeString></IssueDateTime>',
             "<Declaration>",
             f"<FunctionalReferenceID>{answers}</FunctionalReferenceID>" if answers else "",
             f"<ID>{declaration_id}</ID><VersionID>{version}</VersionID></Declaration>"]
    if visit is not None:
        parts.append(f"<CallTransportEvent><ID>{visit}</ID></CallTransportEvent>")
    parts += [f"<AdditionalInformation><StatementDescription>{text}</StatementDescription>"
              "</AdditionalInformation>" for text in statements]
    for sequence, remarks in (containers or {}).items():
        parts.append(f"<TransportEquipment><SequenceNumeric>{sequence}</SequenceNumeric>")
        for remark_code, text in remarks:
            parts.append("<AdditionalInformation>"
                         + (f"<StatementCode>{remark_code}</StatementCode>" if remark_code else "")
                         + f"<StatementDescription>{text}</StatementDescription></AdditionalInformation>")
        parts.append("</TransportEquipment>")
    return f"<{kind}>" + "".join(parts) + f"</{kind}>"


def message(*replies: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Replies xmlns="{NS}">'
            + "".join(replies) + "</Replies>").encode()


@pytest.mark.parametrize(("kind", "code", "status", "text"), [
    ("Acknowledgement", "RCV", "received", "received"),
    ("Acknowledgement", "RNR", None, "release notice received"),
    ("Acknowledgement", "CAN", "cancelled", "cancellation acknowledged"),
    ("Visit", "VID", "accepted", "visit id XMN-V-2026-0042"),
    ("Decision", "ACC", "accepted", "accepted"),
    ("Decision", "REJ", "rejected", "rejected"),
    ("Decision", "HLD", "held", "held by the port"),
    ("Decision", "CHK", "inspection_required", "held for a check at the terminal"),
    ("Decision", "REL", "released", "released"),
])
def test_each_reply_becomes_the_right_reply(kind, code, status, text):
    [parsed] = parse_port_replies(message(reply(kind, code, visit="XMN-V-2026-0042" if kind == "Visit" else None)))
    assert (parsed.status, parsed.code, parsed.text, parsed.inspection) == (status, code, text, None)
    assert parsed.agency == "port"
    assert parsed.message_id == "PORT-2026-000001"
    assert parsed.answers == ANSWERED
    assert (parsed.declaration_id, parsed.version) == (DECLARATION_ID, 1)
    assert parsed.issued_at == "2026-03-03T10:15:00Z"


def test_the_table_covers_exactly_the_codes_the_schema_admits():
    admitted = schema_enumeration(REPLIES_SCHEMA.path, "//xs:element[@name='FunctionCode']")
    assert admitted == set(OUTCOMES)
    kinds = {kind: schema_enumeration(REPLIES_SCHEMA.path,
                                      f"//xs:complexType[@name='{kind}']//xs:element[@name='FunctionCode']")
             for kind in ("Acknowledgement", "Visit", "Decision")}
    assert kinds == {"Acknowledgement": {"RCV", "RNR", "RVR", "CAN"}, "Visit": {"VID"},
                     "Decision": {"ACC", "REJ", "HLD", "CHK", "REL"}}


def test_reasons_become_the_text_and_container_remarks_point_at_containers():
    [parsed] = parse_port_replies(message(reply(
        "Decision", "REJ", statements=("Container   not\n at the terminal",),
        containers={2: [("NOTHERE", "Not gated in"), ("", "Seal missing")], 1: [("DMG", "Damaged door")]})))
    assert parsed.text == "rejected; Container not at the terminal"
    assert [(error.code, error.text, error.field) for error in parsed.errors] == [
        ("NOTHERE", "Not gated in", "$.containers[1]"), ("remark", "Seal missing", "$.containers[1]"),
        ("DMG", "Damaged door", "$.containers[0]")]
    assert parsed.summary == ("rejected; Container not at the terminal; NOTHERE at $.containers[1]: Not gated in; "
                              "remark at $.containers[1]: Seal missing; DMG at $.containers[0]: Damaged door")


def test_a_visit_id_and_its_remarks_travel_in_the_text():
    [parsed] = parse_port_replies(message(reply("Visit", "VID", visit="XMN 2026 0042", statements=("Berth 12",))))
    assert parsed.text == "visit id XMN 2026 0042; Berth 12"


def test_one_message_may_carry_replies_of_every_kind_in_order():
    replies = parse_port_replies(message(reply("Acknowledgement", "RCV", "P-1"),
                                         reply("Visit", "VID", "P-2", visit="V1"), reply("Decision", "ACC", "P-3")))
    assert [(parsed.message_id, parsed.code) for parsed in replies] == [("P-1", "RCV"), ("P-2", "VID"), ("P-3", "ACC")]


def test_a_local_issue_time_is_recorded_in_utc():
    [parsed] = parse_port_replies(message(reply(issued="20260303181500+0800")))
    assert parsed.issued_at == "2026-03-03T10:15:00Z"


def test_replies_apply_to_a_real_cargo_notice_once_per_message_id():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ident = str(app.submit(example("goods-import.json")).declaration.id)
    answers = {"declaration_id": ident, "answers": message_id(ident, 1, "port", "cargo-notice")}
    for parsed in parse_port_replies(message(reply("Acknowledgement", "RCV", "P-1", **answers),
                                             reply("Decision", "CHK", "P-2", **answers))):
        parsed.apply(app)
    assert app.get(ident).agencies["port"]["status"] == "inspection_required"
    [accepted] = parse_port_replies(message(reply("Decision", "ACC", "P-3", statements=("Scan clear",), **answers)))
    accepted.apply(app)
    events = len(app.history(ident))
    accepted.apply(app)  # a redelivery changes nothing
    assert len(app.history(ident)) == events
    port = app.get(ident).agencies["port"]
    assert (port["status"], port["code"], port["text"], port["updated_at"]) == (
        "accepted", "ACC", "accepted; Scan clear", "2026-03-03T10:15:00Z")
    for agency, reference in (("customs", "C-1"), ("inspection", "I-1")):
        app.record_response(ident, agency, reference, "released", "2026-03-03T11:00:00Z")
    samples.settle(app, ident)
    release = message_id(ident, app.get(ident).version, "port", "release-notice")
    [noticed] = parse_port_replies(message(reply("Acknowledgement", "RNR", "P-4", declaration_id=ident,
                                                 answers=release)))
    version = app.get(ident).version
    assert noticed.apply(app).version == version  # an acknowledgement of the notice records nothing
    assert app.get(ident).agencies["port"]["status"] == "accepted"  # acknowledging a release sets nothing back
    [out] = parse_port_replies(message(reply("Decision", "REL", "P-5", **answers)))
    out.apply(app)
    assert app.get(ident).agencies["port"]["status"] == "released"
    samples.settle(app, ident)
    assert app.get(ident).status == "released"


def test_a_visit_id_applies_to_a_real_vessel_call_and_a_cancellation_is_acknowledged():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ident = str(app.submit(samples.vessel_call()).declaration.id)
    answers = {"declaration_id": ident, "answers": message_id(ident, 1, "port", "visit-request")}
    [visit] = parse_port_replies(message(reply("Visit", "VID", "V-1", visit="XMN26-00042", **answers)))
    visit.apply(app)
    port = app.get(ident).agencies["port"]
    assert (port["status"], port["code"], port["text"]) == ("accepted", "VID", "visit id XMN26-00042")
    app.withdraw(ident, "call cancelled")
    version = app.get(ident).version
    [cancelled] = parse_port_replies(message(reply(
        "Acknowledgement", "CAN", "V-2", declaration_id=ident, version=str(version),
        answers=message_id(ident, version, "port", "visit-request-cancellation"))))
    cancelled.apply(app)
    assert app.get(ident).agencies["port"]["status"] == "cancelled"


@pytest.mark.parametrize(("data", "code"), [
    (message(reply("Decision", "XYZ")), "schema-invalid"),  # no such code
    (message(reply("Acknowledgement", "ACC")), "schema-invalid"),  # an acknowledgement decides nothing
    (message(reply("Decision", "VID", visit="V1")), "schema-invalid"),  # a visit id is not a decision
    (message(reply("Visit", "VID")), "schema-invalid"),  # a visit without its id
    (message(reply("Visit", "VID", visit="  ")), "schema-invalid"),
    (message(reply("Visit", "VID", visit="V" * 36)), "schema-invalid"),
    (message(reply(reference="")), "schema-invalid"),  # the reply's own id is missing
    (message(reply(reference="-P1")), "schema-invalid"),
    (message(reply(answers="")), "schema-invalid"),  # the hub message answered is missing
    (message(reply(answers=ANSWERED.upper())), "schema-invalid"),
    (message(reply(version="0")), "schema-invalid"),
    (message(reply(issued="20260230101500Z")), "schema-invalid"),  # 30 February
    (message(reply(issued="2026-03-03T10:15:00Z")), "schema-invalid"),
    (message(reply(statements=("   ",))), "schema-invalid"),
    (message(reply(containers={0: [("", "container zero")]})), "schema-invalid"),
    (message(reply("Acknowledgement", "RCV", containers={1: [("", "not for an acknowledgement")]})),
     "schema-invalid"),
    (message(), "schema-invalid"),  # no reply at all
    (message(*[reply(reference=f"P-{n}") for n in range(101)]), "schema-invalid"),
    (b"<Replies xmlns='urn:tradehub:port:1'><Decision>", "not-well-formed"),
    (b"<Decisions xmlns='urn:tradehub:inspection:1'/>", "unexpected-root"),
    (b"<Replies/>", "unexpected-root"),  # the right name without the port's namespace
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b"<Replies xmlns='urn:tradehub:port:1'>&x;</Replies>", "doctype"),
    (b'<!DOCTYPE Replies SYSTEM "http://example.invalid/replies.dtd"><Replies xmlns="urn:tradehub:port:1"/>',
     "doctype"),
    (b"", "empty"),
    (b" " * (MAX_MESSAGE_BYTES + 1), "too-large"),
])
def test_the_gate_refuses_what_is_not_a_valid_reply(data: bytes, code: str):
    with pytest.raises(Refused) as refused:
        parse_port_replies(data)
    assert refused.value.code == code


def test_xmlschema_agrees_with_the_gate_on_replies():
    validator = second_validator(REPLIES_SCHEMA.name)
    assert validator.is_valid(message(reply("Decision", "REJ", containers={2: [("X1", "remark")]}),
                                      reply("Visit", "VID", visit="V 1"), reply("Acknowledgement", "RNR")).decode())
    for broken in (reply("Decision", "XYZ"), reply("Visit", "VID"), reply("Acknowledgement", "REL"),
                   reply(answers="")):
        assert not validator.is_valid(message(broken).decode()), broken
