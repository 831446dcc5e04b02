"""Two independent validators, lxml and xmlschema, agree on every golden message, valid or broken."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from adapters.xml import Schema, compiled_schema

from .messaging import GOLDEN, second_validator

# The outbound schema for each agency folder of golden files.
OUTBOUND = {
    "customs": "customs/declaration.xsd",
    "inspection": "inspection/declaration.xsd",
    "maritime": "maritime/forms.xsd",
    "border": "border/forms.xsd",
    "notices": "notices/notices.xsd",
    "port": "port/messages.xsd",
}

GOLDEN_FILES = sorted(GOLDEN.glob("*/*.xml"))


def schema_for(path: Path) -> str:
    agency = path.parent.name
    assert agency in OUTBOUND, f"golden files for {agency} need their schema listed in OUTBOUND"
    return OUTBOUND[agency]


def lxml_says(schema_name: str, root: etree._Element) -> bool:
    return compiled_schema(Schema(schema_name, root.tag)).validate(root)


def test_there_are_golden_files_for_every_agency_with_a_schema():
    assert {path.parent.name for path in GOLDEN_FILES} == set(OUTBOUND)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_both_validators_accept_the_golden_message(path: Path):
    schema_name = schema_for(path)
    root = etree.parse(str(path)).getroot()
    assert lxml_says(schema_name, root)
    second_validator(schema_name).validate(root)  # raises with a readable path if it disagrees


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_both_validators_refuse_the_same_broken_message(path: Path):
    schema_name = schema_for(path)
    for name, breakage in _breakages(etree.parse(str(path)).getroot()).items():
        root = etree.parse(str(path)).getroot()
        breakage(root)
        assert not lxml_says(schema_name, root), name
        assert not second_validator(schema_name).is_valid(root), name


def _breakages(root: etree._Element) -> dict:
    if root.find("Header") is not None:  # Trafic2000: no namespace, and the header's attributes carry the ids
        return {
            "an identifier that is not one": lambda root: root.find("Header").set("LARefId", "not an id"),
            "an element out of place": lambda root: root.find("Header").addprevious(etree.Element("Body")),
            "a required element missing": lambda root: _drop(root.find("Header")),
        }
    return {
        "an identifier that is not one": lambda root: _first_named(root, "FunctionalReferenceID").__setattr__(
            "text", "not an id"),
        "an element out of place": lambda root: _first_named(root, "ID").addprevious(
            etree.Element(_first_named(root, "ID").tag)),
        "a required element missing": lambda root: _drop(_first_named(root, "FunctionCode")),
    }


def _first_named(root: etree._Element, local: str) -> etree._Element:
    return next(element for element in root.iter() if isinstance(element.tag, str)
                and etree.QName(element).localname == local)


def _drop(element: etree._Element) -> None:
    element.getparent().remove(element)
