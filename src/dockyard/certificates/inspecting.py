"""Reading PEM certificates and keys: what a certificate names, whether a key is its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dockyard.domain.certificates import (
    CertificateExpired,
    CertificateNotYetValid,
    KeyMismatch,
    NotPEM,
)

PEM = serialization.Encoding.PEM
PrivateKey = serialization.SSHCertPrivateKeyTypes  # any key a certificate can hold


@dataclass(frozen=True)
class Inspected:
    names: list[str]  # the DNS names it serves (subjectAltName, else the common name)
    not_before: datetime
    not_after: datetime
    issuer: str
    chain_pem: str  # normalised: the leaf first, one PEM block per certificate


def new_key_pem() -> str:
    """A fresh private key (ECDSA P-256) for one certificate, PKCS#8 PEM."""
    return key_pem(ec.generate_private_key(ec.SECP256R1()))


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_key(text: str) -> PrivateKey:
    if "-----BEGIN" not in text:
        raise NotPEM("private key")
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        # Never the key's text in the message: it may be a key.
        raise NotPEM("private key") from None
    return key  # type: ignore[return-value]


def load_chain(text: str) -> list[x509.Certificate]:
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise NotPEM("certificate")
    try:
        chain = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError:
        raise NotPEM("certificate") from None
    if not chain:
        raise NotPEM("certificate")
    return chain


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [str(n).lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [
            str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]


def issuer_name(cert: x509.Certificate) -> str:
    common = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else cert.issuer.rfc4514_string()


def inspect(chain_pem: str) -> Inspected:
    chain = load_chain(chain_pem)
    leaf = chain[0]
    return Inspected(
        names=dns_names(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer=issuer_name(leaf),
        chain_pem="".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain
        ),
    )


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_pair(chain_pem: str, private_key_pem: str, now: datetime | None = None) -> Inspected:
    """A certificate and key a user brings: both PEM, the key the leaf's, valid now.

    Each failure raises its own error; none carries the key's text.
    """
    found = inspect(chain_pem)
    key = load_key(private_key_pem)
    leaf = load_chain(chain_pem)[0]
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise KeyMismatch()
    moment = now or datetime.now(UTC)
    if moment >= found.not_after:
        raise CertificateExpired(found.not_after)
    if moment < found.not_before:
        raise CertificateNotYetValid(found.not_before)
    return found
