"""The keys directory: the hub's signing key, and each agency's registered certificates.

Layout, under the keys directory (`TRADEHUB_KEYS_DIR`, default `<data dir>/keys`; docs/signing.md):

    hub/key.pem, hub/certificate.pem        the hub's key (0600) and its self-signed certificate
    agencies/<agency>/<sha256>.pem          each agency's current certificates: several during a rotation
    retired/<agency>/<sha256>.pem           certificates retired, kept to read old messages by
    simulated/<agency>/key.pem, ...         the simulated agencies' own keys (the embedded default only)

Directories are 0700, private keys 0600 from the moment they exist (os.open with the mode, then linked
into place, so a key is never visible half-written nor readable by others). Generation is idempotent
and safe when processes race at first start: the first key linked wins, the others load it.

A running consumer sees a certificate registered or retired without restart: `Registry.keys_for`
compares one `stat` of `agencies/` (whose time every change touches) with what it last loaded.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hub.declarations.licence import ISSUERS

from .signing import Signer, TrustedKey, fingerprint

log = logging.getLogger("tradehub.keys")

MIN_RSA_BITS = 2048
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
VALIDITY = datetime.timedelta(days=730)  # of the certificates generated for the embedded default


class CertificateRefused(ValueError):
    """A certificate, fingerprint or agency the registry refuses, with the reason in words."""


@dataclass(frozen=True)
class Entry:
    """One certificate in the registry, as `tradehub keys list` shows it."""

    agency: str
    fingerprint: str
    subject: str
    not_after: datetime.datetime
    status: str  # current, retired or expired


def keys_directory(data_dir: Path, override: str = "") -> Path:
    return Path(override) if override else data_dir / "keys"


def _private_dir(path: Path) -> Path:
    """`path` and any parent missing, each 0700 (mkdir's mode is masked by the umask, so chmod after)."""
    if not path.is_dir():
        if not path.parent.is_dir():
            _private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    return path


def create_once(path: Path, data: bytes, mode: int) -> bool:
    """Write `path` with `data` unless it exists; whether this call wrote it. Atomic, never half-visible."""
    _private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _certificate(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, common_name: str, now: datetime.datetime
                 ) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tradehub"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))


def ensure_key_pair(directory: Path, common_name: str) -> Signer:
    """The signer whose key and certificate are in `directory`, generated on first use (ECDSA P-256)."""
    key_path, certificate_path = directory / "key.pem", directory / "certificate.pem"
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        create_once(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), 0o600)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not certificate_path.exists():
        certificate = _certificate(key, common_name, datetime.datetime.now(datetime.UTC))
        create_once(certificate_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return Signer(key, x509.load_pem_x509_certificate(certificate_path.read_bytes()))


# Key kinds a signer can be made with in memory (`fresh_signer`): what the profile admits, to measure or test.
KEY_KINDS = ("P-256", "P-384", "RSA-2048", "RSA-3072")


def fresh_signer(common_name: str, kind: str = "P-256") -> Signer:
    """A new key of `kind` and its self-signed certificate, held in memory only: for benches and tests."""
    if kind not in KEY_KINDS:
        raise ValueError(f"key kind {kind!r}: expected one of {', '.join(KEY_KINDS)}")
    if kind.startswith("RSA-"):
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = rsa.generate_private_key(65537, int(kind[4:]))
    else:
        key = ec.generate_private_key(ec.SECP256R1() if kind == "P-256" else ec.SECP384R1())
    return Signer(key, _certificate(key, common_name, datetime.datetime.now(datetime.UTC)))


def hub_signer(keys_dir: Path) -> Signer:
    """The hub's signer, its key generated on first start."""
    return ensure_key_pair(_private_dir(keys_dir) / "hub", "tradehub hub")


def hub_certificate(keys_dir: Path) -> bytes:
    """The hub's certificate (PEM), for agencies to verify the hub's messages by."""
    return hub_signer(keys_dir).certificate.public_bytes(serialization.Encoding.PEM)


def simulated_agency(keys_dir: Path, agency: str, registry: Registry | None = None) -> Signer:
    """A simulated agency's signer, generated on first start, its certificate registered for `agency`."""
    signer = ensure_key_pair(_private_dir(keys_dir) / "simulated" / agency, f"simulated {agency}")
    registry = registry or Registry(keys_dir)
    if signer.fingerprint not in registry.keys_for(agency):
        registry.register(agency, signer.certificate.public_bytes(serialization.Encoding.PEM))
    return signer


def check_certificate(pem: bytes, now: datetime.datetime | None = None) -> x509.Certificate:
    """The one certificate in `pem`, if it is well-formed, valid now and its key strong enough; else
    `CertificateRefused` naming why."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise CertificateRefused(f"not a PEM certificate: {error}") from None
    if len(certificates) != 1:
        raise CertificateRefused(f"the file holds {len(certificates)} certificates; register them one by one")
    (certificate,) = certificates
    now = now or datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc < now:
        raise CertificateRefused(f"the certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if certificate.not_valid_before_utc > now:
        raise CertificateRefused(
            f"the certificate is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    try:
        key = certificate.public_key()
    except ValueError as error:
        raise CertificateRefused(f"the certificate's key cannot be read: {error}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateRefused(f"its RSA key has {key.key_size} bits: too weak, at least {MIN_RSA_BITS}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in CURVES:
            raise CertificateRefused(f"its elliptic curve {key.curve.name} is too weak or not in the profile "
                                     f"(P-256, P-384 or P-521)")
    else:
        raise CertificateRefused(f"its {type(key).__name__.lstrip('_')} key is not in the signing profile "
                                 "(ECDSA P-256/P-384/P-521 or RSA >= 2048 bits)")
    return certificate


class Registry:
    """The agencies' certificates under `keys_dir/agencies`: several current per agency; thread-safe."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self.current = keys_dir / "agencies"
        self.retired = keys_dir / "retired"
        self._lock = threading.Lock()
        self._loaded: dict[str, dict[str, TrustedKey]] = {}
        self._version: tuple[int, int] | None = None

    def keys_for(self, agency: str) -> Mapping[str, TrustedKey]:
        """`agency`'s current certificates by fingerprint: re-read when the registry changed since."""
        try:
            stat = os.stat(self.current)
            version = (stat.st_mtime_ns, stat.st_ino)
        except FileNotFoundError:
            version = (0, 0)
        if version != self._version:
            with self._lock:
                if version != self._version:
                    self._loaded = self._load()
                    self._version = version
        return self._loaded.get(agency, {})

    def _load(self) -> dict[str, dict[str, TrustedKey]]:
        loaded: dict[str, dict[str, TrustedKey]] = {}
        for agency in ISSUERS:  # the agencies, and the licence issuers that are not (commerce, cnca)
            for path in sorted((self.current / agency).glob("*.pem")):
                try:
                    certificate = x509.load_pem_x509_certificate(path.read_bytes())
                    trusted = TrustedKey.of(certificate)
                except (OSError, ValueError) as error:  # `register` writes only good ones: someone copied this in
                    log.error("ignoring %s: not a certificate the registry can use: %s", path, error)
                    continue
                loaded.setdefault(agency, {})[trusted.fingerprint] = trusted
        return loaded

    def register(self, agency: str, pem: bytes) -> Entry:
        """Register a certificate for `agency`, beside those it has; `CertificateRefused` names why not."""
        _known(agency)
        certificate = check_certificate(pem)
        ident = fingerprint(certificate)
        target = _private_dir(self.current / agency) / f"{ident}.pem"
        create_once(target, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
        (self.retired / agency / f"{ident}.pem").unlink(missing_ok=True)  # registered again after retirement
        self._touch()
        return self._entry(agency, certificate, "current")

    def retire(self, agency: str, ident: str) -> Entry:
        """Retire one of `agency`'s certificates (by its fingerprint, or a unique prefix of 8+ hex digits)."""
        _known(agency)
        ident = ident.lower().removeprefix("sha256:").replace(":", "")
        matches = [path for path in (self.current / agency).glob("*.pem") if path.stem.startswith(ident)]
        if len(ident) < 8 or len(matches) != 1:
            reason = "is too short (8 hex digits at least)" if len(ident) < 8 else (
                "matches no current certificate" if not matches else "matches several certificates")
            raise CertificateRefused(f"fingerprint {ident!r} {reason} of {agency}")
        (path,) = matches
        _private_dir(self.retired / agency)
        os.replace(path, self.retired / agency / path.name)
        self._touch()
        certificate = x509.load_pem_x509_certificate((self.retired / agency / path.name).read_bytes())
        return self._entry(agency, certificate, "retired")

    def entries(self, agency: str | None = None) -> list[Entry]:
        """Every certificate, current and retired, of `agency` or of every agency."""
        agencies = [agency] if agency else list(ISSUERS)
        if agency:
            _known(agency)
        rows = []
        for name in agencies:
            for status, root in (("current", self.current), ("retired", self.retired)):
                for path in sorted((root / name).glob("*.pem")):
                    try:
                        certificate = x509.load_pem_x509_certificate(path.read_bytes())
                    except (OSError, ValueError):
                        continue
                    rows.append(self._entry(name, certificate, status))
        return rows

    def _entry(self, agency: str, certificate: x509.Certificate, status: str) -> Entry:
        if status == "current" and certificate.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
            status = "expired"
        return Entry(agency, fingerprint(certificate), certificate.subject.rfc4514_string(),
                     certificate.not_valid_after_utc, status)

    def _touch(self) -> None:
        # Every change moves agencies/'s time forward, so that one stat tells a running consumer to read
        # again: strictly forward, since two changes within the clock's tick would otherwise look like one.
        _private_dir(self.current)
        moment = max(time.time_ns(), os.stat(self.current).st_mtime_ns + 1)
        os.utime(self.current, ns=(moment, moment))


def _known(agency: str) -> None:
    if agency not in ISSUERS:
        raise CertificateRefused(f"no agency {agency!r} nor licence issuer; they are {', '.join(ISSUERS)}")


def register_simulated(keys_dir: Path, agencies: Iterable[str]) -> dict[str, Signer]:
    """The simulated agencies' signers, generated and registered on first start (the embedded default)."""
    registry = Registry(keys_dir)
    return {agency: simulated_agency(keys_dir, agency, registry) for agency in agencies}
