"""Licences and certificates cited by goods items, as the agencies' messages carry them (docs/messages.md).

A goods item may cite licences (`items[i].licences`: number, issuer, quantity, unit; the stored document always
names the issuer). The mappings are pure, so what the registry says of each cited licence is looked up, and its
signature verified again, by dispatch when it builds the message (followers/dispatch.py, "verified on every
use"); it hands the mappings a plain mapping in `Change.licences`, keyed by (issuer, number):

    {"number", "issuer", "type", "valid_to", "verified": bool, "reason": why not (one of REASONS),
     "detail": the whole reason, "key": the fingerprint of the key that signed it}

Each citation travels with one of three results for the agency that gets the message:

- verified: the issuer's signature verified and the licence was valid when the message was built;
- recognised: verified, and issued by an agency whose results the recipient recognises (the routing rules'
  `[recognition]`, which the recognition view reads too): a certificate issued by inspection reaches customs
  as recognised, to be taken without a check of its own;
- not verified, with the reason: unknown, revoked, suspended, expired, a signature that does not verify.

A citation the mapping was told nothing about (`tradehub render`, which reads no registry) is not verified.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hub.declarations import RoutingRules

from .xml import one_line

VERIFIED, RECOGNISED, NOT_VERIFIED = "verified", "recognised", "not_verified"
# The hub's statement codes (an..17) for each result; "LPCO" is the WCO's name for licences, permits,
# certificates and other documents.
STATEMENT_CODES = {VERIFIED: "LPCO-VERIFIED", RECOGNISED: "LPCO-RECOGNISED", NOT_VERIFIED: "LPCO-NOT-VERIFIED"}
# Why a citation is not verified, as a message says it: a short fixed phrase, since a goods item may cite ten
# licences and a declaration have 999 items, and every byte counts against the broker's limit
# (docs/dispatch.md). The whole reason is in the registry and on the declaration's page.
UNKNOWN, REVOKED, SUSPENDED, EXPIRED, NOT_YET_VALID = "unknown licence", "revoked", "suspended", "expired", \
    "not yet valid"
BAD_SIGNATURE, NO_SEAL, NOT_LOOKED_UP = "signature does not verify", "signature not verifiable here", "not looked up"
REASONS = (UNKNOWN, REVOKED, SUSPENDED, EXPIRED, NOT_YET_VALID, BAD_SIGNATURE, NO_SEAL, NOT_LOOKED_UP)
REASON_LENGTH = max(map(len, REASONS))
# UN/EDIFACT 1001 document name codes. An automatic import licence is an import licence to 1001 (its own name
# travels beside the code); a CCC certificate is a certificate of conformity.
LICENCE_CODES = {
    "import_licence": "911", "export_licence": "811", "automatic_import_licence": "911",
    "health_certificate": "852", "phytosanitary_certificate": "851", "veterinary_certificate": "853",
    "ccc_certificate": "2", "certificate_of_origin": "861",
}
# Document names for the types a code alone does not tell apart (WCO D028, an..35).
LICENCE_NAMES = {"automatic_import_licence": "automatic import licence"}


@dataclass(frozen=True)
class CitedDocument:
    """One citation of a licence by a goods item, as a message carries it."""

    number: str
    issuer: str | None
    quantity: str
    unit: str
    type: str | None  # None when the registry knows no such licence
    valid_to: str | None
    result: str  # VERIFIED, RECOGNISED or NOT_VERIFIED
    statement: str  # what backs the result: the key that verified it, who issued it, or why it is not verified

    @property
    def code(self) -> str | None:
        return LICENCE_CODES.get(self.type) if self.type else None

    @property
    def name(self) -> str | None:
        return LICENCE_NAMES.get(self.type) if self.type else None

    @property
    def statement_code(self) -> str:
        return STATEMENT_CODES[self.result]


def cited_documents(item: Mapping[str, Any], licences: Mapping[tuple[str, str], Mapping[str, Any]],
                    recipient: str, rules: RoutingRules | None,
                    types: frozenset[str] | None = None) -> Iterator[CitedDocument]:
    """The licences `item` cites, in its order, each with its result for `recipient`; only those of `types` when
    given (a citation whose type is unknown is kept: the agency must see what could not be verified)."""
    for citation in item.get("licences") or ():
        number, issuer = citation["number"], citation.get("issuer")
        found = licences.get((issuer, number)) if issuer else None
        if types is not None and found is not None and found.get("type") and found["type"] not in types:
            continue
        result, statement = _verdict(issuer, found, recipient, rules)
        yield CitedDocument(number, issuer, citation["quantity"], citation["unit"],
                            found.get("type") if found else None, found.get("valid_to") if found else None,
                            result, statement)


def _verdict(issuer: str | None, found: Mapping[str, Any] | None, recipient: str,
             rules: RoutingRules | None) -> tuple[str, str]:
    if found is None:
        return NOT_VERIFIED, NOT_LOOKED_UP
    if not found.get("verified"):
        return NOT_VERIFIED, one_line(str(found.get("reason") or UNKNOWN), REASON_LENGTH)
    key = f"key {one_line(str(found.get('key') or 'unnamed'), 70)}"
    if issuer and rules is not None and rules.recognises(recipient, issuer):
        return RECOGNISED, f"issued by {issuer}; {key}"
    return VERIFIED, key
