"""Border messages: IMO FAL 5 and FAL 6 as Trafic2000 messages out, receipts and decisions in.

Also the personal data contract across agencies: names, birth dates and
identity documents of the people on board go to border (the lists) and
maritime (the master's name on FAL 1), and never to any other agency.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.border import (
    CREW_LIST_SCHEMA,
    DECISION_SCHEMA,
    PASSENGER_LIST_SCHEMA,
    border_messages,
    parse_border_replies,
)
from adapters.customs import customs_messages
from adapters.fal import IDENTITY_DOCUMENTS
from adapters.inspection import inspection_messages
from adapters.maritime import maritime_messages
from adapters.messages import AMENDMENT, CANCELLATION, ORIGINAL, message_id
from adapters.outbound import MAPPINGS
from adapters.xml import InvalidMessage, Refused, check_outbound
from hub.declarations import Declarations, RoutingRules
from hub.declarations.documents import LIMITS

from . import samples
from .messaging import EXAMPLES, GOLDEN, amended, assert_golden, interop, second_validator, submitted, withdrawn

RULES = RoutingRules.load()
FORMS_FILE = CREW_LIST_SCHEMA.name
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}
SEAFARER = {"family_name": "NGUYEN", "given_names": "Thi  Lan", "nationality": "VN", "date_of_birth": "1994-05-17",
            "rank": "Cook", "document": {"type": "seafarer_id", "number": "VN0077001"}}
PASSENGERS = [
    samples.vessel_call()["passengers"][0],  # disembarks at the next port; embarkation not declared
    {"family_name": "KIM", "given_names": "Min-jun", "nationality": "KR", "date_of_birth": "1982-12-01",
     "document": {"type": "identity_card", "number": "820101-1234567"},
     "port_of_embarkation": "VNSGN", "port_of_disembarkation": "KRPUS"},  # stays on board: in transit
    {"family_name": "SATO", "given_names": "Yui", "nationality": "JP", "date_of_birth": "2012-07-07",
     "document": {"type": "other", "number": "TR-5521"},
     "port_of_embarkation": "CNXMN", "port_of_disembarkation": "KRPUS"},  # boards here
]
DEPARTURE = samples.vessel_call(crew=[samples.vessel_call()["crew"][0], SEAFARER], passengers=PASSENGERS)


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def sent(change, action=ORIGINAL):
    assert change.action_for("border") == action
    return border_messages(change, action, RULES)


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

CASES = {
    "vessel-arrival": lambda: sent(submitted(example("vessel-arrival.json"))),
    "vessel-departure": lambda: sent(submitted(DEPARTURE)),
    "vessel-passengers-landed-amendment": lambda: sent(
        amended(DEPARTURE, {**DEPARTURE, "passengers": [], "crew": DEPARTURE["crew"][:1]}), AMENDMENT),
    "vessel-passengers-boarded-amendment": lambda: sent(
        amended(example("vessel-arrival.json"), {**example("vessel-arrival.json"), "passengers": PASSENGERS[1:]}),
        AMENDMENT),
    "vessel-departure-withdrawal": lambda: sent(withdrawn(DEPARTURE, "Sailing postponed"), CANCELLATION),
}
# The messages each case sends, by name: the lists, and an NCA_Suppr_Not deleting lists sent before.
SENDS = {
    "vessel-arrival": ["fal5"],
    "vessel-departure": ["fal5", "fal6"],
    "vessel-passengers-landed-amendment": ["fal5", "deletion"],
    "vessel-passengers-boarded-amendment": ["fal5", "fal6"],
    "vessel-departure-withdrawal": ["cancellation"],
}
MESSAGES = sorted((case, name) for case, names in SENDS.items() for name in names)


def message_of(case: str, name: str):
    return named(CASES[case]())[name]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_sends_the_lists_it_should(case: str):
    assert [message.name for message in CASES[case]()] == SENDS[case]


@pytest.mark.parametrize(("case", "name"), MESSAGES)
def test_each_message_matches_its_golden_file(case: str, name: str):
    assert_golden(f"border/{case}-{name}.xml", message_of(case, name).body)


def test_every_golden_file_belongs_to_a_case():
    golden = {path.stem for path in (GOLDEN / "border").glob("*.xml")}
    assert golden == {f"{case}-{name}" for case, name in MESSAGES}, "remove stale golden files or add their cases"


@pytest.mark.parametrize(("case", "name"), MESSAGES)
def test_each_message_conforms_to_the_published_trafic2000_schema(case: str, name: str):
    root = tree(message_of(case, name))
    assert published().validate(root), published().error_log.last_error


@pytest.mark.parametrize(("case", "name"), MESSAGES)
def test_each_message_is_valid_to_xmlschema_too(case: str, name: str):
    errors = list(second_validator(FORMS_FILE).iter_errors(tree(message_of(case, name))))
    assert not errors, errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_is_the_same_bytes_every_time(case: str):
    assert CASES[case]() == CASES[case]()


# ---- which forms a change sends ----------------------------------------------------------

def test_every_call_gets_a_crew_list_and_only_one_with_passengers_a_passenger_list():
    assert [(m.filename, tree(m).tag) for m in CASES["vessel-arrival"]()] == [("border-fal5.xml", "NCA_FAL5")]
    assert [(m.filename, tree(m).tag) for m in CASES["vessel-departure"]()] == [
        ("border-fal5.xml", "NCA_FAL5"), ("border-fal6.xml", "NCA_FAL6")]


def test_the_header_is_trafic2000s_with_the_hubs_ids_and_the_event_time():
    change = submitted(DEPARTURE)
    for message in sent(change):
        assert dict(tree(message).find("Header").attrib) == {
            "Version": "5.2", "LARefId": message.message_id, "SentAt": "2026-03-02T08:30:15Z", "From": "TRADEHUB",
            "To": "BORDER"}
        assert message.message_id == message_id(change.declaration_id, 1, "border", message.name)
        assert (message.declaration_id, message.version, message.function_code) == (change.declaration_id, 1, "9")
        assert attribute(message, "/*/Body/ShipCallInformation/@ShipCallId") == [change.declaration_id]


def test_the_issue_time_is_the_event_time_in_utc():
    change = replace(submitted(DEPARTURE), time=datetime(2026, 5, 1, 2, 0, 5, tzinfo=timezone(timedelta(hours=-5))))
    for message in sent(change):
        assert message.issued_at == change.time
        assert attribute(message, "/*/Header/@SentAt") == ["2026-05-01T07:00:05Z"]


@pytest.mark.parametrize(("path", "name", "value"), [
    ("Header", "Version", "5.0"),
    ("Header", "To", "MARITIME"),
    ("Body/FormInformation/CrewList/CrewMember", "NatureOfIdentityDocument", "PictureId"),
    ("Body/FormInformation/CrewList/CrewMember", "DateOfBirth", "1979-02-30"),
    ("Body/FormInformation/CrewList/CrewMember", "LastName", "CHEN\n"),
    ("Body/FormInformation/CrewList/CrewMember", "PlaceOfBirth", "Xiamen"),  # the hub never collected it
])
def test_the_schema_refuses_values_a_mapping_bug_would_produce(path: str, name: str, value: str):
    root = tree(CASES["vessel-arrival"]()[0])
    root.find(path).set(name, value)
    with pytest.raises(InvalidMessage):
        check_outbound(root, CREW_LIST_SCHEMA)


def test_the_schema_lists_exactly_the_identity_documents_the_mapping_sends():
    values = etree.parse(str(CREW_LIST_SCHEMA.path)).xpath(
        "//xs:simpleType[@name='IdentityDocument']//xs:enumeration/@value", namespaces=XS)
    assert set(values) == set(IDENTITY_DOCUMENTS.values())


# ---- the lists -----------------------------------------------------------------------------

def test_the_crew_list_names_each_member_with_rank_nationality_birth_and_identity_document():
    fal5 = message_of("vessel-arrival", "fal5")
    form = tree(fal5).find("Body/FormInformation")
    assert form.attrib == {"EntryOrExit": "0", "VoyageNumber": "026N"}
    assert dict(form.find("ShipInformation").attrib) == {"ShipName": "HAI XI STAR", "CallSign": "BQXY",
                                                         "FlagStateOfShip": "CN"}
    assert dict(form.find("VoyageInformation").attrib) == {"LastPort": "VNSGN",
                                                           "ETAToPortOfCall": "2026-12-01T00:00:00Z"}
    assert [dict(member.attrib) for member in form.findall("CrewList/CrewMember")] == [
        {"LastName": "CHEN", "FirstName": "Wei", "DutyOfCrew": "Master", "Nationality": "CN",
         "DateOfBirth": "1979-03-14", "PlaceOfBirth": "NOT DECLARED", "NatureOfIdentityDocument": "Passport",
         "NumberOfIdentityDocument": "E12345678"},
        {"LastName": "NGUYEN", "FirstName": "Van An", "DutyOfCrew": "Able seaman", "Nationality": "VN",
         "DateOfBirth": "1990-11-02", "PlaceOfBirth": "NOT DECLARED", "NatureOfIdentityDocument": "MusterBook",
         "NumberOfIdentityDocument": "VN0098123"}]


def test_the_passenger_list_says_where_each_boards_and_leaves_and_who_is_in_transit():
    fal6 = tree(message_of("vessel-departure", "fal6"))
    assert fal6.find("Body/FormInformation").attrib == {"EntryOrExit": "1", "VoyageNumber": "041E"}
    assert dict(fal6.find("Body/FormInformation/VoyageInformation").attrib) == {
        "ETDFromPortOfCall": "2026-12-03T18:30:00Z"}
    passengers = fal6.findall("Body/FormInformation/PassengerList/Passenger")
    assert [(p.get("LastName"), p.get("NatureOfIdentityDocument"), p.get("PortOfEmbarkation"),
             p.get("PortOfDisembarkation"), p.get("Transit")) for p in passengers] == [
        ("LI", "Passport", "ZZUKN", "KRPUS", "N"),  # not declared where she boarded: the border checks her
        ("KIM", "Pictureld", "VNSGN", "KRPUS", "Y"),
        ("SATO", "Other", "CNXMN", "KRPUS", "N")]
    assert passengers[1].get("NumberOfIdentityDocument") == "820101-1234567"


def test_names_are_made_one_line():
    fal5 = message_of("vessel-departure", "fal5")
    assert attribute(fal5, "//CrewMember/@FirstName") == ["Jonas", "Thi Lan"]


def test_a_crew_of_thousands_is_stamped_into_one_valid_list():
    member = samples.vessel_call()["crew"][0]
    passenger = PASSENGERS[1]
    many = {**DEPARTURE, "crew": [member] * LIMITS["crew"], "passengers": [passenger] * LIMITS["passengers"]}
    messages = named(sent(submitted(many)))
    assert len(tree(messages["fal5"]).findall("Body/FormInformation/CrewList/CrewMember")) == LIMITS["crew"]
    assert len(tree(messages["fal6"]).findall("Body/FormInformation/PassengerList/Passenger")) == LIMITS["passengers"]


_name = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Cf")),
                min_size=1, max_size=80).map(str.strip).filter(bool).map(lambda text: text[:70])


@st.composite
def vessel_calls(draw) -> dict:
    def person(template: dict) -> dict:
        return {**template, "family_name": draw(_name), "given_names": draw(_name),
                "document": {"type": draw(st.sampled_from(sorted(IDENTITY_DOCUMENTS))),
                             "number": draw(_name)[:35].strip() or "X"}}
    crew = [person({**SEAFARER, "rank": draw(_name)}) for _ in range(draw(st.integers(1, 3)))]
    passengers = [person(template) for template in draw(st.lists(st.sampled_from(PASSENGERS), max_size=3))]
    return samples.vessel_call(crew=crew, passengers=passengers)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vessel_calls())
def test_any_valid_vessel_call_maps_to_lists_the_published_schema_accepts(document: dict):
    for message in sent(submitted(document)):  # the mapping itself validates against our schema
        assert published().validate(tree(message)), published().error_log.last_error


# ---- amendments and cancellations ----------------------------------------------------------

def test_an_amendment_replaces_the_crew_list_and_deletes_the_passenger_list_no_longer_needed():
    held = named(sent(submitted(DEPARTURE)))
    messages = named(CASES["vessel-passengers-landed-amendment"]())
    assert sorted(messages) == ["deletion", "fal5"]
    assert (messages["fal5"].function_code, messages["fal5"].version) == ("5", 2)
    assert attribute(messages["fal5"], "//CrewMember/@LastName") == ["MEIER"]
    assert attribute(messages["deletion"], "//LARefIdToDelete/text()") == [held["fal6"].message_id]
    assert attribute(messages["deletion"], "//Notification/@Reason") == [
        f"declaration {held['fal6'].declaration_id} version 2 has no passengers"]
    assert messages["deletion"].function_code == "1"


def test_a_passenger_list_needed_for_the_first_time_is_an_original():
    messages = named(CASES["vessel-passengers-boarded-amendment"]())
    assert {name: message.function_code for name, message in messages.items()} == {"fal5": "5", "fal6": "9"}


def test_a_withdrawal_deletes_both_lists():
    held = [message.message_id for message in sent(submitted(DEPARTURE))]
    [cancellation] = CASES["vessel-departure-withdrawal"]()
    assert (tree(cancellation).tag, cancellation.filename) == ("NCA_Suppr_Not", "border-cancellation.xml")
    assert attribute(cancellation, "//LARefIdToDelete/text()") == held
    assert attribute(cancellation, "//Notification/@Reason") == [
        f"declaration {cancellation.declaration_id} withdrawn: Sailing postponed"]


# ---- personal data goes to border and maritime only ---------------------------------------

PEOPLE = [*example("vessel-arrival.json")["crew"], *DEPARTURE["crew"], *DEPARTURE["passengers"]]


def carried(message) -> str:
    """Every value a message carries, as text: element content and attribute values (tags are no data)."""
    root = tree(message)
    return "\n".join([*root.itertext(), *(value for element in root.iter() for value in element.attrib.values())])


def personal_values(person: dict) -> list[str]:
    return [" ".join(person["family_name"].split()), " ".join(person["given_names"].split()),
            person["date_of_birth"], person["document"]["number"]]


def leaked(message, people=PEOPLE) -> list[str]:
    text = carried(message)
    return [value for person in people for value in personal_values(person)
            if re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", text)]


# Changes of calls with crew and passengers: (change, what each routed agency is told).
CHANGES = {
    "arrival": lambda: (submitted(example("vessel-arrival.json")), ORIGINAL),
    "departure": lambda: (submitted(DEPARTURE), ORIGINAL),
    "crew amendment": lambda: (amended(DEPARTURE, {**DEPARTURE, "crew": [SEAFARER] + DEPARTURE["crew"]}),
                               AMENDMENT),
    "withdrawal": lambda: (withdrawn(DEPARTURE, "postponed"), CANCELLATION),
}


# Every agency the hub builds messages for, except the two that may see the people on board.
OTHERS = {"customs": lambda change, action, _rules: customs_messages(change, action),
          "inspection": inspection_messages,
          **{agency: mapping for agency, mapping in MAPPINGS.items() if agency not in ("border", "maritime")}}


@pytest.mark.parametrize("agency", sorted(OTHERS))
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_no_other_agency_gets_a_name_a_birth_date_or_an_identity_document(agency: str, change: str):
    subject, action = CHANGES[change]()
    assert subject.action_for(agency) == action
    for message in OTHERS[agency](subject, action, RULES):
        assert not leaked(message), f"{leaked(message)} leaked into {message.filename}"


def test_the_border_gets_everyone_on_board_as_fal_5_and_6_require():
    messages = named(CASES["vessel-departure"]())
    assert set(leaked(messages["fal5"], DEPARTURE["crew"])) == {
        value for person in DEPARTURE["crew"] for value in personal_values(person)}
    assert set(leaked(messages["fal6"], PASSENGERS)) == {
        value for person in PASSENGERS for value in personal_values(person)}
    assert not leaked(messages["fal5"], PASSENGERS) and not leaked(messages["fal6"], DEPARTURE["crew"])


def test_maritime_gets_the_masters_name_and_nothing_else_of_anyone():
    for subject, action in (build() for build in CHANGES.values()):
        for message in maritime_messages(subject, action, RULES):
            values = set(leaked(message))
            assert values <= {"MEIER", "Jonas", "CHEN", "Wei"}, f"{values} in {message.filename}"
            if message.name == "fal1":
                [master] = attribute(message, "//ShipInformation/@NameOfMaster")
                assert master in ("MEIER Jonas", "CHEN Wei")


# ---- replies ---------------------------------------------------------------------------------

DECLARATION_ID = "5dd18831-5514-5d30-8cd8-291d1d3328be"
ANSWERED = "8fe3d037d801e933bae989980185dfdd"


def receipt(code: str = "OK", *, message: str | None = None, sender: str = "BORDER") -> bytes:
    status = f' StatusCode="{code}"' + (f' StatusMessage="{message}"' if message is not None else "")
    return (f'<NCA_Receipt><Header Version="5.2" LARefId="BOR-R-1" NCARefId="{ANSWERED}" '
            f'SentAt="2026-03-03T10:15:00.250Z" From="{sender}" To="TRADEHUB"{status}/>'
            f'<Body ShipCallId="{DECLARATION_ID}"/></NCA_Receipt>').encode()


def decision(code: str = "Cleared", *reasons: str, reference: str = "BOR-D-1", ship_call: str = DECLARATION_ID,
             answers: str = ANSWERED) -> bytes:
    return (f'<NCA_Form_Res><Header Version="5.2" LARefId="{reference}" NCARefId="{answers}" '
            f'SentAt="2026-03-03T11:00:00Z" From="BORDER" To="TRADEHUB"/>'
            f'<Body ShipCallId="{ship_call}" StatusCode="{code}">{"".join(reasons)}</Body></NCA_Form_Res>').encode()


def reason(code: str, text: str, entry: str | None = None) -> str:
    return f'<Reason ReasonCode="{code}" Description="{text}"' + (f' Entry="{entry}"' if entry else "") + "/>"


@pytest.mark.parametrize(("data", "status"), [
    (receipt("OK"), "received"),
    (receipt("Error", message="Crew list unreadable"), "rejected"),
    (decision("Accepted"), "accepted"),
    (decision("Cleared"), "released"),
    (decision("Cancelled"), "cancelled"),
    (decision("Rejected", reason("VISA", "No visa")), "rejected"),
])
def test_each_reply_becomes_the_right_reply(data: bytes, status: str):
    [reply] = parse_border_replies(data)
    assert (reply.agency, reply.status, reply.declaration_id, reply.answers, reply.version) == (
        "border", status, DECLARATION_ID, ANSWERED, None)


def test_a_receipt_keeps_its_time_as_sent():
    [reply] = parse_border_replies(receipt())
    assert (reply.message_id, reply.code, reply.issued_at) == ("BOR-R-1", "OK", "2026-03-03T10:15:00.250Z")


def test_reasons_may_point_at_a_crew_member_or_a_passenger():
    [reply] = parse_border_replies(decision(
        "Rejected", reason("VISA", "Visa expired", "CrewMember[2]"), reason("WL", "Refer to officer", "Passenger[1]"),
        reason("DOC", "Crew list incomplete")))
    assert reply.status == "rejected" and reply.text == "rejected"
    assert [(error.code, error.text, error.field) for error in reply.errors] == [
        ("VISA", "Visa expired", "$.crew[1]"), ("WL", "Refer to officer", "$.passengers[0]"),
        ("DOC", "Crew list incomplete", "")]


def test_replies_apply_to_a_real_declaration():
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ident = str(app.submit(DEPARTURE).declaration.id)
    answers = message_id(ident, 1, "border", "fal5")
    [rejected] = parse_border_replies(decision("Rejected", reason("VISA", "Visa expired", "CrewMember[2]"),
                                               ship_call=ident, answers=answers))
    rejected.apply(app)
    state = app.get(ident).agencies["border"]
    assert (state["status"], state["code"], state["text"]) == (
        "rejected", "Rejected", "rejected; VISA at $.crew[1]: Visa expired")


@pytest.mark.parametrize(("data", "code"), [
    (decision("Rejected"), "schema-invalid"),
    (decision("Rejected", reason("VISA", "No visa", "CrewMember[0]")), "schema-invalid"),
    (decision("Rejected", reason("VISA", "No visa", "DPGItem[1]")), "schema-invalid"),  # maritime's, not ours
    (decision(reference="has space"), "schema-invalid"),
    (receipt(sender="MARITIME"), "schema-invalid"),
    (receipt("Error"), "schema-invalid"),
    (b"<NCA_Receipt>", "not-well-formed"),
    (b'<!DOCTYPE NCA_Receipt SYSTEM "http://example.com/t2000.dtd"><NCA_Receipt/>', "doctype"),
    (b"<NCA_FAL5/>", "unexpected-root"),
])
def test_the_gate_refuses_what_is_not_a_valid_reply(data: bytes, code: str):
    with pytest.raises(Refused) as refused:
        parse_border_replies(data)
    assert refused.value.code == code


def test_xmlschema_agrees_with_the_gate_on_replies():
    validator = second_validator(DECISION_SCHEMA.name)
    assert validator.is_valid(decision("Rejected", reason("V", "why", "Passenger[3]")).decode())
    assert validator.is_valid(receipt().decode())
    assert not validator.is_valid(decision("Rejected", reason("V", "why", "CrewMember[0]")).decode())
    assert not validator.is_valid(receipt(sender="MARITIME").decode())


def test_the_schemas_are_local_and_self_contained():
    for schema in (CREW_LIST_SCHEMA, PASSENGER_LIST_SCHEMA, DECISION_SCHEMA):
        document = etree.parse(str(schema.path))
        assert not document.xpath("//xs:import | //xs:include | //xs:redefine", namespaces=XS)
        assert document.getroot().get("targetNamespace") is None  # Trafic2000 has no namespace
