"""Customs messages: WCO DEC-DMS:2 out, RES-DMS:2 in, golden files and conformance."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum.cn import uscc

from adapters.customs import DECLARATION_SCHEMA, OUTCOMES, RESPONSE_SCHEMA, customs_messages, parse_responses
from adapters.customs.pointers import GOODS, VESSEL_CALL, Pointer, field_at, pointer_to
from adapters.messages import AMENDMENT, CANCELLATION, ORIGINAL, message_id
from adapters.xml import InvalidMessage, Refused, check_outbound
from hub.declarations import RoutingRules

from . import citations, samples
from .messaging import EVENT_TIME, EXAMPLES, amended, assert_golden, interop, submitted, withdrawn

MD = "urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"
DEC = "urn:wco:datamodel:WCO:DEC-DMS:2"
RES = "urn:wco:datamodel:WCO:RES-DMS:2"
RDS = "urn:wco:datamodel:WCO:Response_DS:DMS:2"
DDS = "urn:wco:datamodel:WCO:Declaration_DS:DMS:2"
NS = {"md": MD, "d": DEC, "ds": DDS}


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def only(change, action=ORIGINAL):
    messages = customs_messages(change, action)
    assert len(messages) == 1
    return messages[0]


def tree(message) -> etree._Element:
    return etree.fromstring(message.body)


def texts(root: etree._Element, path: str) -> list[str]:
    return [element.text for element in root.xpath(path, namespaces=NS)]


# ---- the cases every golden, conformance and agreement test runs over -------------------

def _cases() -> dict[str, callable]:
    changed = example("goods-import.json")
    changed["items"][0]["value"] = "86500.00"
    changed["items"][1]["hs_code"] = "8471410000"
    changed["containers"] = changed["containers"] + ["TGHU9876542"]
    return {
        "goods-import-declaration": lambda: only(submitted(example("goods-import.json"))),
        "goods-export-declaration": lambda: only(submitted(example("goods-export.json"))),
        "vessel-arrival-conveyance-report": lambda: only(submitted(example("vessel-arrival.json"))),
        "vessel-departure-conveyance-report": lambda: only(submitted(samples.vessel_call())),
        "goods-import-amendment": lambda: only(
            amended(example("goods-import.json"), changed), AMENDMENT),
        "goods-import-invalidation": lambda: only(
            withdrawn(example("goods-import.json"), "Duplicate of XM-IMP-2026-000122;\n sent twice."),
            CANCELLATION),
        "vessel-departure-amendment": lambda: only(
            amended(samples.vessel_call(), samples.vessel_call(next_port="JPTYO")), AMENDMENT),
        # The licences the goods items cite, as dispatch verified them (tests/citations.py), under the hub's
        # recognition rules.
        "goods-import-citing-licences-declaration": lambda: customs_messages(
            replace(submitted(citations.import_citing()), licences=citations.VERDICTS), ORIGINAL,
            RoutingRules.load())[0],
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_matches_its_golden_file(case: str):
    assert_golden(f"customs/{case}.xml", CASES[case]().body)


def test_every_golden_file_belongs_to_a_case():
    golden = {path.stem for path in (Path(__file__).parent / "golden" / "customs").glob("*.xml")}
    assert golden == set(CASES), "remove stale golden files or add their cases"


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_conforms_to_the_published_wco_schema(case: str):
    published = etree.XMLSchema(etree.parse(str(interop("wco-dms", "wrapper.xsd"))))
    document = tree(CASES[case]())
    assert published.validate(document), published.error_log.last_error


def test_a_message_breaking_our_schema_never_leaves():
    root = tree(only(submitted(example("goods-import.json"))))
    root.find("d:Declaration/d:FunctionalReferenceID", NS).text = "not-a-message-id"
    with pytest.raises(InvalidMessage, match="FunctionalReferenceID"):
        check_outbound(root, DECLARATION_SCHEMA)


# ---- what the goods declaration carries -------------------------------------------------

def test_the_goods_declaration_carries_what_a_customs_officer_needs():
    change = submitted(example("goods-import.json"))
    message = only(change)
    root = tree(message)
    declaration = "/md:MetaData/d:Declaration"
    assert texts(root, f"{declaration}/d:FunctionCode") == ["9"]
    assert texts(root, f"{declaration}/d:TypeCode") == ["IMA"]
    assert texts(root, f"{declaration}/d:ID") == [change.declaration_id]
    assert texts(root, f"{declaration}/d:FunctionalReferenceID") == [message.message_id]
    assert texts(root, f"{declaration}/d:IssueDateTime/ds:DateTimeString") == ["20260302083015Z"]
    assert texts(root, f"{declaration}/d:DeclarationOfficeID") == ["3702"]
    assert texts(root, f"{declaration}/d:AdditionalInformation[d:StatementCode='VERSION']"
                       "/d:StatementDescription") == ["1"]
    assert texts(root, f"{declaration}/d:AdditionalInformation[d:StatementCode='VOYAGE']"
                       "/d:StatementDescription") == ["026N"]
    assert texts(root, f"{declaration}/d:BorderTransportMeans/d:ID") == ["9074729"]
    assert texts(root, f"{declaration}/d:BorderTransportMeans/d:Name") == ["HAI XI STAR"]
    shipment = f"{declaration}/d:GoodsShipment"
    assert texts(root, f"{shipment}/d:Consignor/d:Name") == ["Mekong Seafood Export JSC"]
    assert texts(root, f"{shipment}/d:Consignee/d:Address/d:CountryCode") == ["CN"]
    assert texts(root, f"{shipment}/d:Consignment/d:TransportEquipment/d:ID") == ["CSQU3054383", "MSKU1234565"]
    assert texts(root, f"{shipment}/d:Consignment/d:GoodsLocation/d:ID") == ["CNXMN"]
    assert texts(root, f"{shipment}/d:Consignment/d:LoadingLocation/d:ID") == ["VNSGN"]
    assert texts(root, f"{shipment}/d:PreviousDocument[d:TypeCode='705']/d:ID") == ["COSU6123456780"]
    assert texts(root, f"{shipment}/d:UCR/d:TraderAssignedReferenceID") == ["XM-IMP-2026-000123"]
    items = root.xpath(f"{shipment}/d:GovernmentAgencyGoodsItem", namespaces=NS)
    assert [texts(item, "d:Commodity/d:Classification/d:ID")[0] for item in items] == ["0306170000", "8471300000"]
    first = items[0]
    assert texts(first, "d:Origin/d:CountryCode") == ["VN"]
    assert texts(first, "d:Commodity/d:GoodsMeasure/d:GrossMassMeasure") == ["12650.5"]
    assert texts(first, "d:Commodity/d:GoodsMeasure/d:NetNetWeightMeasure") == ["12000"]
    assert first.xpath("d:Commodity/d:GoodsMeasure/d:TariffQuantity/@unitCode", namespaces=NS) == ["KGM"]
    assert first.xpath("d:Commodity/d:InvoiceLine/d:ItemChargeAmount/@currencyID", namespaces=NS) == ["USD"]
    assert texts(first, "d:Commodity/d:InvoiceLine/d:ItemChargeAmount") == ["84000.00"]
    assert texts(root, f"{declaration}/d:AdditionalDocument/d:TypeCode") == ["861", "852"]
    assert texts(root, f"{declaration}/d:InvoiceAmount") == ["252000"]


def test_un_numbers_travel_as_dangerous_goods():
    root = tree(only(submitted(example("goods-export.json"))))
    assert texts(root, "//d:GovernmentAgencyGoodsItem/d:Commodity/d:DangerousGoods/d:UNDGID") == ["3082"]
    assert texts(root, "//d:Declaration/d:TypeCode") == ["EXA"]
    # An export is presented where it is loaded; its port of discharge is a statement.
    assert texts(root, "//d:Consignment/d:GoodsLocation/d:ID") == ["CNXMN"]
    assert texts(root, "//d:AdditionalInformation[d:StatementCode='DISCHARGE-PORT']/d:StatementDescription") \
        == ["NOOSL"]


def test_a_uscc_travels_whole_in_seventeen_characters():
    root = tree(only(submitted(example("goods-import.json"))))
    declarant = root.xpath("//d:Declarant/d:ID", namespaces=NS)[0]
    assert declarant.get("schemeID") == "USCC" and len(declarant.text) == 17
    assert declarant.text + uscc.calc_check_digit(declarant.text) == "91350200MA2YQ4RK0U"


def test_a_vessel_call_reports_counts_to_customs_never_people():
    document = samples.vessel_call()
    body = only(submitted(document)).body.decode()
    for person in document["crew"] + document["passengers"]:
        assert person["family_name"] not in body and person["document"]["number"] not in body
    root = etree.fromstring(body.encode())
    assert texts(root, "//d:AdditionalInformation[d:StatementCode='CREW-COUNT']/d:StatementDescription") == ["1"]
    assert texts(root, "//d:Declaration/d:TypeCode") == ["CRE"]


# ---- ids, times, amendments, invalidations -----------------------------------------------

def test_message_ids_are_deterministic_per_declaration_version_and_agency():
    first = only(submitted(example("goods-import.json")))
    again = only(submitted(example("goods-import.json")))
    assert first.message_id == again.message_id and first.body == again.body
    assert first.message_id == message_id(first.declaration_id, 1, "customs", "declaration")
    assert message_id(first.declaration_id, 2, "customs", "declaration") != first.message_id
    assert message_id(first.declaration_id, 1, "inspection", "declaration") != first.message_id


def test_the_issue_time_is_the_events_not_the_clocks():
    message = only(submitted(example("goods-import.json")))
    assert message.issued_at == EVENT_TIME


def test_an_amendment_points_at_every_changed_field_and_carries_the_whole_declaration():
    before = example("goods-import.json")
    after = example("goods-import.json")
    after["items"][1]["value"] = "170000.00"
    after["customs_office"] = "3701"
    message = only(amended(before, after), AMENDMENT)
    root = tree(message)
    assert texts(root, "//d:Declaration/d:FunctionCode") == ["13"]
    assert texts(root, "//d:Declaration/d:TypeCode") == ["COR"]
    assert message.version == 2 and message.name == "amendment"
    chains = [[(pointer.findtext("d:DocumentSectionCode", namespaces=NS),
                pointer.findtext("d:SequenceNumeric", namespaces=NS), pointer.findtext("d:TagID", namespaces=NS))
               for pointer in amendment.xpath("d:Pointer", namespaces=NS)]
              for amendment in root.xpath("//d:Declaration/d:Amendment", namespaces=NS)]
    assert chains == [[("42A", None, "065")],
                      [("42A", None, None), ("67A", None, None), ("68A", "2", None), ("23A", None, None),
                       ("79A", None, "112")]]
    reason = texts(root, "//d:AdditionalInformation[d:StatementTypeCode='AES']/d:StatementDescription")[0]
    assert "$.customs_office" in reason and "$.items[1].value" in reason
    assert len(root.xpath("//d:GovernmentAgencyGoodsItem", namespaces=NS)) == 2


def test_a_withdrawal_invalidates_with_its_reason_on_one_line():
    message = only(withdrawn(example("goods-import.json"), "wrong\n  consignee\tentirely"), CANCELLATION)
    root = tree(message)
    assert (message.name, message.function_code) == ("invalidation", "13")
    assert texts(root, "//d:Declaration/d:TypeCode") == ["INV"]
    assert texts(root, "//d:AdditionalInformation[d:StatementTypeCode='AES']/d:StatementDescription") == [
        "wrong consignee entirely"]
    assert texts(root, "//d:Amendment/d:ChangeReasonCode") == ["1"]


def test_totals_too_long_for_wco_are_left_out_rather_than_sent_invalid():
    item = example("goods-import.json")["items"][0] | {"value": "9999999999999.999", "currency": "USD"}
    document = example("goods-import.json") | {"items": [item] * 20, "documents": []}
    root = tree(only(submitted(document)))
    assert root.xpath("//d:Declaration/d:InvoiceAmount", namespaces=NS) == []
    assert len(root.xpath("//d:GovernmentAgencyGoodsItem", namespaces=NS)) == 20


# ---- any valid declaration makes a valid message ------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Cf", "Zl", "Zp")),
                min_size=1, max_size=40).map(str.strip).filter(bool)
_decimal = st.builds(lambda whole, places, fraction: whole + ("." + fraction[:places] if places else ""),
                     st.from_regex(r"[1-9][0-9]{0,9}", fullmatch=True), st.integers(0, 3),
                     st.from_regex(r"[0-9]{3}", fullmatch=True))


@st.composite
def goods_documents(draw) -> dict:
    document = samples.goods(reference=draw(_text.map(lambda t: t[:35])))
    document["direction"] = draw(st.sampled_from(["import", "export"]))
    document["consignor"]["name"] = draw(_text)
    items = []
    for _ in range(draw(st.integers(1, 4))):
        gross = draw(_decimal)
        items.append({
            "hs_code": draw(st.sampled_from(["0306170000", "847130", "94054200", "4403110000"])),
            "description": draw(_text), "origin": draw(st.sampled_from(["VN", "DE", "US", "CN"])),
            "quantity": draw(_decimal), "unit": draw(st.sampled_from(["KGM", "H87", "LTR", "MTQ"])),
            "gross_kg": gross, "net_kg": gross, "value": draw(_decimal),
            "currency": draw(st.sampled_from(["USD", "EUR", "CNY"])),
        } | ({"un_number": "1263"} if draw(st.booleans()) else {}))
    document["items"] = items
    document["containers"] = draw(st.lists(st.sampled_from(["HLXU8000014", "CSQU3054383", "MSKU1234565"]),
                                           unique=True, max_size=3))
    document["documents"] = draw(st.lists(st.builds(lambda kind, number: {"type": kind, "number": number},
                                                    st.sampled_from(["health_certificate", "other", "import_licence"]),
                                                    _text.map(lambda t: t[:35])),
                                          max_size=3, unique_by=lambda d: (d["type"], d["number"])))
    if draw(st.booleans()):
        document["transport"] = {"mode": "road"}
    return document


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(goods_documents())
def test_any_valid_goods_declaration_maps_to_a_message_the_published_schema_accepts(document: dict):
    published = etree.XMLSchema(etree.parse(str(interop("wco-dms", "wrapper.xsd"))))
    change = submitted(document)  # the mapping itself validates against our schema
    for action in (ORIGINAL, CANCELLATION):
        root = tree(only(change, action))
        assert published.validate(root), published.error_log.last_error


# ---- pointers --------------------------------------------------------------------------

@pytest.mark.parametrize("table, document", [(GOODS, samples.goods()), (VESSEL_CALL, samples.vessel_call())])
def test_each_pointer_leads_back_to_its_field(table, document):
    for template, (chain, _) in table.items():
        if template in ("$.items[].unit", "$.items[].currency") or ("03A", False) in chain:
            continue  # these share a data element with another field
        path = template.replace("[]", "[1]")
        chain = pointer_to(path, document)
        assert field_at(list(chain), document) == path, (template, chain)


def test_a_pointer_to_something_the_hub_never_sends_names_no_field():
    assert field_at([Pointer("42A", 1), Pointer("17C", 1, "R144")], samples.goods()) == ""


# ---- responses ---------------------------------------------------------------------------

# Each published notification sample, and the outcome it must have at the hub.
SAMPLE_OUTCOMES = {
    "01_DMSACC.xml": ("01", "accepted"), "02_DMSRCV.xml": ("02", "received"),
    "03_DMSREJ.xml": ("03", "rejected"), "05_DMSCTL.xml": ("05", "inspection_required"),
    "06_DMSDOC.xml": ("06", "inspection_required"), "07_DMSRES.xml": ("07", "inspected"),
    "08_DMSROG.xml": ("08", "released"), "09_DMSCLE.xml": ("09", "released"),
    "10_DMSINV.xml": ("10", "cancelled"), "11_DMSREQ.xml": ("11", "accepted"),
    "13_DMSTAX.xml": ("13", None), "14_DMSCPI.xml": ("14", "held"), "15_DMSCPR.xml": ("15", "held"),
    "16_DMSEOG.xml": ("16", "released"), "17_DMSGER.xml": ("18", None),
}


def namespaced(data: bytes) -> bytes:
    """A published notification sample with the namespaces its README says to add."""
    root = etree.fromstring(data)

    def walk(element: etree._Element, namespace: str) -> None:
        if not isinstance(element.tag, str):
            return
        local = etree.QName(element).localname
        if namespace == MD and local == "Response":
            namespace = RES
        if namespace == RES and local == "Declaration" and any(
                isinstance(sibling.tag, str) and etree.QName(sibling).localname == "Declaration"
                for sibling in element.itersiblings(preceding=True)):
            namespace = DEC  # customs' corrected declaration
        tag_namespace = {RES: RDS, DEC: DDS}.get(namespace, namespace) if local == "DateTimeString" else namespace
        element.tag = f"{{{tag_namespace}}}{local}"
        for child in element:
            walk(child, namespace)

    walk(root, MD)
    etree.cleanup_namespaces(root)
    return etree.tostring(root)


def test_every_published_sample_has_an_expected_outcome():
    folder = interop("wco-dms", "samples", "notifications")
    assert {path.name for path in folder.glob("*.xml")} == set(SAMPLE_OUTCOMES)


@pytest.mark.parametrize("name", sorted(SAMPLE_OUTCOMES))
def test_each_published_notification_parses_to_its_hub_outcome(name: str):
    data = namespaced(interop("wco-dms", "samples", "notifications", name).read_bytes())
    (reply,) = parse_responses(data)
    code, status = SAMPLE_OUTCOMES[name]
    assert (reply.code, reply.status) == (code, status)
    assert reply.agency == "customs" and reply.message_id and reply.declaration_id
    assert reply.issued_at.startswith("20") and reply.issued_at.endswith("Z")
    assert reply.text


def test_a_published_rejection_names_its_error_and_where_it_points():
    data = namespaced(interop("wco-dms", "samples", "notifications", "03_DMSREJ.xml").read_bytes())
    (reply,) = parse_responses(data)
    assert reply.version == 1 and reply.answers == "Sample_A_TC01_1102_03"
    (error,) = reply.errors
    assert error.code == "CDS12005" and error.field == "" and "42A/17C/R144" in error.text


def test_duty_amounts_are_kept_in_the_notice():
    data = namespaced(interop("wco-dms", "samples", "notifications", "13_DMSTAX.xml").read_bytes())
    (reply,) = parse_responses(data)
    assert "A00 270.00 GBP" in reply.text and "B00 2054.00 GBP" in reply.text


def response(code: str, declaration_id: str, answers: str, *, version: int = 1, reply_id: str = "r-1",
             errors: str = "", extra: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<MetaData xmlns="{MD}" xmlns:r="{RES}" xmlns:rds="{RDS}">
  <WCODataModelVersionCode>3.6</WCODataModelVersionCode>
  <WCOTypeName>RES</WCOTypeName>
  <r:Response>
    <r:FunctionCode>{code}</r:FunctionCode>
    <r:FunctionalReferenceID>{reply_id}</r:FunctionalReferenceID>
    <r:IssueDateTime><rds:DateTimeString formatCode="304">20260302101500Z</rds:DateTimeString></r:IssueDateTime>
    {errors}
    <r:Declaration>
      <r:FunctionalReferenceID>{answers}</r:FunctionalReferenceID>
      <r:ID>{declaration_id}</r:ID>
      <r:VersionID>{version}</r:VersionID>
    </r:Declaration>
  </r:Response>
  {extra}
</MetaData>""".encode()


