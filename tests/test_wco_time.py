"""Inbound WCO times (adapters.xml.iso_time): read by hand for speed, exactly as the general parser reads them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.xml import SCHEMA_INVALID, Refused, iso_time


def by_strptime(text: str) -> str:
    """The reading iso_time had before, for comparison: strptime, refusing what does not exist."""
    try:
        moment = datetime.strptime(text.replace("Z", "+0000"), "%Y%m%d%H%M%S%z")
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError):
        return "refused"


def by_iso_time(text: str) -> str:
    try:
        return iso_time(text, "IssueDateTime")
    except Refused as refused:
        assert refused.code == SCHEMA_INVALID
        return "refused"


digits = st.sampled_from("0123456789")
zones = st.sampled_from(["Z", "+0000", "-0000", "+0130", "-2359", "+2400", "+0060", "+9959", "-1200", "+05:30",
                         "", "z", "+00", "Z "])


@settings(max_examples=3000, deadline=None)
@given(year=st.sampled_from(["0000", "0001", "1999", "2026", "9999"]) | st.text(digits, min_size=4, max_size=4),
       rest=st.text(digits, min_size=10, max_size=10), zone=zones)
def test_read_by_hand_as_strptime_reads_it(year: str, rest: str, zone: str):
    text = year + rest + zone
    assert by_iso_time(text) == by_strptime(text)


@given(text=st.text(max_size=24))
def test_any_text_is_read_as_strptime_reads_it_or_refused(text: str):
    assert by_iso_time(text) == by_strptime(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("20260228235959Z", "2026-02-28T23:59:59Z"),
    ("20260301013000+0200", "2026-02-28T23:30:00Z"),
    ("20260228233000-0130", "2026-03-01T01:00:00Z"),
    ("20260230120000Z", "refused"),  # 30 February
    ("00010101000000+0100", "refused"),  # before year 1 in UTC
    ("99991231235959-0001", "refused"),  # after 9999 in UTC
])
def test_examples(text: str, expected: str):
    assert by_iso_time(text) == expected


@settings(max_examples=3000, deadline=None)
@given(year=st.sampled_from(["0000", "0001", "2026", "9999"]) | st.text(digits, min_size=4, max_size=4),
       rest=st.text(digits, min_size=10, max_size=10), zone=st.sampled_from(["", "Z", "+0100", "-0530"]))
def test_customs_reads_its_times_by_hand_as_strptime_reads_them(year: str, rest: str, zone: str):
    from lxml import etree

    from adapters.customs.responses import _timestamp

    text = year + rest + zone
    element = etree.fromstring(f"<t>{text}</t>")
    try:
        moment = datetime.strptime(text[:14], "%Y%m%d%H%M%S")
        expected = moment.isoformat() + ("Z" if zone in ("", "Z") else f"{zone}:00")
    except ValueError:
        expected = "refused"
    try:
        got = _timestamp(element)
    except Refused:
        got = "refused"
    assert got == expected
