"""Any declaration the hub accepts makes valid messages for every agency it is routed to.

In production a message that fails its schema stops that agency's dispatch (`InvalidMessage`): an outage.
So validation and the mappings must agree exactly, and these properties generate declarations as broadly as
validation admits them (every transport mode, code list entry, document and identity document type, decimals
at their limits, free text with any printable Unicode, XML's special characters and maximal lengths), then
check, for the original, an amendment to another such declaration and a withdrawal:

- `messages_for` builds every routed agency's messages (each mapping validates against `xsd/`);
- customs messages validate against the published WCO DEC-DMS:2 schema, FAL forms and `NCA_Suppr_Not`
  against the published Trafic2000 5.2 schema;
- customs, inspection and port messages never carry a person's name or identity document: they are the
  same bytes whatever the crew and passengers are called, and recognisable names never appear in them;
- goods routed to the port get a release notice once customs (and inspection, where routed) release them.
"""

from __future__ import annotations

import copy
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import pycountry
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum import imo, iso6346
from stdnum.cn import uscc

from adapters.customs import OUTCOMES
from adapters.inspection.decisions import DECISIONS
from adapters.messages import GATE_OUT, Change, change_of
from adapters.outbound import messages_for
from adapters.port.mapping import NS as PORT
from adapters.port.mapping import RELEASE_NOTICE_NAME
from hub.declarations import Declarations, InvalidDeclaration, RoutingRules, validate_document
from hub.declarations.documents import DOCUMENT_TYPES, TRANSPORT_MODES
from hub.declarations.domainmodel import RELEASED
from hub.declarations.values import IMDG_CLASSES, rec20_units

from . import samples
from .messaging import amended, interop, submitted, withdrawn

RULES = RoutingRules.load()
# Agencies that may never learn who is on board (border gets the lists, maritime the master's name).
NO_PERSONAL_DATA = ("customs", "inspection", "port")
# Enough examples to cover every branch many times over, few enough to run in seconds on two cores.
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def wco() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(interop("wco-dms", "wrapper.xsd"))))


@cache
def trafic2000() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(interop("fal-trafic2000", "T2000_5.2_Charte_5-1.xsd"))))


@pytest.fixture(autouse=True)
def published_schemas() -> None:
    """Load the published schemas (tests/interop) before any example runs: a missing one fails at once,
    instead of failing every example and making hypothesis shrink each one."""
    wco()
    trafic2000()


# ---- values, each as broad as its checker in hub.declarations.values admits -----------------

COUNTRIES = sorted(country.alpha_2 for country in pycountry.countries)
CURRENCIES = sorted(currency.alpha_3 for currency in pycountry.currencies)
UNITS = sorted(rec20_units())
_CODE_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Anything `values.text` keeps: no control, format, surrogate, private-use or unassigned character. That still
# admits line and paragraph separators and every kind of space, which agency formats must cope with.
_char = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn"))
# What breaks serialisers and naive length checks: XML's specials, runs of spaces, non-ASCII spaces, CJK,
# combining marks (alone, too), characters outside the BMP, ligatures, line separators.
_tricky = st.sampled_from(["&", "<", ">", '"', "'", "]]>", "&amp;", "  ", "\u3000", "\u00a0", "\u2028", "\u2029",
                           "厦门国际货运", "e\u0301", "\u0301", "\U0001f6a2", "\U00020bb7", "\ufb01", "İ", "ǅ"])
_piece = st.one_of(_char, _tricky)


def texts(max_length: int) -> st.SearchStrategy[str]:
    """Free text `values.text` accepts for a field of `max_length` characters, often exactly that long."""
    short = st.lists(_piece, min_size=1, max_size=12).map("".join)
    maximal = st.lists(_piece, min_size=1, max_size=6).map(lambda parts: "".join(parts) * max_length)
    return st.one_of(short, short, maximal).map(lambda text: text[:max_length]).filter(lambda text: text.strip())


