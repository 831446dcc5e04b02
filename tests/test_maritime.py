"""Maritime messages: IMO FAL 1 and FAL 7 as Trafic2000 messages out, receipts and decisions in."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.fal import DECISIONS, RECEIPTS
from adapters.maritime import (
    DANGEROUS_GOODS_SCHEMA,
    DECISION_SCHEMA,
    GENERAL_DECLARATION_SCHEMA,
    maritime_messages,
    parse_maritime_replies,
)
from adapters.messages import AMENDMENT, CANCELLATION, ORIGINAL, change_of, message_id
from adapters.xml import InvalidMessage, Refused, check_outbound
from hub.declarations import Declarations, RoutingRules, content_hash, validate_document
from hub.declarations.documents import LIMITS

from . import samples
from .messaging import (
    EVENT_TIME,
    EXAMPLES,
    GOLDEN,
    amended,
    assert_golden,
    interop,
    second_validator,
    submitted,
    withdrawn,
)

RULES = RoutingRules.load()
FORMS_FILE = GENERAL_DECLARATION_SCHEMA.name
REPLIES_FILE = DECISION_SCHEMA.name
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}
# Dangerous goods of every shape the mapping knows: a packing group, a mass with more decimals than
# Trafic2000 keeps (so in grams), a container; and none of them.
ON_BOARD = [
    {"un_number": "2814", "imdg_class": "6.2", "description": "Infectious substance, affecting humans",
     "packing_group": "II", "gross_kg": "12.0005"},
    {"un_number": "1263", "imdg_class": "3", "description": "Paint", "packing_group": "III", "gross_kg": "850",
     "container": "HLXU8000014"},
    {"un_number": "1203", "imdg_class": "3", "description": "Gasoline"},
]
DEPARTURE = samples.vessel_call(dangerous_goods=ON_BOARD)
PAINT = {"hs_code": "3208100000", "description": "Polyester paint", "origin": "DE", "quantity": "400",
         "unit": "LTR", "gross_kg": "520.25", "net_kg": "480", "value": "3600.00", "currency": "EUR",
         "un_number": "1263"}
MACHINE = samples.goods()["items"][0]


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def sent(change, action=ORIGINAL):
    assert change.action_for("maritime") == action
    return maritime_messages(change, action, RULES)


def named(messages) -> dict:
    return {message.name: message for message in messages}


def tree(message) -> etree._Element:
    return etree.fromstring(message.body)


def attribute(message, path: str) -> list[str]:
    return tree(message).xpath(path)


@cache
def published() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(interop("fal-trafic2000", "T2000_5.2_Charte_5-1.xsd"))))


# ---- the cases every golden, conformance and agreement test runs over -------------------

def _cases() -> dict:
    export = example("goods-export.json")
    heavier = copy.deepcopy(export)
    heavier["items"][1]["net_kg"] = "820"
    harmless = copy.deepcopy(export)
    del harmless["items"][1]["un_number"]
    two_containers = samples.goods(items=[MACHINE, PAINT], containers=["HLXU8000014", "CSQU3054383"])
    by_road = samples.goods(items=[PAINT], transport={"mode": "road"}, containers=[])
    return {
        "vessel-arrival": lambda: sent(submitted(example("vessel-arrival.json"))),
        "vessel-departure": lambda: sent(submitted(DEPARTURE)),
        "vessel-dangerous-goods-landed-amendment": lambda: sent(
            amended(DEPARTURE, {**DEPARTURE, "dangerous_goods": [], "next_port": "JPTYO"}), AMENDMENT),
        "vessel-dangerous-goods-loaded-amendment": lambda: sent(
            amended(samples.vessel_call(), DEPARTURE), AMENDMENT),
        "vessel-arrival-withdrawal": lambda: sent(
            withdrawn(example("vessel-arrival.json"), "Call cancelled:\n   berth unavailable."), CANCELLATION),
        "goods-export": lambda: sent(submitted(export)),
        "goods-import": lambda: sent(submitted(two_containers)),
        "goods-by-road": lambda: sent(submitted(by_road)),
        "goods-export-amendment": lambda: sent(amended(export, heavier), AMENDMENT),
        "goods-export-routed-away": lambda: sent(amended(export, harmless), CANCELLATION),
    }


CASES = _cases()
# The messages each case sends, by name: the forms, and an NCA_Suppr_Not deleting forms sent before.
SENDS = {
    "vessel-arrival": ["fal1", "fal7"],
    "vessel-departure": ["fal1", "fal7"],
    "vessel-dangerous-goods-landed-amendment": ["fal1", "deletion"],
    "vessel-dangerous-goods-loaded-amendment": ["fal1", "fal7"],
    "vessel-arrival-withdrawal": ["cancellation"],
    "goods-export": ["fal7"],
    "goods-import": ["fal7"],
    "goods-by-road": ["fal7"],
    "goods-export-amendment": ["fal7"],
    "goods-export-routed-away": ["cancellation"],
}
MESSAGES = sorted((case, name) for case, names in SENDS.items() for name in names)


def message_of(case: str, name: str):
    return named(CASES[case]())[name]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_sends_the_forms_it_should(case: str):
    assert [message.name for message in CASES[case]()] == SENDS[case]


@pytest.mark.parametrize(("case", "name"), MESSAGES)
def test_each_message_matches_its_golden_file(case: str, name: str):
    assert_golden(f"maritime/{case}-{name}.xml", message_of(case, name).body)


def test_every_golden_file_belongs_to_a_case():
    golden = {path.stem for path in (GOLDEN / "maritime").glob("*.xml")}
    assert golden == {f"{case}-{name}" for case, name in MESSAGES}, "remove stale golden files or add their cases"


@pytest.mark.parametrize(("case", "name"), MESSAGES)
def test_each_message_conforms_to_the_published_trafic2000_schema(case: str, name: str):
    root = tree(message_of(case, name))
    assert published().validate(root), published().error_log.last_error


@pytest.mark.parametrize(("case", "name"), MESSAGES)
def test_each_message_is_valid_to_xmlschema_too(case: str, name: str):
    # lxml validated it inside the mapping (check_outbound); a second, independent validator must agree.
    errors = list(second_validator(FORMS_FILE).iter_errors(tree(message_of(case, name))))
    assert not errors, errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_is_the_same_bytes_every_time(case: str):
    assert CASES[case]() == CASES[case]()


# ---- which forms a change sends ----------------------------------------------------------

def test_a_vessel_call_gets_fal_1_and_fal_7_only_with_dangerous_goods_on_board():
    assert [m.filename for m in CASES["vessel-arrival"]()] == ["maritime-fal1.xml", "maritime-fal7.xml"]
    assert [m.filename for m in sent(submitted(samples.vessel_call()))] == ["maritime-fal1.xml"]
    assert [tree(m).tag for m in CASES["vessel-departure"]()] == ["NCA_FAL1", "NCA_FAL7MD"]


def test_a_goods_declaration_gets_fal_7_of_its_un_numbered_items_only():
    [message] = CASES["goods-import"]()
    assert (message.filename, tree(message).tag) == ("maritime-fal7.xml", "NCA_FAL7MD")
    assert attribute(message, "//DPGItem/@UNNumber") == ["1263"]
    assert attribute(message, "//DPGItem/@TextualReference") == ["Polyester paint"]
    assert b"Industrial mixing machines" not in message.body


def test_goods_without_un_numbers_get_nothing_even_if_a_rule_routes_them():
    assert maritime_messages(submitted(samples.goods()), ORIGINAL, RULES) == []


def test_the_header_is_trafic2000s_with_the_hubs_ids_and_the_event_time():
    change = submitted(example("vessel-arrival.json"))
    for message in sent(change):
        header = tree(message).find("Header")
        assert dict(header.attrib) == {"Version": "5.2", "LARefId": message.message_id,
                                       "SentAt": "2026-03-02T08:30:15Z", "From": "TRADEHUB", "To": "MARITIME"}
        assert message.message_id == message_id(change.declaration_id, 1, "maritime", message.name)
        assert (message.declaration_id, message.version, message.function_code) == (change.declaration_id, 1, "9")
        assert attribute(message, "/*/Body/ShipCallInformation/@ShipCallId") == [change.declaration_id]


def test_the_issue_time_is_the_event_time_in_utc():
    change = replace(submitted(example("vessel-arrival.json")),
                     time=datetime(2026, 5, 1, 16, 0, 5, tzinfo=timezone(timedelta(hours=8))))
    for message in sent(change):
        assert message.issued_at == change.time
        assert attribute(message, "/*/Header/@SentAt") == ["2026-05-01T08:00:05Z"]
    assert EVENT_TIME.strftime("%Y-%m-%dT%H:%M:%SZ") == "2026-03-02T08:30:15Z"


def test_the_schemas_insist_on_trafic2000s_fixed_version():
    message = CASES["vessel-arrival"]()[0]
    root = tree(message)
    root.find("Header").set("Version", "1")  # a declaration version where the schema version goes
    with pytest.raises(InvalidMessage, match="Version"):
        check_outbound(root, GENERAL_DECLARATION_SCHEMA)
    assert not published().validate(root)


@pytest.mark.parametrize(("path", "name", "value"), [
    ("Header", "LARefId", "not-a-message-id"),
    ("Header", "SentAt", "2026-03-02T16:30:15+08:00"),
    ("Body/ShipCallInformation", "PortOfCall", "cnxmn"),
    ("Body/FormInformation", "EntryOrExit", "2"),
    ("Body/FormInformation/ShipInformation", "CallSign", "BQX"),
    ("Body/FormInformation/ShipInformation", "NameOfMaster", "CHEN Wei, Master of the HAI XI"),
    ("Body/FormInformation/OtherInformations", "NumberOfCrew", "0"),
])
def test_the_schema_refuses_values_a_mapping_bug_would_produce(path: str, name: str, value: str):
    root = tree(CASES["vessel-arrival"]()[0])
    root.find(path).set(name, value)
    with pytest.raises(InvalidMessage):
        check_outbound(root, GENERAL_DECLARATION_SCHEMA)


# ---- FAL 1 --------------------------------------------------------------------------------

def test_fal_1_carries_the_ship_its_voyage_and_the_counts_of_people_on_board():
    fal1 = message_of("vessel-arrival", "fal1")
    form = "/NCA_FAL1/Body/FormInformation"
    assert attribute(fal1, "/NCA_FAL1/Body/VesselIdentification/@IMONumber") == ["9074729"]
    assert attribute(fal1, "/NCA_FAL1/Body/ShipCallInformation/@PortOfCall") == ["CNXMN"]
    assert attribute(fal1, f"{form}/@EntryOrExit") == ["0"]
    assert attribute(fal1, f"{form}/@VoyageNumber") == ["026N"]
    assert dict(tree(fal1).find("Body/FormInformation/ShipInformation").attrib) == {
        "ShipName": "HAI XI STAR", "CallSign": "BQXY", "FlagStateOfShip": "CN", "NameOfMaster": "CHEN Wei"}
    assert dict(tree(fal1).find("Body/FormInformation/VoyageInformation").attrib) == {
        "LastPort": "VNSGN", "NextPort": "CNSHA", "ETAToPortOfCall": "2026-12-01T00:00:00Z"}  # 08:00+08:00
    assert attribute(fal1, f"{form}/CertificateOfRegistry/ShippingContactDetails/@NameOfAgent") == [
        "Xiamen Ocean Shipping Agency Co., Ltd."]
    assert attribute(fal1, f"{form}/OtherInformations/@NumberOfCrew") == ["2"]
    assert attribute(fal1, f"{form}/OtherInformations/@NumberOfPassengers") == ["0"]


def test_a_departure_exits_with_its_etd_and_next_port():
    fal1 = message_of("vessel-departure", "fal1")
    assert attribute(fal1, "//FormInformation/@EntryOrExit") == ["1"]
    assert dict(tree(fal1).find("Body/FormInformation/VoyageInformation").attrib) == {
        "NextPort": "KRPUS", "ETDFromPortOfCall": "2026-12-03T18:30:00Z"}
    assert attribute(fal1, "//OtherInformations/@NumberOfPassengers") == ["1"]


def test_fal_1_names_the_master_and_nobody_else():
    crew = [{"family_name": "OKAFOR", "given_names": "Chidi", "nationality": "NG", "date_of_birth": "1988-02-11",
             "rank": "Chief Officer", "document": {"type": "seafarer_id", "number": "NG778812"}},
            {"family_name": "ANDERSEN-LINDQVIST", "given_names": "Karl Johan", "nationality": "NO",
             "date_of_birth": "1969-09-23", "rank": " CAPTAIN ", "document": {"type": "passport", "number": "N99"}}]
    [fal1] = sent(submitted(samples.vessel_call(crew=crew)))
    assert attribute(fal1, "//ShipInformation/@NameOfMaster") == ["ANDERSEN-LINDQVIST K"]  # Trafic2000 keeps 20
    for value in ("OKAFOR", "Chidi", "NG778812", "N99", "1969-09-23", "LI", "EA1234567"):
        assert value not in {v for element in tree(fal1).iter() for v in element.attrib.values()}
    [no_master] = sent(submitted(samples.vessel_call(crew=crew[:1])))
    assert attribute(no_master, "//ShipInformation/@NameOfMaster") == []


def test_a_call_sign_trafic2000_cannot_carry_is_left_out():
    vessel = {**samples.vessel_call()["vessel"], "call_sign": "BQX"}
    [fal1] = sent(submitted(samples.vessel_call(vessel=vessel)))
    assert attribute(fal1, "//ShipInformation/@CallSign") == []
    assert attribute(fal1, "//ShipInformation/@ShipName") == ["NORTHERN JASPER"]


# ---- FAL 7 ---------------------------------------------------------------------------------

def test_a_vessel_calls_fal_7_lists_what_is_on_board():
    fal7 = tree(message_of("vessel-departure", "fal7"))
    assert fal7.xpath("/NCA_FAL7MD/Body/FormInformation/ShippingContactDetails/@NameOfAgent") == [
        "Test Shipping Agency"]
    [consignment] = fal7.findall("Body/HazmatDetails/Consignment")
    assert dict(consignment.attrib) == {}  # a call's entries name no transport document
    items = consignment.findall("DPGItem")
    assert [dict(item.attrib) for item in items] == [
        {"DGClassification": "IMDG", "TextualReference": "Infectious substance, affecting humans",
         "IMOHazardClass": "6.2", "UNNumber": "2814", "PackingGroup": "II"},
        {"DGClassification": "IMDG", "TextualReference": "Paint", "IMOHazardClass": "3", "UNNumber": "1263",
         "PackingGroup": "III"},
        {"DGClassification": "IMDG", "TextualReference": "Gasoline", "IMOHazardClass": "3", "UNNumber": "1203"}]
    # 12.0005 kg has one decimal more than Trafic2000 keeps: it goes in grams, exactly.
    assert dict(items[0].find("TotalQuantityGross").attrib) == {"UnitOfMeasurement": "GRM",
                                                                "GrossQuantity": "12000.5"}
    assert dict(items[1].find("TotalQuantityGross").attrib) == {"UnitOfMeasurement": "KGM", "GrossQuantity": "850"}
    assert dict(items[1].find("TransportEquipmentUnit").attrib) == {"TransUnitId": "HLXU8000014",
                                                                   "LocationOnBoard": "NOT DECLARED"}
    assert [child.tag for child in items[2]] == []


def test_a_goods_declarations_fal_7_is_its_own_call_with_the_ship_to_match_it_by():
    change = submitted(example("goods-export.json"))
    [fal7] = sent(change)
    root = tree(fal7)
    assert root.xpath("/NCA_FAL7MD/Body/VesselIdentification/@IMONumber") == ["9313709"]
    assert root.xpath("/NCA_FAL7MD/Body/ShipCallInformation/@ShipCallId") == [change.declaration_id]
    assert root.xpath("/NCA_FAL7MD/Body/ShipCallInformation/@PortOfCall") == ["CNXMN"]  # loaded here
    assert root.xpath("/NCA_FAL7MD/Body/FormInformation/@EntryOrExit") == ["1"]
    assert root.xpath("/NCA_FAL7MD/Body/FormInformation/@VoyageNumber") == ["118S"]
    assert dict(root.find("Body/HazmatDetails/Consignment").attrib) == {
        "TransportDocumentId": "XMNOSL2026118001", "PortOfLoading": "CNXMN", "PortOfDischarge": "NOOSL"}
    [item] = root.findall("Body/HazmatDetails/Consignment/DPGItem")
    assert item.get("UNNumber") == "3082" and item.get("IMOHazardClass") is None  # goods items declare no class
    assert dict(item.find("TotalQuantityGross").attrib) == {"UnitOfMeasurement": "KGM", "GrossQuantity": "840"}
    assert dict(item.find("TotalQuantityNet").attrib) == {"UnitOfMeasurement": "KGM", "NetQuantity": "800"}
    assert item.find("TransportEquipmentUnit").get("TransUnitId") == "TGHU9876542"  # the only container


def test_an_import_enters_at_its_port_of_discharge_and_several_containers_are_not_guessed_at():
    root = tree(CASES["goods-import"]()[0])
    assert root.xpath("//ShipCallInformation/@PortOfCall") == ["CNXMN"]
    assert root.xpath("//FormInformation/@EntryOrExit") == ["0"]
    assert root.xpath("//TransportEquipmentUnit") == []


def test_goods_on_no_ship_are_sent_with_imo_number_0():
    root = tree(CASES["goods-by-road"]()[0])
    assert root.xpath("//VesselIdentification/@IMONumber") == ["0"]
    assert root.xpath("//FormInformation/@VoyageNumber") == []
    assert root.xpath("//Consignment/@TransportDocumentId") == []


def test_free_text_is_made_one_line_and_cut_to_trafic2000s_lengths():
    entry = {**ON_BOARD[2], "description": "Gasoline,\u2028 " + "unleaded " * 55}
    declarant = {**DEPARTURE["declarant"], "name": "A  very\u00a0long shipping agency name, " + "x" * 30}
    messages = named(sent(submitted({**DEPARTURE, "dangerous_goods": [entry], "declarant": declarant})))
    [text] = attribute(messages["fal7"], "//DPGItem/@TextualReference")
    assert text.startswith("Gasoline, unleaded unleaded") and len(text) <= 350 and "  " not in text
    [agent] = attribute(messages["fal1"], "//ShippingContactDetails/@NameOfAgent")
    assert agent == "A very long shipping agency name, xxxxxxxxxxxxxxxx"  # Trafic2000 keeps 50


def test_a_crew_of_thousands_and_every_dangerous_good_allowed_still_make_one_valid_form_each():
    member = samples.vessel_call()["crew"][0]
    many = {**DEPARTURE, "crew": [member] * LIMITS["crew"], "dangerous_goods": ON_BOARD * 333}
    messages = named(sent(submitted(many)))
    assert attribute(messages["fal1"], "//OtherInformations/@NumberOfCrew") == [str(LIMITS["crew"])]
    assert len(tree(messages["fal7"]).findall("Body/HazmatDetails/Consignment/DPGItem")) == 999


# ---- amendments and cancellations ----------------------------------------------------------

def test_an_amendment_replaces_each_form_and_deletes_the_one_no_longer_needed():
    before = sent(submitted(DEPARTURE))
    messages = named(CASES["vessel-dangerous-goods-landed-amendment"]())
    assert sorted(messages) == ["deletion", "fal1"]
    fal1 = messages["fal1"]
    assert (fal1.function_code, fal1.version) == ("5", 2)  # UN/EDIFACT 1225: replace
    assert attribute(fal1, "//VoyageInformation/@NextPort") == ["JPTYO"]
    # Same ship call, new LARefId: Trafic2000 takes it as replacing the FAL 1 it holds.
    assert attribute(fal1, "//ShipCallInformation/@ShipCallId") == [before[0].declaration_id]
    assert fal1.message_id not in {message.message_id for message in before}
    deletion = messages["deletion"]
    assert (tree(deletion).tag, deletion.function_code, deletion.filename) == (
        "NCA_Suppr_Not", "1", "maritime-deletion.xml")
    assert attribute(deletion, "//LARefIdToDelete/text()") == [named(before)["fal7"].message_id]
    assert attribute(deletion, "//Notification/@Reason") == [
        f"declaration {fal1.declaration_id} version 2 has no dangerous goods"]


def test_a_form_the_declaration_needs_for_the_first_time_is_an_original():
    messages = named(CASES["vessel-dangerous-goods-loaded-amendment"]())
    assert {name: message.function_code for name, message in messages.items()} == {"fal1": "5", "fal7": "9"}


def test_deletions_name_the_forms_as_sent_however_many_versions_ago():
    # Answers between submission and amendment raise the version; the forms held are still version 1's.
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.prepare_submission(DEPARTURE)
    declaration.collect_events()
    declaration.record_response("maritime", "MAR-1", "received", "2026-03-02T09:00:00Z")
    declaration.record_response("border", "BOR-1", "accepted", "2026-03-02T09:05:00Z")
    declaration.collect_events()
    before = copy.deepcopy(declaration)
    document = validate_document({**DEPARTURE, "dangerous_goods": []})
    declaration.amend(document, content_hash(document), app.routing.route(document))
    change = change_of(declaration.collect_events()[0], before)
    assert change.version == 4
    deletion = named(maritime_messages(change, AMENDMENT, RULES))["deletion"]
    held = named(sent(submitted(DEPARTURE)))["fal7"].message_id
    assert attribute(deletion, "//LARefIdToDelete/text()") == [held]


def test_a_withdrawal_deletes_every_form_the_agency_holds_with_the_reason():
    [cancellation] = CASES["vessel-arrival-withdrawal"]()
    held = [message.message_id for message in sent(submitted(example("vessel-arrival.json")))]
    assert (tree(cancellation).tag, cancellation.name, cancellation.function_code) == (
        "NCA_Suppr_Not", "cancellation", "1")
    assert attribute(cancellation, "//LARefIdToDelete/text()") == held
    assert attribute(cancellation, "//Notification/@Reason") == [
        f"declaration {cancellation.declaration_id} withdrawn: Call cancelled: berth unavailable."]


def test_a_withdrawal_reason_is_one_line_within_trafic2000s_255_characters():
    [blank] = sent(withdrawn(DEPARTURE, " \n "), CANCELLATION)
    assert attribute(blank, "//Notification/@Reason") == [
        f"declaration {blank.declaration_id} withdrawn by the declarant"]
    [long] = sent(withdrawn(DEPARTURE, "Cancelled\tbecause " + "z" * 400), CANCELLATION)
    [reason] = attribute(long, "//Notification/@Reason")
    assert len(reason) == 255 and "Cancelled because zzz" in reason


def test_an_amendment_that_routes_maritime_away_deletes_its_fal_7():
    [cancellation] = CASES["goods-export-routed-away"]()
    [held] = sent(submitted(example("goods-export.json")))
    assert attribute(cancellation, "//LARefIdToDelete/text()") == [held.message_id]
    assert attribute(cancellation, "//Notification/@Reason") == [
        f"declaration {held.declaration_id} version 2 is no longer routed to maritime"]


def test_goods_amended_keep_their_call_and_replace_their_fal_7():
    [fal7] = CASES["goods-export-amendment"]()
    [original] = CASES["goods-export"]()
    assert (fal7.name, fal7.function_code, fal7.version) == ("fal7", "5", 2)
    assert attribute(fal7, "//TotalQuantityNet/@NetQuantity") == ["820"]
    assert attribute(fal7, "//ShipCallInformation/@ShipCallId") == attribute(original, "//ShipCallInformation/@ShipCallId")


def test_ids_are_stable_for_a_version_and_differ_between_versions():
    first, again = CASES["goods-export"](), CASES["goods-export"]()
    assert first[0].message_id == again[0].message_id
    amendment = CASES["goods-export-amendment"]()[0]
    assert amendment.message_id != first[0].message_id
    assert amendment.message_id == message_id(first[0].declaration_id, 2, "maritime", "fal7")
    ids = [message.message_id for case in ("goods-export", "goods-export-amendment", "goods-export-routed-away")
           for message in CASES[case]()]
    assert len(ids) == len(set(ids)) == 3


# ---- any valid vessel call makes messages the published schema accepts ---------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Cf")),
                min_size=1, max_size=80).map(str.strip).filter(bool)
_mass = st.from_regex(r"[1-9][0-9]{0,6}(\.[0-9]{1,6})?", fullmatch=True)


@st.composite
def vessel_calls(draw) -> dict:
    entries = [{"un_number": draw(st.sampled_from(["1203", "2814", "0012"])),
                "imdg_class": draw(st.sampled_from(["3", "6.2", "1.4"])), "description": draw(_text)[:512]}
               | ({"gross_kg": draw(_mass)} if draw(st.booleans()) else {})
               | ({"packing_group": draw(st.sampled_from(["I", "II", "III"]))} if draw(st.booleans()) else {})
               for _ in range(draw(st.integers(0, 3)))]
    crew = [{**samples.vessel_call()["crew"][0], "family_name": draw(_text)[:70], "given_names": draw(_text)[:70],
             "rank": draw(st.sampled_from(["Master", "Cook", "master "]))}]
    document = samples.vessel_call(dangerous_goods=entries, crew=crew)
    document["declarant"]["name"] = draw(_text)[:70]
    return document


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vessel_calls())
def test_any_valid_vessel_call_maps_to_forms_the_published_schema_accepts(document: dict):
    for message in sent(submitted(document)):  # the mapping itself validates against our schema
        assert published().validate(tree(message)), published().error_log.last_error


# ---- replies ---------------------------------------------------------------------------------

DECLARATION_ID = "94314c9a-8fff-527e-98f1-e15e3b5b8c30"
ANSWERED = "e411de4e0d90889f815aa4b2f8ee977d"


def header(reference: str, answers: str, sent_at: str, sender: str, version: str, extra: str = "") -> str:
    parts = [f'Version="{version}"' if version else "", f'LARefId="{reference}"' if reference else "",
             f'NCARefId="{answers}"' if answers else "", f'SentAt="{sent_at}"', f'From="{sender}"', 'To="TRADEHUB"']
    return f"<Header {' '.join(part for part in parts if part)}{extra}/>"


def receipt(code: str = "OK", *, message: str | None = None, reference: str = "MAR-RCPT-0001",
            answers: str = ANSWERED, ship_call: str = DECLARATION_ID, sent_at: str = "2026-03-03T10:15:00Z",
            sender: str = "MARITIME", version: str = "5.2") -> bytes:
    extra = f' StatusCode="{code}"' + (f' StatusMessage="{message}"' if message is not None else "")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<NCA_Receipt>'
            f"{header(reference, answers, sent_at, sender, version, extra)}"
            f'<Body ShipCallId="{ship_call}"/></NCA_Receipt>').encode()


def decision(code: str = "Accepted", *, reasons: tuple[tuple[str, str], ...] = (),
             reference: str = "MAR-DEC-0001", answers: str = ANSWERED, ship_call: str = DECLARATION_ID,
             sent_at: str = "2026-03-03T11:00:00Z", sender: str = "MARITIME", version: str = "5.2") -> bytes:
    reasons_xml = "".join(f'<Reason ReasonCode="{reason_code}" Description="{text}"/>'
                          for reason_code, text in reasons)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<NCA_Form_Res>'
            f"{header(reference, answers, sent_at, sender, version)}"
            f'<Body ShipCallId="{ship_call}" StatusCode="{code}">{reasons_xml}</Body></NCA_Form_Res>').encode()


@pytest.mark.parametrize(("data", "code", "status", "text"), [
    (receipt("OK"), "OK", "received", "received"),
    (receipt("OK", message="Queued for the harbour master"), "OK", "received",
     "received; Queued for the harbour master"),
    (receipt("Error", message="Unknown port of call"), "Error", "rejected", "refused on receipt; Unknown port of call"),
    (decision("Accepted"), "Accepted", "accepted", "accepted"),
    (decision("Cleared"), "Cleared", "released", "cleared"),
    (decision("Cancelled"), "Cancelled", "cancelled", "cancellation done"),
    (decision("Rejected", reasons=(("DG-04", "No emergency schedule"),)), "Rejected", "rejected", "rejected"),
])
def test_each_reply_becomes_the_right_reply(data: bytes, code: str, status: str, text: str):
    [reply] = parse_maritime_replies(data)
    assert (reply.agency, reply.code, reply.status, reply.text) == ("maritime", code, status, text)
    assert (reply.declaration_id, reply.answers, reply.version) == (DECLARATION_ID, ANSWERED, None)
    assert reply.message_id in ("MAR-RCPT-0001", "MAR-DEC-0001")
    assert reply.issued_at in ("2026-03-03T10:15:00Z", "2026-03-03T11:00:00Z")


def test_a_rejection_carries_its_reasons_as_errors():
    [reply] = parse_maritime_replies(decision("Rejected", reasons=(
        ("DG-04", "No emergency   schedule&#10;for UN 2814"), ("PSC", "Detained: expired certificate"))))
    assert [(error.code, error.text, error.field) for error in reply.errors] == [
        ("DG-04", "No emergency schedule for UN 2814", ""), ("PSC", "Detained: expired certificate", "")]
    assert reply.summary == "rejected; DG-04: No emergency schedule for UN 2814; PSC: Detained: expired certificate"


def test_the_code_tables_cover_exactly_what_the_schema_admits():
    schema = etree.parse(str(DECISION_SCHEMA.path))
    receipts = schema.xpath("//xs:element[@name='NCA_Receipt']//xs:attribute[@name='StatusCode']//xs:enumeration/@value",
                            namespaces=XS)
    decisions = schema.xpath("//xs:element[@name='NCA_Form_Res']//xs:attribute[@name='StatusCode']"
                             "//xs:enumeration/@value", namespaces=XS)
    assert (set(receipts), set(decisions)) == (set(RECEIPTS), set(DECISIONS))


def test_replies_apply_to_a_real_declaration():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ident = str(app.submit(example("vessel-arrival.json")).declaration.id)
    answers = message_id(ident, 1, "maritime", "fal1")
    for data in (receipt(ship_call=ident, answers=answers), decision("Accepted", ship_call=ident, answers=answers)):
        [reply] = parse_maritime_replies(data)
        reply.apply(app)
        reply.apply(app)  # a redelivery changes nothing
    assert app.get(ident).agencies["maritime"]["status"] == "accepted"
    [cleared] = parse_maritime_replies(decision("Cleared", reference="MAR-DEC-0002", ship_call=ident, answers=answers))
    cleared.apply(app)
    assert app.get(ident).agencies["maritime"]["status"] == "released"


@pytest.mark.parametrize(("data", "code"), [
    (decision("Approved"), "schema-invalid"),  # no such decision
    (decision("Rejected"), "schema-invalid"),  # a rejection without its reasons
    (receipt("Error"), "schema-invalid"),  # an error without saying what it is
    (receipt("KO"), "schema-invalid"),
    (decision(reference=""), "schema-invalid"),  # the reply's own id is missing
    (decision(answers=""), "schema-invalid"),  # the hub message answered is missing
    (decision(answers="E411DE4E0D90889F815AA4B2F8EE977D"), "schema-invalid"),
    (decision(ship_call="XMN-CALL-2026-1201-026N"), "schema-invalid"),  # not a declaration id
    (decision(version="5.0"), "schema-invalid"),
    (decision(sender="BORDER"), "schema-invalid"),  # the border's reply on the maritime channel
    (decision(sent_at="2026-02-30T11:00:00Z"), "schema-invalid"),  # 30 February
    (decision(sent_at="2026-03-03T11:00:00"), "schema-invalid"),  # no zone: whose local time?
    (decision(reasons=(("DG-04", "   "),)), "schema-invalid"),
    (b"<NCA_Form_Res><Header", "not-well-formed"),
    (b"<NCA_FAL1/>", "unexpected-root"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<NCA_Receipt><Header LARefId="&x;"/></NCA_Receipt>', "doctype"),
    (b"", "empty"),
])
def test_the_gate_refuses_what_is_not_a_valid_reply(data: bytes, code: str):
    with pytest.raises(Refused) as refused:
        parse_maritime_replies(data)
    assert refused.value.code == code


def test_an_unknown_root_is_named_with_the_ones_expected():
    with pytest.raises(Refused, match="expected NCA_Receipt or NCA_Form_Res"):
        parse_maritime_replies(b"<NCA_Suppr_Not/>")


def test_xmlschema_agrees_with_the_gate_on_replies():
    validator = second_validator(REPLIES_FILE)
    assert validator.is_valid(receipt("OK").decode())
    assert validator.is_valid(decision("Rejected", reasons=(("X", "why"),)).decode())
    assert not validator.is_valid(decision("Approved").decode())
    assert not validator.is_valid(decision(answers="").decode())
    assert not validator.is_valid(decision(sender="BORDER").decode())


def test_the_schemas_are_local_and_self_contained():
    for schema in (GENERAL_DECLARATION_SCHEMA, DANGEROUS_GOODS_SCHEMA, DECISION_SCHEMA):
        document = etree.parse(str(schema.path))
        assert not document.xpath("//xs:import | //xs:include | //xs:redefine", namespaces=XS)
        assert document.getroot().get("targetNamespace") is None  # Trafic2000 has no namespace
