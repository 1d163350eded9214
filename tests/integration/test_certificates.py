"""HTTPS certificates against a real ACME CA: Debian's pebble, with pebble-challtestsrv
as its DNS (every name is 127.0.0.1) and real HTTP-01 validation.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dockyard.certificates import authority, inspecting, ordering
from dockyard.domain.certificates import AcmeFailed
from tests.integration.registry import Registry
from tests.integration.servers import Server, free_port
from tests.integration.test_deploys import credentials, deploy


@dataclass
class Pebble:
    directory: str
    management: str
    tls_root: Path  # trusts pebble's own TLS (the directory's)
    http_port: int  # where pebble validates HTTP-01
    process: subprocess.Popen[bytes]
    dns: subprocess.Popen[bytes]
    dns_management: str = ""

    def resolve(self, host: str, address: str) -> None:
        """Have pebble's DNS answer ``address`` for ``host`` (every other name: 127.0.0.1)."""
        answer = httpx.post(
            f"{self.dns_management}/add-a", json={"host": host + ".", "addresses": [address]}
        )
        assert answer.status_code == 200, answer.text

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
        f"http://127.0.0.1:{dns_management}",
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


# --- the keeper's pass on a real store and a real CA, the router's side faked ---


class Edge:
    """What the keeper asks of the router; HTTP-01 answers go to the test's server."""

    def __init__(self, challenges: Challenges) -> None:
        self.challenges = challenges
        self.certs: dict[str, tuple[str, str]] = {}
        self.forced: dict[str, bool] = {}

    def serves_https(self) -> bool:
        return True

    def set_certificate(self, name: str, chain_pem: str, key_pem: str) -> None:
        self.certs[name] = (chain_pem, key_pem)

    def remove_certificate(self, name: str) -> None:
        self.certs.pop(name)

    def set_challenge(self, token: str, key_authorization: str) -> None:
        self.challenges.answers[token] = key_authorization

    def remove_challenge(self, token: str) -> None:
        self.challenges.answers.pop(token)

    def set_force_https(self, app: str, on: bool) -> None:
        self.forced[app] = on

    def set_names(self, app: str, names: list[str]) -> None:
        pass


@pytest.fixture
def platform(tmp_path: Path, pebble_for: Pebble, challenge_server: Challenges) -> Iterator[object]:
    from cryptography.fernet import Fernet

    from dockyard.crypto.keys import FernetCipher
    from dockyard.domain.certificates import HttpsSettings
    from dockyard.services.context import Platform
    from dockyard.services.events import Events
    from dockyard.store.database import sqlite_url
    from dockyard.store.repository import Store

    (tmp_path / "data").mkdir()
    store = Store(sqlite_url(tmp_path / "data"), FernetCipher(Fernet.generate_key()))
    store.migrate()
    made = Platform(
        store=store,
        events=Events(),
        public_url="http://127.0.0.1:1",
        router_=Edge(challenge_server),  # type: ignore[arg-type]
        installation="test",
        https=HttpsSettings(
            acme_directory=pebble_for.directory,
            acme_ca_root=str(pebble_for.tls_root),
            order_timeout=20,
        ),
    )
    yield made
    store.close()