def test_a_rejection_of_a_hub_declaration_points_at_the_trader_field():
    document = example("goods-import.json")
    message = only(submitted(document))
    error = """<r:Error><r:Description>Commodity code not in the tariff</r:Description>
      <r:ValidationCode>T0145</r:ValidationCode>
      <r:Pointer><r:DocumentSectionCode>42A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:DocumentSectionCode>67A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:SequenceNumeric>2</r:SequenceNumeric><r:DocumentSectionCode>68A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:DocumentSectionCode>23A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:DocumentSectionCode>21A</r:DocumentSectionCode><r:TagID>145</r:TagID></r:Pointer>
    </r:Error>"""
    data = response("03", message.declaration_id, message.message_id, errors=error)
    (reply,) = parse_responses(data, lookup={message.declaration_id: document}.get)
    assert reply.status == "rejected" and reply.answers == message.message_id
    assert reply.errors[0].field == "$.items[1].hs_code"
    assert "T0145 at $.items[1].hs_code: Commodity code not in the tariff" in reply.summary


def test_one_message_may_carry_several_responses():
    first = response("02", "d-1", "m-1", reply_id="r-1")
    second = etree.fromstring(response("01", "d-1", "m-1", reply_id="r-2"))
    root = etree.fromstring(first)
    root.append(second.find(f"{{{RES}}}Response"))
    replies = parse_responses(etree.tostring(root))
    assert [(reply.message_id, reply.status) for reply in replies] == [("r-1", "received"), ("r-2", "accepted")]


