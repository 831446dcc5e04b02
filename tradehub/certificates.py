"""Release certificates: what one shows, the code that proves the hub issued it, its QR code and its PDF.

A released declaration has a certificate for whoever may see the declaration (tradehub/visibility.py: the
same rule as its page and `GET /v1/declarations/{id}`). It shows what that caller may see of it, and never the
people on board: a vessel call shows counts. Released is final (the domain model refuses holds, amendments,
withdrawal and other answers once the hub has recorded the release), so a certificate never goes stale.

The verification code is what a bank, a buyer or an officer abroad checks at `GET /verify/{code}`, with no
account. It is an HMAC-SHA256 tag, cut to 128 bits, over a format byte, the declaration's id and the time of
its release, under a key derived from TRADEHUB_SECRET by HKDF with its own label: it proves that this hub
issued it and that none of the bound fields changed, yet no token can be passed off as a code or a code as a
token. A signature with the hub's ECDSA key would let others verify offline, but it is four times as long (a
denser QR code, a code nobody can read out) and the verifier asks the hub anyway, for the current status.
The code is RFC 4648 base32 without padding, 66 characters, one canonical form: reading it recomputes the
whole code and compares it in constant time, so no other spelling (case, padding bits) passes either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fontTools.ttLib import TTFont
from fpdf import FPDF

from adapters.wording import answer_words
from hub.declarations import AGENCIES, Declaration, DeclarationNotFound
from hub.declarations.domainmodel import RELEASED

from . import summaries
from .auth import Caller
from .bootstrap import Hub
from .visibility import Seen, Visibility

FORMAT = 1  # the code's layout: a reader refuses any other
_KEY_LABEL = b"tradehub release certificate codes"
_PAYLOAD = struct.Struct(">B16sq")  # format, declaration id, release time in microseconds since the epoch
_TAG_BYTES = 16
CODE_LENGTH = len(base64.b32encode(bytes(_PAYLOAD.size + _TAG_BYTES)).rstrip(b"="))
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FONTS = Path(__file__).parent / "fonts"  # DejaVu Sans (LICENSE-DejaVu.txt): Latin, Greek, Cyrillic; no CJK
MISSING_GLYPH = "\N{REPLACEMENT CHARACTER}"


class InvalidCode(Exception):
    """Not a code this hub issued: forged, altered, truncated, too long, another hub's, or of no declaration it
    holds. One refusal for all, so a caller learns nothing of which."""


class NotReleased(Exception):
    """The declaration is not released: it has no certificate (yet)."""

    def __init__(self, reference: str, status: str) -> None:
        super().__init__(f"declaration {reference} is {status.replace('_', ' ')}: a certificate is issued once "
                         "it is released")
        self.reference = reference
        self.status = status


# ---- the verification code -----------------------------------------------------------------------

class Codes:
    """Issues and reads verification codes under one hub secret."""

    def __init__(self, secret: str) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                         info=_KEY_LABEL).derive(secret.encode()) if secret else None

    def issue(self, declaration_id: UUID, released_at: datetime) -> str:
        if self._key is None:
            raise RuntimeError("TRADEHUB_SECRET is not set: the hub cannot sign certificates")
        micros = (released_at - _EPOCH) // timedelta(microseconds=1)
        return self._encode(_PAYLOAD.pack(FORMAT, declaration_id.bytes, micros))

    def read(self, code: str) -> tuple[UUID, datetime]:
        """The declaration id and release time a genuine code binds; `InvalidCode` for anything else.

        The length and alphabet are checked before any decoding, so an oversized code costs nothing."""
        if self._key is None or len(code) != CODE_LENGTH or not _ALPHABET.issuperset(code):
            raise InvalidCode
        raw = base64.b32decode(code + "=" * (-len(code) % 8))
        payload = raw[:_PAYLOAD.size]
        if not hmac.compare_digest(self._encode(payload), code):
            raise InvalidCode
        version, ident, micros = _PAYLOAD.unpack(payload)
        if version != FORMAT:  # signed by this hub, but in a layout this version does not read
            raise InvalidCode
        return UUID(bytes=ident), _EPOCH + timedelta(microseconds=micros)

    def _encode(self, payload: bytes) -> str:
        assert self._key is not None
        tag = hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.b32encode(payload + tag).decode("ascii").rstrip("=")


@cache
def codes(secret: str) -> Codes:
    """The hub's codes, derived once per process."""
    return Codes(secret)


def verify_path(code: str) -> str:
    return f"/verify/{code}"


def certificate_path(declaration_id: UUID | str, pdf: bool = False) -> str:
    return f"/declarations/{declaration_id}/certificate{'.pdf' if pdf else ''}"


def released_at(events: Iterable[Mapping[str, Any]]) -> datetime | None:
    """When the hub recorded the release (the `Released` event); None if it has not."""
    times = [event["time"] for event in events if event["type"] == "Released"]
    return datetime.fromisoformat(times[-1]).astimezone(UTC) if times else None


# ---- what a certificate shows --------------------------------------------------------------------