def test_keeper_orders_renews_and_backs_off(platform: object, tmp_path: Path) -> None:
    from datetime import timedelta

    from dockyard.services import certificates, domains
    from dockyard.services.context import Platform

    assert isinstance(platform, Platform)
    store, edge = platform.store, platform.router_
    assert isinstance(edge, Edge)
    user = store.create_user("admin", is_admin=True, token_hash="x")
    app = store.create_app("web", user)
    domains.add(platform, user, "web", ["www.shop.example", "*.wild.example"])
    assert platform.certificates_due.is_set()  # the keeper is woken at once
    done = certificates.renew(platform)
    assert done == [f"www.shop.example: issued until {_until(store, 'www.shop.example')}"]
    assert set(edge.certs) == {"*.dockyard.localhost", "www.shop.example"}
    listed = {c.name: c for c in certificates.list_certs(platform, user, "web")}
    assert listed["web.dockyard.localhost"].issuer == "Dockyard local CA test"
    assert listed["www.shop.example"].status == "issued"
    assert listed["www.shop.example"].issuer.startswith("Pebble Intermediate CA")
    assert listed["*.wild.example"].status == "manual"
    assert "HTTP-01 cannot validate a wildcard" in listed["*.wild.example"].last_error
    assert certificates.renew(platform) == []  # nothing due

    # A renewal window wider than the certificate's life: renewed, the new one served.
    first = edge.certs["www.shop.example"][0]
    platform.https = dataclasses.replace(platform.https, renew_before=timedelta(days=3650))
    (line,) = [d for d in certificates.renew(platform) if d.startswith("www.")]
    assert "renewed" in line and edge.certs["www.shop.example"][0] != first

    # The CA goes away: the domain stays, the error is shown, the retry waits.
    platform.https = dataclasses.replace(
        platform.https, acme_directory=f"https://127.0.0.1:{free_port()}/dir"
    )
    domains.add(platform, user, "web", ["api.shop.example"])
    (failed,) = [d for d in certificates.renew(platform) if d.startswith("api.")]
    assert "the CA cannot be reached" in failed
    listed = {c.name: c for c in certificates.list_certs(platform, user, "web")}
    api = listed["api.shop.example"]
    assert api.status == "failed" and "cannot be reached" in api.last_error
    assert api.next_attempt_at is not None
    assert timedelta(seconds=50) < api.next_attempt_at - _now() <= timedelta(minutes=1)
    assert "api.shop.example" in store.domains(app.id)["web"]
    assert not [d for d in certificates.renew(platform) if d.startswith("api.")]  # backing off
    later = _now() + timedelta(minutes=2)
    assert [d for d in certificates.renew(platform, now=later) if d.startswith("api.")]
    api = {c.name: c for c in store.certificates()}["api.shop.example"]
    assert api.failures == 2 and api.next_attempt_at - _now() > timedelta(seconds=100)

    # Removing the domain takes its certificate out of the router.
    domains.remove(platform, user, "web", "www.shop.example")
    assert "www.shop.example" not in edge.certs

    # No private key in clear in the database.
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir())
    assert b"PRIVATE KEY" not in raw


def _now() -> datetime:
    return datetime.now(UTC)


def _until(store: object, name: str) -> str:
    cert = {c.name: c for c in store.certificates()}[name]  # type: ignore[attr-defined]
    return f"{cert.not_after:%Y-%m-%d %H:%M}"


# --- certs:add through the CLI and the API: each bad input its error, nothing stored ---


def test_certs_add_checks_what_it_is_given(server: Server, app: str, tmp_path: Path) -> None:
    from datetime import timedelta

    suffix = os.urandom(3).hex()
    www, shop = f"www.{suffix}.example", f"*.shop-{suffix}.example"
    assert server.cli("domains:add", "--app", app, www, shop).code == 0
    ca = authority.new_authority("user")
    good = authority.issue(*ca, [www])
    other = authority.issue(*ca, [www])
    stranger = authority.issue(*ca, [f"else.{suffix}.example"])
    expired = authority.issue(*ca, [www], lifetime=timedelta(minutes=-1))

    def files(name: str, chain: str, key: str) -> list[str]:
        (tmp_path / f"{name}.crt").write_text(chain)
        (tmp_path / f"{name}.key").write_text(key)
        os.chmod(tmp_path / f"{name}.key", 0o600)
        return ["--cert", str(tmp_path / f"{name}.crt"), "--key", str(tmp_path / f"{name}.key")]

    cases = {
        "mismatch": (
            files("mismatch", good.chain_pem, other.key_pem),
            "the private key does not match the certificate's public key",
        ),
        "uncovered": (
            files("uncovered", stranger.chain_pem, stranger.key_pem),
            f"the certificate does not cover {www}: it names else.{suffix}.example",
        ),
        "expired": (
            files("expired", expired.chain_pem, expired.key_pem),
            "the certificate expired on ",
        ),
        "not-pem": (
            files("not-pem", "hello\n", good.key_pem),
            "the certificate is not PEM (expected -----BEGIN ...----- blocks)",
        ),
        "key-not-pem": (
            files("key-not-pem", good.chain_pem, good.key_pem[:100]),
            "the private key is not PEM",
        ),
    }
    for label, (args, error) in cases.items():
        given = server.cli("certs:add", "--app", app, *args, "--name", www)
        assert given.code != 0, label
        assert error in given.err, (label, given.text)
        assert "PRIVATE KEY" not in given.text and good.key_pem[40:80] not in given.text
    shown = server.cli("certs", "--app", app, "-o", "json")
    assert shown.code == 0, shown.text
    assert all(c["source"] != "user" for c in json.loads(shown.out)), shown.out

    added = server.cli("certs:add", "--app", app, *files("good", good.chain_pem, good.key_pem))
    assert added.code == 0, added.text
    assert added.out.strip() == f"Installed the certificate for {www} on {app}"
    shown = server.cli("certs", "--app", app, "-o", "json")
    by_name = {c["name"]: c for c in json.loads(shown.out)}
    assert by_name[www]["source"] == "user" and by_name[www]["issuer"] == "Dockyard local CA user"
    assert by_name[www]["status"] == "issued"
    table = server.cli("certs", "--app", app)
    assert table.code == 0 and www in table.out and "Dockyard local CA user" in table.out

    # Through the API: the same check, the answer never holds the key.
    with server.http() as http:
        answer = http.post(
            f"/apps/{app}/certs",
            json={"certificate": good.chain_pem, "private_key": other.key_pem},
        )
        assert answer.status_code == 422, answer.text
        assert "does not match" in answer.text and "PRIVATE KEY" not in answer.text
        listed = http.get(f"/apps/{app}/certs")
        assert listed.status_code == 200 and "PRIVATE KEY" not in listed.text

    assert good.key_pem.encode() not in server.database_bytes()
    assert b"PRIVATE KEY" not in server.database_bytes()
    assert good.key_pem[40:80] not in server.log()


