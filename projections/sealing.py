"""Sealing: what the hub keeps outside its event log, encrypted with the key that encrypts the events.

With `TRADEHUB_CIPHER_KEY` set, eventsourcing encrypts every event. Copies of
their content that the hub keeps elsewhere (message bodies recorded for
`/messages`, dead letters kept for replay) must not undo that, so they are
sealed with AES-GCM under a key derived from the same secret by HKDF, one key
per purpose: a sealed value of one kind cannot be passed off as another. A
caller may also bind a value to where it is kept (`context`, authenticated
but not stored): a sealed value copied to another row then fails to open
instead of being shown as that row's.

A sealed value is `VERSION + nonce + ciphertext-and-tag`. Without a key the
`Sealer` passes data through unchanged, and opening data that was never
sealed (written before the key was set) gives it back as it is. For a text
column, `seal_text` writes the sealed bytes as `TEXT_MARK` and base64, which
needs no change of column type on either store; it is for values that can
never start with the mark themselves (XML, JSON).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x00TH1"  # never the start of XML or JSON text, so unsealed data is told apart
TEXT_MARK = "sealed:TH1:"  # the same, for sealed values kept as text: XML and JSON start otherwise
_NONCE = 12


class SealError(ValueError):
    """The key is unusable, or a sealed value was tampered with or sealed under another key."""


def _master_key(key: str) -> bytes:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise SealError("TRADEHUB_CIPHER_KEY must be a base64-encoded AES key (16, 24 or 32 bytes)") from None
    if len(raw) not in (16, 24, 32):
        raise SealError(f"TRADEHUB_CIPHER_KEY decodes to {len(raw)} bytes; an AES key has 16, 24 or 32")
    return raw


class Sealer:
    """Seals and opens values of one `purpose` under the hub's cipher key; a pass-through without one."""

    def __init__(self, key: str | None, purpose: str = "records") -> None:
        self.enabled = bool(key)
        self.purpose = purpose
        self._aead = None
        if key:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                           info=b"tradehub sealing: " + purpose.encode()).derive(_master_key(key))
            self._aead = AESGCM(derived)

    def seal(self, data: bytes, context: bytes = b"") -> bytes:
        """`data` sealed, bound to `context` (which `open` must be given again); `data` itself without a key."""
        if self._aead is None:
            return data
        nonce = os.urandom(_NONCE)
        return VERSION + nonce + self._aead.encrypt(nonce, data, VERSION + context)

    def open(self, data: bytes, context: bytes = b"") -> bytes:
        if not data.startswith(VERSION):
            return data  # never sealed: kept before the key was set, or no key
        if self._aead is None:
            raise SealError(f"this {self.purpose} value is sealed, and TRADEHUB_CIPHER_KEY is not set")
        start = len(VERSION)
        nonce, sealed = data[start:start + _NONCE], data[start + _NONCE:]
        try:
            return self._aead.decrypt(nonce, sealed, VERSION + context)
        except Exception:  # cryptography's InvalidTag: another key, another context, or changed bytes
            raise SealError(f"a sealed {self.purpose} value does not open with this TRADEHUB_CIPHER_KEY (another "
                            "key, the value was changed, or it was moved from where it was sealed)") from None

    def seal_text(self, text: str, context: bytes = b"") -> str:
        """`text` sealed and written as text (`TEXT_MARK` and base64); `text` itself without a key."""
        if self._aead is None:
            return text
        return TEXT_MARK + base64.b64encode(self.seal(text.encode("utf-8"), context)).decode("ascii")

    def open_text(self, text: str, context: bytes = b"") -> str:
        if not text.startswith(TEXT_MARK):
            return text  # never sealed
        try:
            sealed = base64.b64decode(text[len(TEXT_MARK):], validate=True)
        except (binascii.Error, ValueError):
            raise SealError(f"a sealed {self.purpose} value is not base64 after its mark (it was changed)") from None
        if not sealed.startswith(VERSION):
            raise SealError(f"a sealed {self.purpose} value has an unknown format")
        return self.open(sealed, context).decode("utf-8")
