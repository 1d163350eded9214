"""TLS certificates of the names apps answer on: where each comes from, when it is renewed.

A certificate is kept per name: an app's custom domain (from the ACME CA, or
one the user brings), and the platform's default names (``*.<domain>``,
from the server's local CA unless the default domain also uses ACME). A name
whose ACME order fails keeps its domain and its HTTP route; the order is
tried again later, each failure waiting longer (``next_attempt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from dockyard.domain.errors import DockyardError, InvalidInput, NotFound

RENEW_BEFORE = timedelta(days=30)
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)

# Where a certificate came from.
ACME = "acme"
USER = "user"
LOCAL = "local"
SOURCES = (ACME, USER, LOCAL)

# Its status: "pending" (no certificate yet, an order is due), "issued",
# "failed" (the last order failed: retried at next_attempt_at; a certificate
# issued before, if any, is still served), "manual" (a wildcard: HTTP-01
# cannot prove it, the user brings one with certs:add).
PENDING = "pending"
ISSUED = "issued"
FAILED = "failed"
MANUAL = "manual"

WILDCARD_NEEDS_USER = (
    "HTTP-01 cannot validate a wildcard name: bring its certificate with "
    "dockyard certs:add --app APP --cert FILE --key FILE"
)


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class HttpsSettings:
    """How a server that serves HTTPS gets its certificates (``dockyard server --acme-*``)."""

    acme_directory: str = LETS_ENCRYPT
    acme_email: str | None = None
    acme_ca_root: str | None = None  # a PEM file: trusted for the CA's own TLS
    # The default names (<app>.<domain>) from ACME too, not from the local CA.
    acme_default_domain: bool = False
    renew_before: timedelta = RENEW_BEFORE
    order_timeout: float = 90.0


@runtime_checkable
class TlsEdge(Protocol):
    """What a router that terminates TLS offers: certificates, HTTP-01 answers and
    redirects, each changed while it serves."""

    def serves_https(self) -> bool: ...

    def set_certificate(self, name: str, chain_pem: str, key_pem: str) -> None:
        """Serve this certificate for ``name`` (replacing the one it had)."""
        ...

    def remove_certificate(self, name: str) -> None: ...

    def set_challenge(self, token: str, key_authorization: str) -> None:
        """Answer ``/.well-known/acme-challenge/<token>`` on every name, over HTTP."""
        ...

    def remove_challenge(self, token: str) -> None: ...

    def set_force_https(self, app: str, on: bool) -> None:
        """Redirect the app's plain HTTP requests to HTTPS (308), or stop."""
        ...


@dataclass(frozen=True)
class Certificate:
    """What is known of one name's certificate; the key never leaves the store in clear."""

    name: str
    app_id: int | None  # None: a platform name (the default domain)
    source: str
    status: str
    issuer: str = ""
    not_after: datetime | None = None
    last_error: str = ""
    next_attempt_at: datetime | None = None
    failures: int = 0
    has_chain: bool = False


@dataclass(frozen=True)
class Issued:
    """A certificate and its key as they go into the store and the router."""

    name: str
    chain_pem: str
    key_pem: str
    not_after: datetime
    issuer: str


class CertificateRejected(InvalidInput):
    """A certificate a user brought that cannot serve the name; nothing was stored."""


class NotPEM(CertificateRejected):
    def __init__(self, what: str) -> None:
        super().__init__(f"the {what} is not PEM (expected -----BEGIN ...----- blocks)")


class KeyMismatch(CertificateRejected):
    def __init__(self) -> None:
        super().__init__("the private key does not match the certificate's public key")


class NameNotCovered(CertificateRejected):
    def __init__(self, name: str, covered: list[str]) -> None:
        names = ", ".join(covered) or "no DNS name"
        super().__init__(f"the certificate does not cover {name}: it names {names}")


class CertificateExpired(CertificateRejected):
    def __init__(self, not_after: datetime) -> None:
        super().__init__(f"the certificate expired on {not_after:%Y-%m-%d %H:%M:%S} UTC")


class CertificateNotYetValid(CertificateRejected):
    def __init__(self, not_before: datetime) -> None:
        super().__init__(f"the certificate is not valid before {not_before:%Y-%m-%d %H:%M:%S} UTC")


class NoDomainForCertificate(NotFound):
    def __init__(self, app: str, names: list[str]) -> None:
        listed = ", ".join(names) or "none"
        super().__init__(
            f"the certificate covers no domain of app {app!r} (its domains: {listed}); "
            "add the domain first with dockyard domains:add"
        )


class AcmeFailed(DockyardError):
    """An ACME order that did not give a certificate: the CA's own words, no secret."""


class HttpsNotServed(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "this server serves no HTTPS: start it with --router-https-listen HOST:PORT"
        )


def covers(pattern: str, name: str) -> bool:
    """Whether a certificate name (``*.shop.example`` too) covers ``name``, as TLS clients
    match them: a wildcard stands for exactly one whole first label."""
    pattern, name = pattern.lower().removesuffix("."), name.lower().removesuffix(".")
    if pattern == name:
        return True
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and head != "*" and rest == pattern[2:]
    return False


def uncovered(names: list[str], name: str) -> bool:
    return not any(covers(pattern, name) for pattern in names)


def due_for_renewal(not_after: datetime, now: datetime, before: timedelta = RENEW_BEFORE) -> bool:
    return now >= not_after - before


def retry_delay(failures: int) -> timedelta:
    """How long to wait after the ``failures``-th failure in a row: 1 min, 2, 4, ... 6 h."""
    delay: timedelta = FIRST_RETRY * int(2 ** max(0, min(failures - 1, 20)))
    return min(delay, LONGEST_RETRY)


def needs_order(cert: Certificate, now: datetime, before: timedelta = RENEW_BEFORE) -> bool:
    """Whether an ACME certificate should be ordered now: none yet, or due, and not waiting
    out a back-off."""
    if cert.source != ACME or cert.status == MANUAL:
        return False
    if cert.next_attempt_at is not None and now < cert.next_attempt_at:
        return False
    if cert.status in (PENDING, FAILED) and not cert.has_chain:
        return True
    return cert.not_after is None or due_for_renewal(cert.not_after, now, before)