def test_every_function_code_in_the_table_is_two_digits_and_known_statuses():
    from hub.declarations.domainmodel import AGENCY_STATUSES

    assert all(len(code) == 2 and code.isdigit() for code in OUTCOMES)
    assert all(status is None or status in AGENCY_STATUSES for status, _ in OUTCOMES.values())


@pytest.mark.parametrize("mutate, code", [
    (lambda data: data.replace(b"<r:FunctionalReferenceID>r-1</r:FunctionalReferenceID>", b""), "schema-invalid"),
    (lambda data: data.replace(b"<r:FunctionCode>01", b"<r:FunctionCode>1"), "schema-invalid"),
    (lambda data: data.replace(b"formatCode=\"304\"", b""), "schema-invalid"),
    (lambda data: data.replace(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                               b"<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY x \"y\">]>"), "doctype"),
    (lambda data: data.replace(b"MetaData", b"Other"), "unexpected-root"),
    (lambda data: data.replace(b"20260302101500Z", b"20260230101500Z"), "schema-invalid"),  # no 30 February
])
def test_a_bad_response_is_refused_with_a_stable_code(mutate, code: str):
    with pytest.raises(Refused) as refused:
        parse_responses(mutate(response("01", "d-1", "m-1")))
    assert refused.value.code == code