@st.composite
def decimals(draw, *, places: int, positive: bool = False) -> str:
    """An exact decimal string `values.decimal` accepts: up to 16 digits (leading zeros are free) and `places`."""
    fraction_digits = draw(st.integers(0, places))
    total = draw(st.integers(max(fraction_digits, 1), 16))
    whole_digits = total - fraction_digits
    whole = (draw(st.sampled_from("123456789")) + draw(st.text("0123456789", min_size=whole_digits - 1,
                                                             max_size=whole_digits - 1))) if whole_digits else "0"
    whole = "0" * draw(st.sampled_from([0, 0, 0, 1, 3])) + whole
    fraction = draw(st.text("0123456789", min_size=fraction_digits, max_size=fraction_digits))
    value = whole + ("." + fraction if fraction else "")
    if positive:
        assume(Decimal(value) > 0)
    return value


def amounts(places: int, positive: bool = False) -> st.SearchStrategy[str]:
    limits = ["9" * 16, "1" + "0" * 15, "9" * (16 - places) + "." + "9" * places, "0." + "0" * (places - 1) + "1"]
    return st.one_of(decimals(places=places, positive=positive), st.sampled_from(limits + ([] if positive else ["0"])))


@st.composite
def usccs(draw) -> str:
    """A unified social credit code with its check character: 8 digits, then 9 of the code's alphabet."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = draw(st.text("0123456789", min_size=8, max_size=8)) + draw(st.text(alphabet, min_size=9, max_size=9))
    return body + uscc.calc_check_digit(body)


@st.composite
def imo_numbers(draw) -> str:
    digits = draw(st.text("0123456789", min_size=6, max_size=6))
    return draw(st.sampled_from(["", "IMO", "IMO "])) + digits + imo.calc_check_digit(digits)


@st.composite
def container_numbers(draw) -> str:
    """ISO 6346: an owner code, a category, a serial number and the check digit."""
    owner = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3))
    number = owner + draw(st.sampled_from("UJZR")) + draw(st.text("0123456789", min_size=6, max_size=6))
    return number + iso6346.calc_check_digit(number)


def locodes() -> st.SearchStrategy[str]:
    """A country that exists and three letters or digits 2-9, as `values.locode` checks."""
    return st.builds(str.__add__, st.sampled_from(COUNTRIES),
                     st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ23456789", min_size=3, max_size=3))


def hs_codes() -> st.SearchStrategy[str]:
    """6, 8 or 10 digits in any chapter `values.hs_code` admits (01-99 but 77), dotted or not."""
    chapters = st.integers(1, 99).filter(lambda chapter: chapter != 77).map("{:02d}".format)
    rest = st.sampled_from([4, 6, 8]).flatmap(lambda size: st.text("0123456789", min_size=size, max_size=size))
    return st.builds(lambda chapter, digits, dotted: (f"{chapter}{digits[:2]}.{digits[2:]}" if dotted
                                                      else chapter + digits), chapters, rest, st.booleans())


def un_numbers() -> st.SearchStrategy[str]:
    return st.integers(4, 3599).map("{:04d}".format).flatmap(lambda code: st.sampled_from([code, "UN" + code]))


@st.composite
def timestamps(draw) -> str:
    """ISO 8601 with a UTC offset, years 2000-2999 in UTC, with or without seconds and fractions."""
    offset = draw(st.sampled_from(["Z", "+00:00", "+08:00", "-05:30", "+14:00", "-12:00"]))
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2999, 12, 30)))
    shape = draw(st.sampled_from(["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f"]))
    # The first and last moments `values.timestamp` admits, written in UTC and in other zones.
    limits = ["2000-01-01T00:00Z", "2000-01-01T08:00:00+08:00", "2999-12-31T23:59:59.999999Z",
              "2999-12-31T13:59:59-10:00"]
    return draw(st.one_of(st.just(moment.strftime(shape) + offset), st.sampled_from(limits)))


# ---- goods declarations --------------------------------------------------------------------

@st.composite
def parties(draw) -> dict[str, Any]:
    """A consignor or consignee, with or without an id: a USCC for a Chinese party, else any text of 17."""
    country = draw(st.sampled_from(["CN", "CN", *COUNTRIES]))
    party = {"name": draw(texts(70)), "country": country}
    if draw(st.booleans()):
        party["id"] = draw(usccs()) if country == "CN" else draw(texts(17))
    return party


@st.composite
def items(draw) -> dict[str, Any]:
    """A goods item: any HS chapter, Rec 20 unit and currency, decimals up to their limits, maybe a UN number."""
    gross, net = sorted((draw(amounts(6)), draw(amounts(6))), key=Decimal, reverse=True)
    item = {"hs_code": draw(hs_codes()), "description": draw(texts(512)), "origin": draw(st.sampled_from(COUNTRIES)),
            "quantity": draw(amounts(6, positive=True)), "unit": draw(st.sampled_from(UNITS)), "gross_kg": gross,
            "net_kg": draw(st.sampled_from([net, gross, "0"])), "value": draw(amounts(3)),
            "currency": draw(st.sampled_from(CURRENCIES))}
    if draw(st.booleans()):
        item["un_number"] = draw(un_numbers())
    return item


@st.composite
def goods(draw, reference: str | None = None, declarant: dict[str, Any] | None = None,
          for_the_port: bool = False) -> dict[str, Any]:
    """Goods by any mode; by sea in containers (routed to the port too) at least half the time, or always."""
    sea = st.just("sea")
    mode = draw(sea if for_the_port else st.one_of(sea, st.sampled_from(TRANSPORT_MODES)))
    transport: dict[str, Any] = {"mode": mode}
    if mode == "sea" or draw(st.booleans()):
        transport["vessel"] = {"imo": draw(imo_numbers()), "name": draw(texts(35)), "voyage": draw(texts(35))}
    if mode == "sea" or draw(st.booleans()):
        transport["bill_of_lading"] = draw(texts(35))
    loading = draw(locodes())
    declarant = declarant or {"id": draw(usccs()), "name": draw(texts(70))}
    document = {
        "kind": "goods", "reference": reference or draw(texts(35)), "direction": draw(st.sampled_from(["import",
                                                                                                     "export"])),
        "declarant": declarant, "consignor": draw(parties()), "consignee": draw(parties()),
        "customs_office": draw(st.one_of(st.text("0123456789", min_size=4, max_size=4),
                                         st.builds(lambda country, rest: country + rest, st.sampled_from(COUNTRIES),
                                                   st.text(_CODE_CHARS, min_size=6, max_size=6)))),
        "port_of_loading": loading, "port_of_discharge": draw(locodes().filter(lambda code: code != loading)),
        "transport": transport,
        "containers": draw(st.lists(container_numbers(), min_size=1, max_size=5, unique=True) if for_the_port else
                           st.one_of(st.just([]), st.lists(container_numbers(), min_size=1, max_size=5, unique=True))),
        "items": draw(st.lists(items(), min_size=1, max_size=8)),
        "documents": draw(st.lists(st.builds(lambda kind, number: {"type": kind, "number": number},
                                             st.sampled_from(DOCUMENT_TYPES), texts(35)),
                                   max_size=4, unique_by=lambda entry: (entry["type"], entry["number"].strip()))),
    }
    return document


# ---- vessel calls --------------------------------------------------------------------------

@st.composite
def people(draw, names: list[str], numbers: list[str], crew: bool) -> dict[str, Any]:
    """Someone on board, named from `names` and identified by one of `numbers` (drawing text is what costs)."""
    person = {"family_name": draw(st.sampled_from(names)), "given_names": draw(st.sampled_from(names)),
              "nationality": draw(st.sampled_from(COUNTRIES)),
              "date_of_birth": draw(st.dates(min_value=date(1900, 1, 1), max_value=date.today())).isoformat(),
              "document": {"type": draw(st.sampled_from(["passport", "seafarer_id", "identity_card", "other"])),
                           "number": draw(st.sampled_from(numbers))}}
    if crew:
        person["rank"] = draw(st.sampled_from(["Master", "Captain", " master ", "CAPTAIN", "Cook", *names]))
    else:
        for key in ("port_of_embarkation", "port_of_disembarkation"):
            if draw(st.booleans()):
                person[key] = draw(locodes())
    return person


@st.composite
def dangerous_goods(draw) -> dict[str, Any]:
    """An entry on board: any UN number and IMDG class, with or without packing group, mass and container."""
    entry = {"un_number": draw(un_numbers()), "imdg_class": draw(st.sampled_from(sorted(IMDG_CLASSES))),
             "description": draw(texts(512))}
    if draw(st.booleans()):
        entry["packing_group"] = draw(st.sampled_from(["I", "II", "III"]))
    if draw(st.booleans()):
        entry["gross_kg"] = draw(amounts(6))
    if draw(st.booleans()):
        entry["container"] = draw(container_numbers())
    return entry


@st.composite
def vessel_calls(draw, reference: str | None = None, declarant: dict[str, Any] | None = None) -> dict[str, Any]:
    """An arrival or departure with 1-30 crew, 0-30 passengers and 0-5 dangerous goods."""
    direction = draw(st.sampled_from(["arrival", "departure"]))
    eta, etd = sorted((draw(timestamps()), draw(timestamps())), key=datetime.fromisoformat)
    assume(datetime.fromisoformat(eta) != datetime.fromisoformat(etd))
    # An arrival needs its ETA and a departure its ETD; the other is optional.
    wanted = {"arrival": {"eta"}, "departure": {"etd"}}[direction] | draw(st.sets(st.sampled_from(["eta", "etd"])))
    names, numbers = draw(st.lists(texts(70), min_size=1, max_size=8)), draw(st.lists(texts(35), min_size=1,
                                                                                       max_size=8))
    document = {
        "kind": "vessel_call", "reference": reference or draw(texts(35)), "direction": direction,
        "declarant": declarant or {"id": draw(usccs()), "name": draw(texts(70))},
        "vessel": {"imo": draw(imo_numbers()), "name": draw(texts(35)),
                   "call_sign": draw(st.text(_CODE_CHARS, min_size=3, max_size=7)),
                   "flag": draw(st.sampled_from(COUNTRIES))},
        "voyage": draw(texts(35)), "port_of_call": draw(locodes()),
        **{key: value for key, value in (("eta", eta), ("etd", etd)) if key in wanted},
        "crew": draw(st.lists(people(names, numbers, crew=True), min_size=1, max_size=30)),
        "passengers": draw(st.lists(people(names, numbers, crew=False), max_size=30)),
        "dangerous_goods": draw(st.lists(dangerous_goods(), max_size=5)),
    }
    for key in ("last_port", "next_port"):
        if draw(st.booleans()):
            document[key] = draw(locodes())
    return document


# ---- a declaration, another version of it, and why it is withdrawn ----------------------------

@st.composite
def lifecycles(draw, kind) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A valid declaration of `kind`, a valid amendment of it (same declarant and reference), a withdrawal reason."""
    first = _valid(draw(kind()))
    second = _valid(draw(kind(reference=first["reference"], declarant=first["declarant"])))
    return first, second, draw(texts(512))


