"""Routing rules as data: the table of docs/messages.md, the reasons, and overriding files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.declarations import AGENCIES, RoutingError, RoutingRules, validate_document

from . import samples

RULES = RoutingRules.load()
SHRIMP = {"hs_code": "0306170000", "description": "Frozen shrimps", "origin": "VN", "quantity": "10",
          "unit": "KGM", "gross_kg": "11", "net_kg": "10", "value": "100.00", "currency": "USD"}


def route(document) -> dict[str, str]:
    return RULES.route(validate_document(document))


def test_goods_in_containers_by_sea_go_to_customs_and_port():
    assert list(route(samples.goods())) == ["customs", "port"]


@pytest.mark.parametrize("hs_code, inspected", [
    ("0101210000", True), ("2403110000", True), ("4407110000", True),
    ("2501000000", False), ("4301100000", False), ("9405420000", False),
])
def test_the_inspection_catalogue_is_chapters_01_to_24_and_44(hs_code, inspected):
    routes = route(samples.goods(items=[dict(SHRIMP, hs_code=hs_code)]))
    assert ("inspection" in routes) is inspected
    if inspected:
        assert hs_code in routes["inspection"] and f"chapter {hs_code[:2]}" in routes["inspection"]


@pytest.mark.parametrize("document_type", ["health_certificate", "phytosanitary_certificate"])
def test_a_health_or_phytosanitary_certificate_brings_inspection(document_type):
    routes = route(samples.goods(documents=[{"type": document_type, "number": "HC-1"}]))
    assert routes["inspection"] == f"{document_type} HC-1 is declared"


def test_dangerous_goods_bring_the_maritime_administration():
    routes = route(samples.goods(items=[dict(SHRIMP, hs_code="3814000000", un_number="1993")]))
    assert routes["maritime"] == "dangerous goods UN 1993"


def test_no_port_without_containers_or_by_air():
    assert "port" not in route(samples.goods(containers=[]))
    air = samples.goods(transport={"mode": "air"})
    assert list(route(air)) == ["customs"]


def test_a_vessel_call_concerns_all_five_agencies():
    routes = route(samples.vessel_call())
    assert list(routes) == ["customs", "inspection", "port", "maritime", "border"]
    assert routes["inspection"] == "health quarantine of every ship"


def test_a_rules_file_replaces_the_defaults(tmp_path: Path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nagency = "border"\nkinds = ["goods"]\n'
                     'when = [{ transport_modes = ["road"] }, { has_containers = false }]\n')
    custom = RoutingRules.load(rules)
    assert custom.route(validate_document(samples.goods(containers=[]))) == {"border": "no containers"}
    assert custom.route(validate_document(samples.goods())) == {}


@pytest.mark.parametrize("text, message", [
    ('[[rule]]\nagency = "police"\nkinds = ["goods"]\nwhen = [{ always = true }]', "agency must be one of"),
    ('[[rule]]\nagency = "customs"\nkinds = ["cargo"]\nwhen = [{ always = true }]', "kinds must be"),
    ('[[rule]]\nagency = "customs"\nkinds = ["goods"]\nwhen = [{ moon_phase = "full" }]', "unknown condition 'moon_phase'"),
    ('[[rule]]\nagency = "customs"\nkinds = ["goods"]\nwhen = [{ hs_chapters = "01" }]', "hs_chapters must be a list"),
    ('[[rule]]\nagency = "customs"\nkinds = ["goods"]\nwhen = []', "non-empty list of conditions"),
    ('[[rule]]\nagency = "customs"\nkinds = ["goods"]\nwhen = [{ always = true }]\nextra = 1', "unknown key(s) ['extra']"),
    ('[[rules]]\nagency = "customs"', "unknown top-level key(s) ['rules']"),
    ('[[rule]\n', "rules.toml"),
    ('recognition = ["customs"]', "[recognition] must be a table"),
    ('[recognition]\npolice = ["customs"]', "'police' is not an agency"),
    ('[recognition]\ncustoms = ["customs"]', "customs must list other agencies"),
    ('[recognition]\ncustoms = "inspection"', "customs must list other agencies"),
])
def test_a_broken_rules_file_is_refused_with_its_place(tmp_path: Path, text: str, message: str):
    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    with pytest.raises(RoutingError) as raised:
        RoutingRules.load(rules)
    assert message in str(raised.value) and "rules.toml" in str(raised.value)


def test_mutual_recognition_is_data_with_the_spec_defaults(tmp_path: Path):
    shipped = RoutingRules.load()
    pairs = {(agency, inspector) for agency in AGENCIES for inspector in AGENCIES
             if shipped.recognises(agency, inspector)}
    assert pairs == {("customs", "inspection"), ("inspection", "customs"), ("port", "maritime"),
                     ("maritime", "border")}
    assert shipped.recognisers("inspection", ["port", "customs", "inspection"]) == ["customs"]
    rules = tmp_path / "rules.toml"
    rules.write_text('[recognition]\nport = ["customs", "inspection"]\n')
    assert RoutingRules.load(rules).recognisers("inspection", AGENCIES) == ["port"]
    rules.write_text('[[rule]]\nagency = "customs"\nkinds = ["goods"]\nwhen = [{ always = true }]\n')
    assert RoutingRules.load(rules).recognisers("inspection", AGENCIES) == []


def test_a_missing_rules_file_is_named(tmp_path: Path):
    with pytest.raises(RoutingError, match="missing.toml"):
        RoutingRules.load(tmp_path / "missing.toml")
