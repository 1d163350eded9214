"""HTTPS certificates against a real ACME CA: Debian's pebble, with pebble-challtestsrv
as its DNS (every name is 127.0.0.1) and real HTTP-01 validation.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dockyard.certificates import authority, inspecting, ordering
from dockyard.domain.certificates import AcmeFailed
from tests.integration.servers import free_port


@dataclass
class Pebble:
    directory: str
    management: str
    tls_root: Path  # trusts pebble's own TLS (the directory's)
    http_port: int  # where pebble validates HTTP-01
    process: subprocess.Popen[bytes]
    dns: subprocess.Popen[bytes]

    def issuing_root(self) -> str:
        """The root pebble signs certificates with (new at each start)."""
        return httpx.get(f"{self.management}/roots/0", verify=trusting(self.tls_root)).text


def trusting(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root))


def _wait_for(url: str, root: Path, what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url, verify=trusting(root), timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


def start_pebble(directory: Path, http_port: int) -> Pebble:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = authority.new_authority("pebble-test")
    # pebble is reached at 127.0.0.1: its certificate names the address.
    tls = _ip_certificate(ca_cert, ca_key)
    (directory / "root.pem").write_text(ca_cert)
    (directory / "cert.pem").write_text(tls.chain_pem)
    (directory / "key.pem").write_text(tls.key_pem)
    os.chmod(directory / "key.pem", 0o600)
    dns_port, dns_management, listen, management = (free_port() for _ in range(4))
    dns_command = [
        "pebble-challtestsrv",
        "-defaultIPv4", "127.0.0.1",
        "-defaultIPv6", "",
        "-dns01", f"127.0.0.1:{dns_port}",
        "-http01", "",
        "-https01", "",
        "-tlsalpn01", "",
        "-management", f"127.0.0.1:{dns_management}",
    ]  # fmt: skip
    with (directory / "challtestsrv.log").open("wb") as dns_log:
        dns = subprocess.Popen(dns_command, stdout=dns_log, stderr=subprocess.STDOUT)
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(directory / "cert.pem"),
            "privateKey": str(directory / "key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
    }
    command = [
        "pebble",
        "-config", str(directory / "pebble.json"),
        "-dnsserver", f"127.0.0.1:{dns_port}",
    ]  # fmt: skip
    with (directory / "pebble.log").open("wb") as pebble_log:
        process = subprocess.Popen(command, env=env, stdout=pebble_log, stderr=subprocess.STDOUT)
    found = Pebble(
        f"https://127.0.0.1:{listen}/dir",
        f"https://127.0.0.1:{management}",
        directory / "root.pem",
        http_port,
        process,
        dns,
    )
    try:
        _wait_for(found.directory, found.tls_root, "pebble")
    except BaseException:
        stop_pebble(found)
        raise
    return found


def _ip_certificate(ca_cert: str, ca_key: str) -> object:
    """A TLS certificate for 127.0.0.1 (an IP SAN), signed by the test's CA."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = inspecting.load_chain(ca_cert)[0]
    signer = inspecting.load_key(ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    from types import SimpleNamespace

    from cryptography.hazmat.primitives import serialization

    return SimpleNamespace(
        chain_pem=cert.public_bytes(serialization.Encoding.PEM).decode() + ca_cert,
        key_pem=inspecting.key_pem(key),
    )


def stop_pebble(pebble: Pebble) -> None:
    for process in (pebble.process, pebble.dns):
        process.terminate()
        process.wait(timeout=10)


class Challenges(http.server.ThreadingHTTPServer):
    """Answers HTTP-01 for the ordering test that runs without a router."""

    def __init__(self, port: int) -> None:
        self.answers: dict[str, str] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path.rpartition("/")[2]
                body = outer.answers.get(token)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)


@pytest.fixture
def challenge_server() -> Iterator[Challenges]:
    served = Challenges(free_port())
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


@pytest.fixture
def pebble_for(tmp_path: Path, challenge_server: Challenges) -> Iterator[Pebble]:
    found = start_pebble(tmp_path / "pebble", challenge_server.server_address[1])
    yield found
    stop_pebble(found)


def test_acme_order_from_pebble_with_http01(
    pebble_for: Pebble, challenge_server: Challenges
) -> None:
    """The ACME client alone: an account, an order, the challenge published and withdrawn."""
    seen: list[str] = []

    def publish(token: str, validation: str) -> None:
        seen.append(token)
        challenge_server.answers[token] = validation

    def withdraw(token: str) -> None:
        challenge_server.answers.pop(token)

    ca = ordering.Authority(
        pebble_for.directory, email="ops@example.com", ca_root=str(pebble_for.tls_root)
    )
    account = ordering.new_account_key()
    issued = ordering.order(ca, account, "www.shop.example", publish, withdraw)
    assert seen and challenge_server.answers == {}
    found = inspecting.check_pair(issued.chain_pem, issued.key_pem)
    assert found.names == ["www.shop.example"]
    assert issued.issuer.startswith("Pebble Intermediate CA")
    # The same account key again: the account is found, not made twice.
    again = ordering.order(ca, account, "api.shop.example", publish, withdraw)
    assert inspecting.inspect(again.chain_pem).names == ["api.shop.example"]


def test_acme_order_errors_say_why(pebble_for: Pebble, challenge_server: Challenges) -> None:
    account = ordering.new_account_key()
    nothing = lambda *args: None  # noqa: E731
    untrusted = ordering.Authority(pebble_for.directory)
    with pytest.raises(AcmeFailed, match="TLS certificate is not trusted"):
        ordering.order(untrusted, account, "a.example", nothing, nothing)
    gone = ordering.Authority(f"https://127.0.0.1:{free_port()}/dir")
    with pytest.raises(AcmeFailed, match="cannot be reached"):
        ordering.order(gone, account, "a.example", nothing, nothing)
    ca = ordering.Authority(pebble_for.directory, ca_root=str(pebble_for.tls_root), timeout=20)
    # Nothing answers the challenge: the CA's reason comes back.
    with pytest.raises(AcmeFailed, match="validation failed") as failed:
        ordering.order(ca, account, "b.example", nothing, nothing)
    assert "PRIVATE KEY" not in str(failed.value)
