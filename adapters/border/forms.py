"""Outbound border messages: IMO FAL forms 5 and 6 as Trafic2000 `NCA_FAL5` and `NCA_FAL6`.

Pure functions of a `Change` (xsd/border/README.md says what goes where).
Every vessel call gets the crew list, FAL 5; one with passengers gets the
passenger list, FAL 6. They are the only messages that name the people on
board and their identity documents, as FAL 5 and 6 require; no other agency
gets them. Amendments, deletions and cancellations are as `adapters.fal`
describes.

What FAL requires and the hub's declarations do not collect is written as
the published schema allows: the place of birth as "NOT DECLARED" (the
country of birth and visa number, optional, are left out), a passenger's
undeclared port of embarkation or disembarkation as ZZUKN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from adapters.fal import (
    IDENTITY_DOCUMENTS,
    NOT_DECLARED,
    UNKNOWN_PORT,
    Form,
    fal_messages,
    form_information,
    ship_call,
    ship_information,
    voyage_information,
)
from adapters.messages import Change, Message
from adapters.xml import Schema, Stencil, one_line
from hub.declarations import RoutingRules

AGENCY = "border"
SCHEMA_FILE = "border/forms.xsd"
CREW_LIST_SCHEMA = Schema(SCHEMA_FILE, "NCA_FAL5")
PASSENGER_LIST_SCHEMA = Schema(SCHEMA_FILE, "NCA_FAL6")
SUPPRESSION_SCHEMA = Schema(SCHEMA_FILE, "NCA_Suppr_Not")
_SubElement = etree.SubElement


def border_messages(change: Change, action: str, rules: RoutingRules) -> list[Message]:
    """The border messages for `change`: FAL 5 and FAL 6 forms, or the `NCA_Suppr_Not` deleting them.

    The routing rules are not needed: every vessel call goes to the border,
    and its lists decide the forms.
    """
    return fal_messages(change, action, AGENCY, FORMS, SUPPRESSION_SCHEMA)


def _opening(body: etree._Element, change: Change, voyage: tuple[str, ...]) -> etree._Element:
    """Ship call, ship and voyage, as both lists begin; returns the FormInformation the list goes in."""
    document = change.document
    vessel = document["vessel"]
    ship_call(body, vessel["imo"], document["port_of_call"], change)
    form = form_information(body, document["direction"] == "arrival", document["voyage"])
    ship_information(form, vessel)
    voyage_information(form, document, voyage)
    return form


def _person(person: dict[str, Any]) -> dict[str, str]:
    """What FAL 5 and FAL 6 say of anyone on board."""
    return {"last_name": one_line(person["family_name"], 70), "first_name": one_line(person["given_names"], 70),
            "nationality": person["nationality"], "date_of_birth": person["date_of_birth"],
            "document_type": IDENTITY_DOCUMENTS[person["document"]["type"]],
            "document_number": one_line(person["document"]["number"], 35)}


def _crew_list(body: etree._Element, change: Change) -> None:
    crew_list = _SubElement(_opening(body, change, ("LastPort", "ETAToPortOfCall", "ETDFromPortOfCall")), "CrewList")
    for member in change.document["crew"]:
        _CREW_MEMBER.stamp({**_person(member), "duty": one_line(member["rank"], 70)}, crew_list)


def _passenger_list(body: etree._Element, change: Change) -> None:
    document = change.document
    passenger_list = _SubElement(_opening(body, change, ("ETAToPortOfCall", "ETDFromPortOfCall")), "PassengerList")
    for passenger in document["passengers"]:
        embarked, leaves = passenger.get("port_of_embarkation"), passenger.get("port_of_disembarkation")
        # In transit: on board before and after this call. Unless both ports say so, the border is told the
        # passenger is not, and so checks them.
        transit = bool(embarked and leaves) and document["port_of_call"] not in (embarked, leaves)
        _PASSENGER.stamp({**_person(passenger), "embarkation": embarked or UNKNOWN_PORT,
                          "disembarkation": leaves or UNKNOWN_PORT, "transit": "Y" if transit else "N"},
                         passenger_list)


def _crew_member(crew_list: etree._Element, values: Mapping[str, str]) -> None:
    _SubElement(crew_list, "CrewMember", {
        "LastName": values["last_name"], "FirstName": values["first_name"], "DutyOfCrew": values["duty"], "Nationality": values["nationality"],
        "DateOfBirth": values["date_of_birth"], "PlaceOfBirth": NOT_DECLARED,
        "NatureOfIdentityDocument": values["document_type"], "NumberOfIdentityDocument": values["document_number"]})


def _passenger(passenger_list: etree._Element, values: Mapping[str, str]) -> None:
    _SubElement(passenger_list, "Passenger", {
        "LastName": values["last_name"], "FirstName": values["first_name"], "Nationality": values["nationality"], "DateOfBirth": values["date_of_birth"],
        "PlaceOfBirth": NOT_DECLARED, "NatureOfIdentityDocument": values["document_type"],
        "NumberOfIdentityDocument": values["document_number"], "PortOfEmbarkation": values["embarkation"],
        "PortOfDisembarkation": values["disembarkation"], "Transit": values["transit"]})


# Crew and passenger lists run to thousands of entries, so each entry is stamped from a stencil.
_PERSON_KEYS = ("last_name", "first_name", "nationality", "date_of_birth", "document_type", "document_number")
_CREW_MEMBER = Stencil(etree.Element("CrewList"), _crew_member, _PERSON_KEYS + ("duty",))
_PASSENGER = Stencil(etree.Element("PassengerList"), _passenger,
                     _PERSON_KEYS + ("embarkation", "disembarkation", "transit"))

FORMS = (
    Form("fal5", CREW_LIST_SCHEMA, lambda _document: True, _crew_list, "crew"),
    Form("fal6", PASSENGER_LIST_SCHEMA, lambda document: bool(document.get("passengers")), _passenger_list,
         "passengers"),
)
