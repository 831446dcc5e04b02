"""Stencils build exactly what their builder builds, whatever the values."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from adapters.xml import Stencil

NS = "urn:test:stencil"


def item(parent: etree._Element, values: Mapping[str, str]) -> None:
    element = etree.SubElement(parent, f"{{{NS}}}Item", code=values["code"])
    etree.SubElement(element, f"{{{NS}}}Name").text = values["name"]
    etree.SubElement(element, f"{{{NS}}}Fixed").text = "always"
    etree.SubElement(etree.SubElement(element, f"{{{NS}}}Inner"), f"{{{NS}}}Deep").text = values["deep"]


def context() -> etree._Element:
    return etree.Element(f"{{{NS}}}List", nsmap={None: NS})


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=20)


@given(st.lists(st.fixed_dictionaries({"code": _text, "name": _text, "deep": _text}), max_size=4))
def test_a_stamped_copy_serialises_like_the_built_one(rows: list[dict[str, str]]):
    stencil = Stencil(context(), item, ("code", "name", "deep"))
    built, stamped = context(), context()
    for values in rows:
        item(built, values)
        stencil.stamp(values, stamped)
    assert etree.tostring(stamped) == etree.tostring(built)


def test_values_that_look_like_blanks_are_written_as_they_are():
    stencil = Stencil(context(), item, ("code", "name", "deep"))
    element = stencil.stamp({"code": "{name}", "name": "{code}", "deep": "{"})
    assert element.get("code") == "{name}" and element[0].text == "{code}" and element[2][0].text == "{"


def test_a_key_the_builder_never_writes_is_a_mistake_found_at_once():
    with pytest.raises(ValueError, match="never wrote"):
        Stencil(context(), item, ("code", "name", "deep", "forgotten"))


def test_a_builder_that_changes_a_value_cannot_be_a_stencil():
    def shortening(parent: etree._Element, values: Mapping[str, str]) -> None:
        etree.SubElement(parent, "x").text = values["name"][:3]

    with pytest.raises(ValueError, match="as given"):
        Stencil(context(), shortening, ("name",))