def test_the_response_schema_is_the_one_the_gate_uses():
    assert RESPONSE_SCHEMA.path.exists() and DECLARATION_SCHEMA.path.exists()


def test_responses_become_hub_commands_applied_once():
    from hub.declarations import Declarations

    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    document = example("goods-import.json")
    declaration = app.submit(document).declaration
    message = only(submitted(document))
    lookup = lambda declaration_id: app.get(declaration_id).document  # noqa: E731

    (received,) = parse_responses(response("02", message.declaration_id, message.message_id, reply_id="r-2"),
                                  lookup)
    received.apply(app)
    received.apply(app)  # delivered twice: applied once
    stored = app.get(declaration.id)
    assert stored.agencies["customs"]["status"] == "received" and stored.version == 2

    error = """<r:Error><r:ValidationCode>T0112</r:ValidationCode>
      <r:Pointer><r:DocumentSectionCode>42A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:DocumentSectionCode>67A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:SequenceNumeric>1</r:SequenceNumeric><r:DocumentSectionCode>68A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:DocumentSectionCode>23A</r:DocumentSectionCode></r:Pointer>
      <r:Pointer><r:DocumentSectionCode>79A</r:DocumentSectionCode><r:TagID>112</r:TagID></r:Pointer></r:Error>"""
    (rejected,) = parse_responses(response("03", message.declaration_id, message.message_id, reply_id="r-3",
                                           errors=error), lookup)
    rejected.apply(app)
    stored = app.get(declaration.id)
    assert stored.status == "rejected"
    assert stored.agencies["customs"]["code"] == "03"
    assert "T0112 at $.items[0].value" in stored.agencies["customs"]["text"]