# --- HTTPS through the HAProxy router: real HTTP-01 against pebble, curl over TLS ---


def https_options(pebble: Pebble, https_port: int, **env: str) -> dict[str, object]:
    return {
        "router_port": pebble.http_port,  # where pebble validates HTTP-01
        "extra_args": [
            "--router-https-listen", f"127.0.0.1:{https_port}",
            "--acme-ca", pebble.directory,
            "--acme-ca-root", str(pebble.tls_root),
            "--acme-email", "ops@example.com",
        ],
        "env": {"DOCKYARD_CERT_SECONDS": "1", **env},
    }  # fmt: skip


@pytest.fixture
def router_pebble(tmp_path: Path) -> Iterator[Pebble]:
    found = start_pebble(tmp_path / "pebble", free_port())
    yield found
    stop_pebble(found)


def certs_of(server: Server, app: str) -> dict[str, dict]:
    shown = server.cli("certs", "--app", app, "-o", "json")
    assert shown.code == 0, shown.text
    assert "PRIVATE KEY" not in shown.text
    return {c["name"]: c for c in json.loads(shown.out)}


def wait_for_status(server: Server, app: str, name: str, status: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        found = certs_of(server, app).get(name, {})
        if found.get("status") == status:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {found} in {server.log()[-3000:]}")
        time.sleep(0.3)


def curl(url: str, host: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--resolve", f"{host}:{port}:127.0.0.1", *args, url],
        capture_output=True,
        text=True,
        check=False,
    )


def served_chain(host: str, port: int) -> list[bytes]:
    """The certificates the router sends for ``host`` (SNI), unverified, DER."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        leaf = tls.getpeercert(binary_form=True)
        assert leaf is not None
        return [leaf]


def worker_pid(server: Server) -> str:
    with socket.socket(socket.AF_UNIX) as control:
        control.connect(str(server.data_dir / "router" / "haproxy.sock"))
        control.sendall(b"show info\n")
        text = b""
        while chunk := control.recv(65536):
            text += chunk
    return next(
        line.split(":", 1)[1].strip()
        for line in text.decode().splitlines()
        if line.startswith("Pid:")
    )


@pytest.fixture
def https_app(
    fresh_server: Callable[..., Server], registry: Registry, router_pebble: Pebble
) -> tuple[Server, str, int]:
    https_port = free_port()
    server = fresh_server(
        **https_options(router_pebble, https_port, DOCKYARD_CERT_RENEW_BEFORE_SECONDS="")
    )
    app = "tls-" + os.urandom(4).hex()
    assert server.cli("apps:create", app).code == 0
    done = deploy(server, app, registry.image("web:v1"), *credentials(registry))
    assert done.code == 0, done.text
    return server, app, https_port


def test_https_with_acme_certificates(
    https_app: tuple[Server, str, int], router_pebble: Pebble, tmp_path: Path
) -> None:
    server, app, port = https_app
    suffix = os.urandom(3).hex()
    www = f"www.{suffix}.example"
    refused = f"refused.{suffix}.example"
    router_pebble.resolve(refused, "127.0.0.2")  # the CA cannot reach the router for it
    pid = worker_pid(server)

    assert server.cli("domains:add", "--app", app, www, refused).code == 0
    issued = wait_for_status(server, app, www, "issued")
    assert issued["source"] == "acme" and issued["issuer"].startswith("Pebble Intermediate CA")
    root = tmp_path / "pebble-root.pem"
    root.write_text(router_pebble.issuing_root())
    got = curl(f"https://{www}:{port}/", www, port, "--cacert", str(root))
    assert got.returncode == 0 and got.stdout.strip() == "hello-v1", got.stderr

    # The default name: the local CA's *.<domain> (not trusted here: -k).
    default = f"{app}.dockyard.localhost"
    listed = certs_of(server, app)
    assert listed[default]["source"] == "local"
    assert listed[default]["issuer"].startswith("Dockyard local CA")
    insecure = curl(
        f"https://{default}:{port}/", default, port, "-k", "-w", " %{ssl_verify_result}"
    )
    assert insecure.stdout.startswith("hello-v1"), insecure.stderr

    # The CA refuses the refused name's order: kept, shown, retried later, HTTP still works.
    failed = wait_for_status(server, app, refused, "failed")
    assert "validation failed" in failed["last_error"] or "refused" in failed["last_error"]
    assert failed["next_attempt_at"] is not None
    plain = httpx.get(
        f"http://127.0.0.1:{server.router_port}/", headers={"Host": refused}, timeout=10
    )
    assert plain.status_code == 200 and plain.text.strip() == "hello-v1"
    assert refused in json.loads(server.cli("domains", "--app", app, "-o", "json").out)["hosts"]

    # Force HTTPS: a 308 to the same path on the HTTPS port; off again, plain HTTP serves.
    assert server.cli("apps:update", "--app", app, "--force-https", "on").code == 0
    redirected = httpx.get(
        f"http://127.0.0.1:{server.router_port}/a/b?c=1", headers={"Host": www}, timeout=10
    )
    assert redirected.status_code == 308
    assert redirected.headers["location"] == f"https://{www}:{port}/a/b?c=1"
    followed = curl(f"http://{www}:{server.router_port}/", www, server.router_port, "-L",
                    "--cacert", str(root), "--resolve", f"{www}:{port}:127.0.0.1")  # fmt: skip
    assert followed.stdout.strip() == "hello-v1", followed.stderr
    assert server.cli("apps:update", "--app", app, "--force-https", "off").code == 0
    plain = httpx.get(f"http://127.0.0.1:{server.router_port}/", headers={"Host": www})
    assert plain.status_code == 200

    # Removing the domain takes its certificate away: the default one is sent instead.
    assert server.cli("domains:remove", "--app", app, www).code == 0
    gone = curl(f"https://{www}:{port}/", www, port, "--cacert", str(root))
    assert gone.returncode != 0
    assert worker_pid(server) == pid  # no reload through all of it

    # No private key in clear but where HAProxy reads it, mode 0600.
    assert "PRIVATE KEY" not in server.log()
    assert b"PRIVATE KEY" not in server.database_bytes()
    for path in (server.data_dir / "router" / "certs").iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_the_default_name_from_the_acme_ca_with_acme_default_domain(
    fresh_server: Callable[..., Server], registry: Registry, router_pebble: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    options = https_options(router_pebble, port)
    options["extra_args"] = [*options["extra_args"], "--acme-default-domain"]  # type: ignore[misc]
    server = fresh_server(**options)
    app = "dflt-" + os.urandom(4).hex()
    assert server.cli("apps:create", app).code == 0
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    default = f"{app}.dockyard.localhost"
    # Listed at first as the local CA's (*.dockyard.localhost), until the
    # keeper's next pass wants and gets one from the ACME CA.
    deadline = time.monotonic() + 60
    while (issued := certs_of(server, app).get(default, {})).get("source") != "acme" or (
        issued.get("status") != "issued"
    ):
        assert time.monotonic() < deadline, f"{issued} in {server.log()[-3000:]}"
        time.sleep(0.3)
    assert issued["issuer"].startswith("Pebble Intermediate CA")
    root = tmp_path / "pebble-root.pem"
    root.write_text(router_pebble.issuing_root())
    got = curl(f"https://{default}:{port}/", default, port, "--cacert", str(root))
    assert got.returncode == 0 and got.stdout.strip() == "hello-v1", got.stderr


def test_renewal_is_served_without_a_reload_or_a_failed_request(
    fresh_server: Callable[..., Server], registry: Registry, router_pebble: Pebble
) -> None:
    port = free_port()
    # A renewal window wider than the certificates' lives: every pass renews.
    server = fresh_server(
        **https_options(router_pebble, port, DOCKYARD_CERT_RENEW_BEFORE_SECONDS=str(10**9))
    )
    app = "renew-" + os.urandom(4).hex()
    assert server.cli("apps:create", app).code == 0
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    name = f"www.{os.urandom(3).hex()}.example"
    assert server.cli("domains:add", "--app", app, name).code == 0
    wait_for_status(server, app, name, "issued")
    pid = worker_pid(server)
    context = ssl.create_default_context(cadata=router_pebble.issuing_root())
    seen: set[bytes] = set()
    requests = failures = 0
    wrong: list[str] = []
    # To 127.0.0.1, with the name in the TLS handshake (and checked there) and in Host.
    url, host, sni = f"https://127.0.0.1:{port}/", {"Host": name}, {"sni_hostname": name}
    # (A client given a transport takes its TLS settings from the transport.)
    with httpx.Client(
        timeout=10, transport=httpx.HTTPTransport(verify=context, retries=0)
    ) as keep_alive:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(seen) < 3:
            for client in (keep_alive, None):
                try:
                    if client is None:  # a new connection: sees the newest certificate
                        with httpx.Client(verify=context, timeout=10) as fresh:
                            answer = fresh.get(url, headers=host, extensions=sni)
                    else:
                        answer = client.get(url, headers=host, extensions=sni)
                    requests += 1
                    if answer.status_code != 200 or answer.text.strip() != "hello-v1":
                        failures += 1
                        wrong.append(f"{answer.status_code} {answer.text[:100]}")
                except httpx.HTTPError as exc:
                    failures += 1
                    wrong.append(repr(exc))
            seen.add(served_chain(name, port)[0])
            time.sleep(0.05)
    assert failures == 0, (failures, requests, wrong[:3])
    assert len(seen) >= 2, "no renewed certificate was served"
    assert worker_pid(server) == pid  # set ssl cert, no reload


def test_an_unreachable_ca_keeps_the_domain_and_its_http_route(
    fresh_server: Callable[..., Server], registry: Registry, router_pebble: Pebble, tmp_path: Path
) -> None:
    port = free_port()
    options = https_options(router_pebble, port)
    args = list(options["extra_args"])  # type: ignore[call-overload]
    args[args.index("--acme-ca") + 1] = f"https://127.0.0.1:{free_port()}/dir"  # nothing there
    server = fresh_server(**{**options, "extra_args": args})
    app = "down-" + os.urandom(4).hex()
    assert server.cli("apps:create", app).code == 0
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    name = f"www.{os.urandom(3).hex()}.example"
    assert server.cli("domains:add", "--app", app, name).code == 0
    failed = wait_for_status(server, app, name, "failed")
    assert "the CA cannot be reached" in failed["last_error"], failed
    assert failed["next_attempt_at"] is not None  # retried later, not every pass
    table = server.cli("certs", "--app", app)
    assert table.code == 0 and "the CA cannot be reached" in table.out
    plain = httpx.get(f"http://127.0.0.1:{server.router_port}/", headers={"Host": name})
    assert plain.status_code == 200 and plain.text.strip() == "hello-v1"

    # HAProxy killed: restarted with every certificate from its files.
    from dockyard.router.haproxy import haproxy_daemon
    from dockyard.router.supervision import recorded

    pid = recorded(haproxy_daemon(server.data_dir))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    default = f"{app}.dockyard.localhost"
    deadline = time.monotonic() + 20
    while (got := curl(f"https://{default}:{port}/", default, port, "-k")).returncode != 0:
        assert time.monotonic() < deadline, got.stderr
        time.sleep(0.2)
    assert got.stdout.strip() == "hello-v1"
    assert "PRIVATE KEY" not in server.log()


def test_force_https_needs_an_https_listener(server: Server, app: str) -> None:
    refused = server.cli("apps:update", "--app", app, "--force-https", "on")
    assert refused.code != 0
    assert "this server serves no HTTPS: start it with --router-https-listen" in refused.err
    assert server.cli("apps:update", "--app", app, "--force-https", "off").code == 0