@dataclass(frozen=True)
class AgencyRelease:
    agency: str
    code: str
    text: str
    time: str


@dataclass(frozen=True)
class Certificate:
    declaration_id: str
    reference: str
    kind: str
    declarant: str  # USCC
    declarant_name: str
    released_at: datetime
    summary: tuple[tuple[str, str], ...]  # (label, value): the goods or the vessel call at a glance
    releases: tuple[AgencyRelease, ...]
    code: str
    verify_url: str


def certificate_for(hub: Hub, who: Caller, declaration_id: str, *, request_base: str) -> Certificate:
    """The certificate of a released declaration, as `who` may see it. Its QR code opens the verification page
    under TRADEHUB_PUBLIC_URL, or else under `request_base`, the address the request came to.
    `Hidden` (visibility.py) if the caller may not see the declaration, `NotReleased` if it is not released."""
    seen = Visibility(hub.declarations, hub.views).declaration(who, declaration_id)
    declaration = seen.declaration
    when = released_at(seen.history)
    if declaration.status != RELEASED or when is None:
        raise NotReleased(declaration.reference, declaration.status)
    code = codes(hub.settings.secret).issue(declaration.id, when)
    return Certificate(
        declaration_id=str(declaration.id), reference=declaration.reference, kind=declaration.kind,
        declarant=declaration.declarant, declarant_name=str(seen.document.get("declarant", {}).get("name", "")),
        released_at=when, summary=tuple(summary(seen)), releases=tuple(releases(declaration)), code=code,
        verify_url=(hub.settings.public_url or request_base).rstrip("/") + verify_path(code))


def releases(declaration: Declaration) -> list[AgencyRelease]:
    """Each routed agency's release: its code, its words (as the pages say them: adapters/wording.py), and when
    it gave it."""
    routed = declaration.routed_agencies
    ordered = [name for name in AGENCIES if name in routed] + sorted(set(routed) - set(AGENCIES))
    return [AgencyRelease(name, str(routed[name]["code"]),
                          answer_words(declaration.kind, name, str(routed[name]["code"]), str(routed[name]["text"])),
                          str(routed[name]["updated_at"]))
            for name in ordered]


def summary(seen: Seen) -> list[tuple[str, str]]:
    """The declaration at a glance, as its page's header says it (tradehub/summaries.py), with what a
    certificate adds: for goods the customs office, the consignee and the gross mass; for a call, its flag."""
    document = seen.document
    facts = [(fact.label, fact.value) for fact in summaries.summary(document)]
    if seen.declaration.kind == "goods":
        items = document.get("items") or []
        return [*facts, ("Customs office", str(document.get("customs_office", ""))),
                ("Consignee", _party(document.get("consignee") or {})),
                ("Gross mass", f"{sum(_decimal(item.get('gross_kg')) for item in items):,} kg")]
    vessel = document.get("vessel") or {}
    return [*facts, ("Call sign / flag", f"{vessel.get('call_sign', '')} / {vessel.get('flag', '')}")]


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:  # validated documents hold decimals; a stored oddity counts as nothing
        return Decimal(0)


def _party(party: Mapping[str, Any]) -> str:
    name = str(party.get("name", ""))
    return f"{name} ({party['id']})" if party.get("id") else name


# ---- public verification -------------------------------------------------------------------------

def verification(hub: Hub, code: str) -> dict[str, str]:
    """What anyone may learn from a genuine code: the reference, the current status and the release time.
    `InvalidCode` for a code this hub did not issue, or whose release its log does not hold."""
    declaration_id, when = codes(hub.settings.secret).read(code)
    try:
        declaration, events = hub.declarations.with_history(declaration_id)
    except DeclarationNotFound:
        raise InvalidCode from None
    if released_at(events) != when:  # a code of another store's release, say after a restore
        raise InvalidCode
    return {"reference": declaration.reference, "status": declaration.status,
            "released_at": when.isoformat(timespec="seconds").replace("+00:00", "Z")}


# ---- the QR code ---------------------------------------------------------------------------------

