"""Validation of declaration documents: every failing field, by JSON path."""

from __future__ import annotations

import json

import pytest

from hub.declarations import InvalidDeclaration, content_hash, validate_document
from hub.declarations.documents import MalformedJSON, load_json

from . import samples


def errors_of(document) -> dict[str, str]:
    with pytest.raises(InvalidDeclaration) as raised:
        validate_document(document)
    return {error.path: error.message for error in raised.value.errors}


def test_valid_documents_come_back_canonical():
    document = samples.goods(containers=["hlxu 800001 4"])
    document["transport"]["vessel"]["imo"] = "IMO 9321483"
    canonical = validate_document(document)
    assert canonical["containers"] == ["HLXU8000014"]
    assert canonical["transport"]["vessel"]["imo"] == "9321483"
    assert validate_document(samples.vessel_call())["kind"] == "vessel_call"


def test_every_failing_field_is_named_at_once():
    document = samples.goods(containers=["HLXU8000015"], port_of_loading="XXABC")
    document["declarant"]["id"] = "91350200MA2YQ4RK0X"  # check digit off by one
    document["items"][0].update(origin="ZZ", currency="XYZ", gross_kg="-1", unit="BOXES")
    errors = errors_of(document)
    assert set(errors) == {
        "$.declarant.id", "$.containers[0]", "$.port_of_loading", "$.items[0].origin",
        "$.items[0].currency", "$.items[0].gross_kg", "$.items[0].unit",
    }
    assert "check digit" in errors["$.declarant.id"]
    assert "check digit" in errors["$.containers[0]"]
    assert "negative" in errors["$.items[0].gross_kg"]


@pytest.mark.parametrize("change, path, reason", [
    ({"items": []}, "$.items", "must not be empty"),
    ({"surprise": 1}, "$.surprise", "not a known field"),
    ({"reference": "   "}, "$.reference", "blank"),
    ({"reference": "X" * 36}, "$.reference", "at most 35"),
    ({"reference": "REF\u0000"}, "$.reference", "U+0000"),
    ({"direction": "transit"}, "$.direction", "'import'"),
    ({"customs_office": "37"}, "$.customs_office", "customs office"),
    ({"port_of_discharge": "DEHAM"}, "$.port_of_discharge", "same as the port of loading"),
    ({"port_of_loading": "DEHA1"}, "$.port_of_loading", "UN/LOCODE"),
    ({"containers": ["HLXU8000014", "HLXU8000014"]}, "$.containers", "listed twice"),
    ({"transport": {"mode": "sea"}}, "$.transport.vessel", "required for sea"),
    ({"transport": {"mode": "teleport"}}, "$.transport.mode", "'sea'"),
    ({"consignee": {"name": "X", "country": "CN", "id": "12345"}}, "$.consignee.id", "USCC"),
    ({"documents": [{"type": "visa", "number": "1"}]}, "$.documents[0].type", "'health_certificate'"),
    ({"consignor": None}, "$.consignor", "must be an object"),
    # What WCO messages can carry: party ids an..17, vessel names an..35.
    ({"consignor": {"name": "X", "country": "DE", "id": "DE1234567890123456"}}, "$.consignor.id",
     "at most 17 characters"),
    ({"transport": {"mode": "sea", "vessel": {"imo": "9321483", "name": "N" * 36, "voyage": "1"},
                    "bill_of_lading": "B1"}}, "$.transport.vessel.name", "at most 35 characters"),
    # stdnum takes any three word characters as the owner code; ISO 6346 (and every agency schema) letters only.
    ({"containers": ["000U0000003"]}, "$.containers[0]", "owner code must be three letters"),
    # Caps that keep the largest agency message under the broker's payload limit (docs/dispatch.md).
    ({"containers": ["HLXU8000014"] * 10000}, "$.containers", "at most 9999 entries"),
    ({"documents": [{"type": "other", "number": "1"}] * 1000}, "$.documents", "at most 999 entries"),
])
def test_goods_field_rules(change, path, reason):
    errors = errors_of(samples.goods(**change))
    assert path in errors and reason in errors[path], errors


@pytest.mark.parametrize("field, value, reason", [
    ("hs_code", "1234", "6, 8 or 10 digits"),
    ("hs_code", "7712345678", "chapter 77"),
    ("hs_code", "0012345678", "chapter 00"),
    ("quantity", "0", "greater than zero"),
    ("quantity", 4, 'write 4 as "4"'),
    ("value", 1.5, "must be a string"),
    ("value", False, "must be a string"),
    ("value", "1e5", "decimal number"),
    ("value", "NaN", "decimal number"),
    ("value", "12.3456", "at most 3 decimal places"),
    ("net_kg", "6000", "exceeds gross mass"),
    ("un_number", "0000", "UN number"),
    ("un_number", "12345", "UN number"),
    ("unit", "PCE", "Recommendation 20"),
    ("description", "", "blank"),
    ("value", "12345678901234567", "at most 16 digits"),
])
def test_item_field_rules(field, value, reason):
    document = samples.goods()
    document["items"][0][field] = value
    errors = errors_of(document)
    path = f"$.items[0].{field}"
    assert path in errors and reason in errors[path], errors


