"""`tradehub keys`: the hub's signing certificates, and each agency's or licence issuer's registered certificates
(docs/signing.md)."""

from __future__ import annotations

import argparse
import sys

from adapters.keyring import CertificateRefused, Registry, hub_certificate
from adapters.licences import JwsSeal
from tradehub.bootstrap import Settings


def register(args: argparse.Namespace, settings: Settings) -> int:
    """Register a certificate for an agency, beside those it has: the agency's next key, during a rotation."""
    try:
        pem = args.certificate.read_bytes()
    except OSError as error:
        return _fail(f"{args.certificate}: cannot read: {error.strerror}")
    try:
        entry = Registry(settings.keys_dir).register(args.agency, pem)
    except CertificateRefused as error:
        return _fail(f"{args.certificate}: refused: {error}")
    print(f"registered for {entry.agency}: sha256:{entry.fingerprint} {entry.subject}, "
          f"valid until {entry.not_after:%Y-%m-%d}")
    return 0


def listing(args: argparse.Namespace, settings: Settings) -> int:
    """Every certificate of an agency (or of all), current, expired or retired."""
    try:
        entries = Registry(settings.keys_dir).entries(args.agency)
    except CertificateRefused as error:
        return _fail(str(error))
    for entry in entries:
        print(f"{entry.agency:10} {entry.status:8} sha256:{entry.fingerprint} until {entry.not_after:%Y-%m-%d}  "
              f"{entry.subject}")
    if not entries:
        print("no certificate registered", file=sys.stderr)
    return 0


def retire(args: argparse.Namespace, settings: Settings) -> int:
    """Retire one of an agency's certificates: its messages are refused from then on, without a restart."""
    registry = Registry(settings.keys_dir)
    try:
        entry = registry.retire(args.agency, args.fingerprint)
    except CertificateRefused as error:
        return _fail(str(error))
    print(f"retired for {entry.agency}: sha256:{entry.fingerprint} {entry.subject}")
    if not registry.keys_for(args.agency):
        print(f"warning: {entry.agency} has no current certificate now: its answers are dead-lettered as "
              "bad-signature until one is registered", file=sys.stderr)
    return 0


def certificate(_args: argparse.Namespace, settings: Settings) -> int:
    """The hub's certificate (PEM), for agencies to verify its messages by; the key is made on first use."""
    sys.stdout.write(hub_certificate(settings.keys_dir).decode("ascii"))
    return 0


def issuer_certificate(args: argparse.Namespace, settings: Settings) -> int:
    """The certificate of the key the hub signs an issuer's licences with (made on first use): a licence's JWS
    names it by fingerprint (`kid`), and anyone holding it can verify the licence (docs/signing.md, "Licences")."""
    seal = JwsSeal(settings.keys_dir, Registry(settings.keys_dir))
    sys.stdout.write(seal.issuer_certificate(args.issuer).decode("ascii"))
    return 0


def _fail(message: str) -> int:
    print(f"tradehub: {message}", file=sys.stderr)
    return 2