def _valid(document: dict[str, Any]) -> dict[str, Any]:
    """The canonical form of a generated document: one that validation refuses is a bug in the strategies."""
    try:
        return validate_document(document)
    except InvalidDeclaration as error:
        raise AssertionError(f"the strategy generated an invalid declaration: {error}") from None


# ---- the properties ------------------------------------------------------------------------

def changes(first: dict[str, Any], second: dict[str, Any], reason: str) -> list[Change]:
    return [submitted(first), amended(first, second), withdrawn(first, reason)]


def check_messages(change: Change) -> None:
    """`change` builds every message (each valid against `xsd/`); customs and FAL ones satisfy the published
    schemas too."""
    for message in messages_for(change, RULES):
        published = {"customs": wco, "maritime": trafic2000, "border": trafic2000}.get(message.agency)
        if published is not None:
            root = etree.fromstring(message.body)
            assert published().validate(root), (message.filename, str(published().error_log.last_error))


@EXAMPLES
@given(lifecycles(goods))
@pytest.mark.slow
def test_any_goods_declaration_makes_valid_messages_for_every_routed_agency(lifecycle):
    for change in changes(*lifecycle):
        check_messages(change)


@EXAMPLES
@given(lifecycles(vessel_calls))
@pytest.mark.slow
def test_any_vessel_call_makes_valid_messages_for_every_routed_agency(lifecycle):
    for change in changes(*lifecycle):
        check_messages(change)