def qr(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def qr_svg(url: str) -> str:
    """The QR code as inline SVG: presentation attributes only, no style, nothing loaded (the pages' CSP)."""
    return qr(url).svg_inline(scale=4, border=4, dark="#000", light="#fff", svgclass="qr", lineclass=None,
                              title=f"QR code: {url}")


# ---- the PDF -------------------------------------------------------------------------------------

@cache
def _covered() -> frozenset[int]:
    """The code points the embedded font draws."""
    font = TTFont(FONTS / "DejaVuSans.ttf", lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def printable(text: str) -> tuple[str, bool]:
    """`text` with each character the PDF's font cannot draw replaced by U+FFFD, and whether any was."""
    covered = _covered()
    shown = "".join(char if ord(char) in covered or char in "\n" else MISSING_GLYPH for char in text)
    return shown, shown != text


def pdf(certificate: Certificate) -> bytes:
    """The certificate as an A4 PDF: DejaVu Sans embedded (subset), the QR code drawn as vector squares."""
    return _Sheet(certificate).render()


class _Sheet(FPDF):
    MARGIN = 18

    def __init__(self, certificate: Certificate) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.certificate = certificate
        self.lost = False  # some character could not be drawn
        self.set_margins(self.MARGIN, self.MARGIN, self.MARGIN)
        self.set_auto_page_break(True, margin=self.MARGIN)
        self.add_font("DejaVu", "", FONTS / "DejaVuSans.ttf")
        self.add_font("DejaVu", "B", FONTS / "DejaVuSans-Bold.ttf")
        self.set_title(f"Release certificate {certificate.reference}")
        self.set_creator("Trade hub")
        self.set_creation_date(certificate.released_at)

    def write_text(self, width: float, height: float, text: str, *, size: float = 10, bold: bool = False,
                   mono: bool = False, new_line: bool = True) -> None:
        shown, lost = printable(text)
        self.lost |= lost
        self.set_font("Courier" if mono else "DejaVu", "B" if bold else "", size)
        self.multi_cell(width, height, shown, align="L", new_x="LMARGIN" if new_line else "RIGHT",
                        new_y="NEXT" if new_line else "TOP")

    def render(self) -> bytes:
        c = self.certificate
        self.add_page()
        self.write_text(0, 6, "TRADE HUB SINGLE WINDOW", size=9, bold=True)
        self.write_text(0, 11, "Release certificate", size=22, bold=True)
        self.write_text(0, 9, c.reference, size=15, bold=True)
        self.write_text(0, 6, f"Released {_utc(c.released_at)} · {c.kind.replace('_', ' ')}", size=10)
        self.ln(3)
        self.rows([("Declarant", f"{c.declarant_name} ({c.declarant})"), *c.summary])
        self.ln(4)
        self.write_text(0, 7, "Releases by agency", size=12, bold=True)
        self.releases(c.releases)
        self.ln(5)
        self.verification()
        self.ln(3)
        self.write_text(0, 4.5, f"Declaration id {c.declaration_id}", size=8)
        if self.lost:
            self.write_text(0, 4.5, "Some characters of this declaration cannot be drawn in this PDF's font and "
                                    f"show as {MISSING_GLYPH}; the HTML certificate shows them all.", size=8)
        return bytes(self.output())

    def rows(self, rows: Sequence[tuple[str, str]]) -> None:
        for label, value in rows:
            self.write_text(42, 6, label, size=9, bold=True, new_line=False)
            self.write_text(0, 6, value, size=10)

    def releases(self, releases: Sequence[AgencyRelease]) -> None:
        widths = (28, 18, 74, 0)
        for cells, bold in ((("Agency", "Code", "Decision", "Released at (UTC)"), True),
                            *(((r.agency, r.code, r.text, _utc(r.time)), False) for r in releases)):
            top = self.get_y()
            for width, text in zip(widths[:-1], cells[:-1], strict=True):
                self.write_text(width, 6, text, size=9, bold=bold, new_line=False)
            self.write_text(0, 6, cells[-1], size=9, bold=bold)
            self.set_y(max(self.get_y(), top + 6))
            self.line(self.MARGIN, self.get_y(), self.w - self.MARGIN, self.get_y())

    def verification(self) -> None:
        c = self.certificate
        side = 42
        if self.get_y() + side > self.h - self.MARGIN:
            self.add_page()
        top = self.get_y()
        self.qr(c.verify_url, self.MARGIN, top, side)
        self.set_xy(self.MARGIN + side + 6, top + 2)
        width = self.w - 2 * self.MARGIN - side - 6
        self.write_text(width, 6, "Verification", size=12, bold=True)
        self.set_x(self.MARGIN + side + 6)
        self.write_text(width, 5, "Scan the code, or open the address below: the hub confirms the reference, "
                                  "status and release time of this certificate.", size=9)
        self.set_x(self.MARGIN + side + 6)
        self.write_text(width, 5, c.code, size=8.5, mono=True)
        self.set_x(self.MARGIN + side + 6)
        self.write_text(width, 5, c.verify_url, size=7.5, mono=True)
        self.set_y(max(self.get_y(), top + side))

    def qr(self, url: str, x: float, y: float, side: float) -> None:
        """The QR code as black squares, merged into runs: sharp at any zoom, no image to embed."""
        matrix = [list(row) for row in qr(url).matrix_iter(border=4)]
        module = side / len(matrix)
        self.set_fill_color(0)
        for row, cells in enumerate(matrix):
            start = None
            for column, dark in enumerate([*cells, 0]):
                if dark and start is None:
                    start = column
                elif not dark and start is not None:
                    self.rect(x + start * module, y + row * module, (column - start) * module, module, style="F")
                    start = None


def filename(certificate: Certificate) -> str:
    """`certificate-<reference>.pdf`, in the characters a Content-Disposition header carries safely."""
    name = "".join(char if char.isascii() and (char.isalnum() or char in "-_.") else "_"
                   for char in certificate.reference)
    return f"certificate-{name}.pdf"


def _utc(value: datetime | str) -> str:
    if not value:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
