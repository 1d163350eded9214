"""The checks of a certificate a user brings, and the local CA, on certificates made here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.certificates import authority, inspecting
from dockyard.domain.certificates import (
    CertificateExpired,
    KeyMismatch,
    NotPEM,
)


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    return authority.new_authority("test")


def test_local_ca_issues_the_default_wildcard(ca: tuple[str, str]) -> None:
    issued = authority.issue(*ca, ["*.dockyard.localhost"])
    found = inspecting.check_pair(issued.chain_pem, issued.key_pem)
    assert found.names == ["*.dockyard.localhost"]
    assert found.issuer == "Dockyard local CA test"
    assert issued.chain_pem.count("BEGIN CERTIFICATE") == 2


def test_a_key_that_is_not_the_certificates(ca: tuple[str, str]) -> None:
    one = authority.issue(*ca, ["a.example"])
    other = authority.issue(*ca, ["a.example"])
    with pytest.raises(KeyMismatch, match="does not match the certificate's public key"):
        inspecting.check_pair(one.chain_pem, other.key_pem)


def test_expired(ca: tuple[str, str]) -> None:
    issued = authority.issue(*ca, ["a.example"], lifetime=timedelta(days=1))
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(CertificateExpired, match="the certificate expired on 20"):
        inspecting.check_pair(issued.chain_pem, issued.key_pem, now=later)


def test_not_pem(ca: tuple[str, str]) -> None:
    issued = authority.issue(*ca, ["a.example"])
    with pytest.raises(NotPEM, match="the certificate is not PEM"):
        inspecting.check_pair("hello", issued.key_pem)
    garbled = issued.chain_pem.replace("M", "A", 5)
    with pytest.raises(NotPEM, match="the certificate is not PEM"):
        inspecting.check_pair(garbled[: len(garbled) // 3] + "\n-----END CERTIFICATE-----\n", "")
    with pytest.raises(NotPEM, match="the private key is not PEM") as bad:
        broken = issued.key_pem[:60] + issued.key_pem[80:]
        inspecting.check_pair(issued.chain_pem, broken)
    assert issued.key_pem[30:60] not in str(bad.value)
