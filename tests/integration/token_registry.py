"""A registry with token auth, as Docker Hub, GCR and ACR run theirs.

The CNCF registry (Debian's ``docker-registry``) answers ``401`` with a
``Bearer`` challenge naming a token server; this module's token server, on
loopback, hands out JWTs signed with a key whose self-signed certificate the
registry trusts. It grants access only for an OAuth refresh-token grant with
the one identity token it knows: an engine that sends the token as a
password (a ``GET`` with basic auth) is refused, as a real token server
refuses an identity token used as a password.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.integration.servers import free_port

ISSUER = "dockyard-test-token-issuer"
SERVICE = "dockyard-test-token-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Signer:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def new(cls) -> _Signer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def token(self, access: list[dict[str, object]]) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "dockyard-test",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64(signature)}"


def _access(scopes: list[str]) -> list[dict[str, object]]:
    """What each ``repository:NAME:ACTIONS`` scope asks for, granted whole."""
    granted = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        granted.append({"type": kind, "name": name, "actions": actions.split(",")})
    return granted


@dataclass
class TokenRegistry:
    host: str
    identity_token: str
    grants: list[str] = field(default_factory=list)  # how each token request asked

    def image(self, name: str) -> str:
        return f"{self.host}/{name}"


class _TokenHandler(BaseHTTPRequestHandler):
    signer: ClassVar[_Signer]
    registry: ClassVar[TokenRegistry]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.registry.grants.append("basic" if self.headers.get("Authorization") else "anonymous")
        self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "use a refresh token"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        grant = form.get("grant_type", [""])[0]
        self.registry.grants.append(grant)
        if grant != "refresh_token" or form.get("refresh_token") != [self.registry.identity_token]:
            self._answer(401, {"error": "invalid_grant"})
            return
        token = self.signer.token(_access(form.get("scope", [])))
        self._answer(200, {"access_token": token, "expires_in": 300})


@contextmanager
def token_registry(directory: Path) -> Iterator[TokenRegistry]:
    """A registry on a free loopback port whose token server takes one identity token."""
    signer = _Signer.new()
    bundle = directory / "token-ca.pem"
    bundle.write_bytes(signer.certificate.public_bytes(serialization.Encoding.PEM))
    registry = TokenRegistry(f"127.0.0.1:{free_port()}", uuid.uuid4().hex)
    handler = type("Handler", (_TokenHandler,), {"signer": signer, "registry": registry})
    tokens = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    config = directory / "token-registry.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
                "http": {"addr": registry.host, "secret": uuid.uuid4().hex},
                "auth": {
                    "token": {
                        "realm": f"http://127.0.0.1:{tokens.server_address[1]}/token",
                        "service": SERVICE,
                        "issuer": ISSUER,
                        "rootcertbundle": str(bundle),
                    }
                },
            }
        )
    )
    log = (directory / "token-registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://{registry.host}/v2/", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the token registry did not start: see {log.name}")
            time.sleep(0.1)
        yield registry
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        tokens.shutdown()
        tokens.server_close()
