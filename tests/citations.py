"""A goods declaration citing licences, and what dispatch would say of them: for golden files and mapping tests.

The example import (examples/goods-import.json) with its shrimps citing a phytosanitary certificate issued by
inspection and a health certificate issued by customs, and its computers citing an import licence of the commerce
ministry and an automatic import licence revoked since the submission. `VERDICTS` is the plain mapping
followers/dispatch.py hands the mappings (adapters/citations.py), fixed so that golden files never change.
"""

from __future__ import annotations

import json
from typing import Any

from .messaging import EXAMPLES

FINGERPRINTS = {"inspection": "5c" * 32, "customs": "c0" * 32, "commerce": "ab" * 32}

CITED = [
    [{"number": "VN-PHY-2026-0042", "quantity": "12000", "unit": "KGM", "issuer": "inspection"},
     {"number": "CIQ-HC-2026-7", "quantity": "12", "unit": "TNE", "issuer": "customs"}],
    [{"number": "IL-2026-350200-118", "quantity": "400", "unit": "H87", "issuer": "commerce"},
     {"number": "AIL-2026-0009", "quantity": "400", "unit": "H87", "issuer": "commerce"}],
]

VERDICTS: dict[tuple[str, str], dict[str, Any]] = {
    ("inspection", "VN-PHY-2026-0042"): {"type": "phytosanitary_certificate", "valid_to": "2026-06-30",
                                         "verified": True},
    ("customs", "CIQ-HC-2026-7"): {"type": "health_certificate", "valid_to": "2026-04-30", "verified": True},
    ("commerce", "IL-2026-350200-118"): {"type": "import_licence", "valid_to": "2026-12-31", "verified": True},
    ("commerce", "AIL-2026-0009"): {"type": "automatic_import_licence", "valid_to": "2026-09-30", "verified": False,
                                    "reason": "revoked", "detail": "obtained by fraud"},
}
for (issuer, number), verdict in VERDICTS.items():
    verdict.update({"number": number, "issuer": issuer, "key": FINGERPRINTS[issuer]})
    verdict.setdefault("reason", "")
    verdict.setdefault("detail", "")


def import_citing() -> dict[str, Any]:
    document = json.loads((EXAMPLES / "goods-import.json").read_text())
    for item, cited in zip(document["items"], CITED, strict=True):
        item["licences"] = [dict(citation) for citation in cited]
    return document