@pytest.mark.parametrize("change, path, reason", [
    ({"direction": "arrival"}, "$.eta", "required for an arrival"),
    ({"etd": "2026-12-03T18:30:00"}, "$.etd", "UTC offset"),
    ({"etd": "tomorrow"}, "$.etd", "ISO 8601"),
    ({"etd": "3001-01-01T00:00:00Z"}, "$.etd", "outside the years 2000-2999"),
    ({"eta": "2026-12-04T00:00:00Z"}, "$.etd", "after the ETA"),
    ({"crew": []}, "$.crew", "must not be empty"),
    ({"vessel": {"imo": "9321484", "name": "X", "call_sign": "DJNP2", "flag": "DE"}},
     "$.vessel.imo", "check digit"),
    ({"vessel": {"imo": "9321483", "name": "X", "call_sign": "D", "flag": "DE"}},
     "$.vessel.call_sign", "call sign"),
    ({"dangerous_goods": [{"un_number": "1203", "imdg_class": "10", "description": "x"}]},
     "$.dangerous_goods[0].imdg_class", "IMDG"),
    # Customs gets each entry as a WCO goods item, of which a declaration holds at most 999.
    ({"dangerous_goods": [{"un_number": "1203", "imdg_class": "3", "description": "x"}] * 1000},
     "$.dangerous_goods", "at most 999 entries"),
])
def test_vessel_call_field_rules(change, path, reason):
    errors = errors_of(samples.vessel_call(**change))
    assert path in errors and reason in errors[path], errors


@pytest.mark.parametrize("birth, reason", [("1975-13-01", "ISO 8601"), ("2999-01-01", "outside"),
                                           ("19750630", "ISO 8601")])
def test_crew_dates_of_birth(birth, reason):
    document = samples.vessel_call()
    document["crew"][0]["date_of_birth"] = birth
    assert reason in errors_of(document)["$.crew[0].date_of_birth"]


def test_passengers_have_no_rank():
    document = samples.vessel_call()
    document["passengers"][0]["rank"] = "Captain"
    assert errors_of(document) == {"$.passengers[0].rank": "is not a known field"}


@pytest.mark.parametrize("raw, error", [
    ([], {"$": "must be a JSON object"}),
    ({}, {"$.kind": "is required"}),
    ({"kind": "cargo"}, {"$.kind": "must be one of 'goods', 'vessel_call'"}),
])
def test_documents_that_are_not_declarations(raw, error):
    assert errors_of(raw) == error


def test_content_hash_ignores_key_order_but_not_content():
    document = validate_document(samples.goods())
    reordered = json.loads(json.dumps(document, sort_keys=True))
    assert content_hash(reordered) == content_hash(document)
    assert content_hash(validate_document(samples.goods(customs_office="3701"))) != content_hash(document)


@pytest.mark.parametrize("data, reason", [
    (b'{"kind": "goods",', "line 1, column 18"),
    (b'{"a": 1, "a": 2}', "key 'a' appears twice"),
    (b'{"value": NaN}', "NaN is not a JSON number"),
    (b'{"name": "caf\xe9"}', "byte 13 (0xe9) is not valid UTF-8"),
])
def test_malformed_json_is_named_by_position(data, reason):
    with pytest.raises(MalformedJSON, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_json(data)


def test_a_utf8_byte_order_mark_is_accepted():
    assert load_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("value, valid", [
    ("1", True), ("12.5", True), ("0.5", True), ("0", True), ("007", True), ("1" * 16, True),
    ("1" * 17, False), ("1" * 15 + ".1", True), ("1" * 16 + ".1", False), ("1.1234567", False),
    ("-0", False), (".5", False), ("5.", False), ("1,5", False), (" 1", False),
    ("\u0661\u0662", False), ("\u0660", False), ("1\u0665.5", False),
])
@pytest.mark.parametrize("positive", [False, True])
def test_decimal_fast_path_agrees_with_the_full_check(value: str, valid: bool, positive: bool):
    from hub.declarations import values

    def accepts(check) -> bool:
        try:
            check(value, positive=positive)
        except ValueError:
            return False
        return True

    expected = valid and not (positive and value.strip("0.") == "")
    assert accepts(values.decimal) is expected
    assert accepts(values.decimal_string) is expected


@pytest.mark.parametrize("field, value", [
    ("hs_code", "\u0660\u0661\u0660\u0662\u0662\u0661"), ("customs_office", "\u0663\u0667\u0660\u0662"),
])
def test_only_ascii_digits_count_as_digits(field: str, value: str):
    document = samples.goods()
    if field == "hs_code":
        document["items"][0]["hs_code"] = value
        assert "$.items[0].hs_code" in errors_of(document)
    else:
        document[field] = value
        assert f"$.{field}" in errors_of(document)


@pytest.mark.parametrize("field, value", [
    ("etd", "2026-W49-2T08:00Z"), ("etd", "20261201T080000Z"), ("etd", "2026-12-01"),
])
def test_times_must_be_extended_iso_8601(field: str, value: str):
    assert "ISO 8601" in errors_of(samples.vessel_call(**{field: value}))[f"$.{field}"]


def test_dates_of_birth_must_be_calendar_dates():
    document = samples.vessel_call()
    document["crew"][0]["date_of_birth"] = "1975-W26-1"
    assert "ISO 8601" in errors_of(document)["$.crew[0].date_of_birth"]


@pytest.mark.parametrize("kind", [[], {}, 7, None])
def test_a_kind_that_is_not_a_string_is_named(kind):
    assert list(errors_of({"kind": kind})) == ["$.kind"]


@pytest.mark.parametrize("data, reason", [
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"n": ' + b"1" * 5000 + b"}", "too many digits"),
])
def test_pathological_json_is_malformed_not_a_crash(data: bytes, reason: str):
    with pytest.raises(MalformedJSON, match=reason):
        load_json(data)