def _pseudonymised(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents with every name and identity document number replaced by a recognisable stand-in.

    The same value always gets the same stand-in, so what an amendment changes stays what it changes.
    """
    stand_ins: dict[str, str] = {}

    def stand_in(value: str) -> str:
        return stand_ins.setdefault(value, f"PERSONAL{len(stand_ins):04d}")

    result = copy.deepcopy(documents)
    for document in result:
        for person in document["crew"] + document.get("passengers", []):
            person["family_name"], person["given_names"] = stand_in(person["family_name"]), stand_in(
                person["given_names"])
            person["document"]["number"] = stand_in(person["document"]["number"])
    return result


def _private(change: Change) -> dict[str, bytes]:
    return {message.filename: message.body for message in messages_for(change, RULES, NO_PERSONAL_DATA)}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lifecycles(vessel_calls))
@pytest.mark.slow
def test_no_name_or_identity_document_reaches_customs_inspection_or_port(lifecycle):
    first, second, reason = lifecycle
    stand_ins = _pseudonymised([first, second])
    for real, pseudonymous in zip(changes(first, second, reason), changes(*stand_ins, reason), strict=True):
        bodies = _private(pseudonymous)
        assert bodies and bodies == _private(real), "a message depends on who is on board"
        for name, body in bodies.items():
            assert b"PERSONAL" not in body, f"{name} names someone on board"


def _replay(app: Declarations, declaration_id) -> list[Change | None]:
    """The change each stored event makes, as dispatch derives them (None for events no agency hears about)."""
    found, before = [], None
    for event in app.events.get(declaration_id):
        found.append(change_of(event, copy.deepcopy(before) if before is not None else None))
        before = event.mutate(before)
    return found


@st.composite
def answer_times(draw) -> str:
    """A time as the reply parsers record it: ISO 8601 in UTC or with an offset, or a date alone."""
    days = st.dates(min_value=date(2000, 1, 1), max_value=date(2999, 12, 31)).map(date.isoformat)
    return draw(st.one_of(timestamps(), days))


# The codes with which each agency whose release gate-out waits for releases goods.
RELEASE_CODES = {"customs": sorted(code for code, (status, _) in OUTCOMES.items() if status == RELEASED),
                 "inspection": sorted(code for code, (status, *_) in DECISIONS.items() if status == RELEASED)}


@EXAMPLES
@given(goods(for_the_port=True).map(_valid), st.data())
@pytest.mark.slow
def test_goods_for_the_port_get_a_release_notice_once_customs_and_inspection_release(document, data):
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.submit(document).declaration
    assert "port" in declaration.routed_agencies
    deciders = [agency for agency in RELEASE_CODES if agency in declaration.routed_agencies]
    for agency in data.draw(st.permutations(deciders)):
        app.record_response(declaration.id, agency, f"{agency}-1", RELEASED, data.draw(answer_times()),
                            code=data.draw(st.sampled_from(RELEASE_CODES[agency])),
                            text=data.draw(st.one_of(st.just(""), texts(512))))
        if data.draw(st.booleans()):  # the enforcement process may settle between two releases, or not
            samples.settle(app, declaration.id)
    samples.settle(app, declaration.id)
    events = _replay(app, declaration.id)
    gate_outs = [change for change in events if change is not None and change.event == GATE_OUT]
    assert gate_outs == events[-1:], "gate-out must follow the last release, and only it"
    (notice,) = messages_for(gate_outs[0], RULES)
    assert (notice.agency, notice.name) == ("port", RELEASE_NOTICE_NAME)
    assert etree.fromstring(notice.body).xpath("p:Status/p:AgencyCode/text()", namespaces={"p": PORT}) == deciders


def test_lists_at_the_limits_validation_allows_make_valid_messages():
    """The generated lists are short; the longest ones validation admits must fit every agency's format too."""
    entry = {"un_number": "1203", "imdg_class": "3", "description": "Gasoline", "gross_kg": "1.5",
             "container": "HLXU8000014"}
    item = {**samples.goods()["items"][0], "hs_code": "0306170000", "un_number": "1263"}
    for document, key, last in ((samples.vessel_call(), "dangerous_goods", entry), (samples.goods(), "items", item)):
        first = _valid({**document, key: [last] * 999})
        second = _valid({**document, key: [last] * 998 + [{**last, "description": "changed"}]})
        for change in changes(first, second, "at the limits"):
            check_messages(change)
