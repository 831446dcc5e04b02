"""How an agency's answer reads to people: on the officer pages, the trader desk and the release certificate.

Each answer is stored as the agency sent it (its code and text). What the words mean can depend on what was
declared: customs' function code 08 releases goods on a goods declaration, but on a vessel call it clears the
call (adapters/customs/responses.py, `meaning_for`).
"""

from __future__ import annotations

from adapters.customs.responses import OUTCOMES as CUSTOMS_OUTCOMES
from adapters.customs.responses import meaning_for


def answer_words(kind: str, agency: str, code: str, text: str) -> str:
    """The words to show after an answer's code: what the code means for this kind of declaration (customs
    clears a vessel call; it releases no goods there), and never the code said twice (FAL's code "Cleared"
    comes with the meaning "cleared")."""
    parts = [part for part in str(text or "").split("; ") if part]
    if agency == "customs" and parts and code in CUSTOMS_OUTCOMES and parts[0] == CUSTOMS_OUTCOMES[code][1]:
        parts[0] = meaning_for(code, kind)
    if parts and code and parts[0].casefold() == str(code).casefold():
        parts = parts[1:]
    return "; ".join(parts)
