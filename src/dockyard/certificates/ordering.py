"""Ordering a certificate from an ACME CA (RFC 8555) with HTTP-01, through certbot's
``acme`` library.

The account key is made once by the caller (``new_account_key``) and kept
encrypted; the account itself is found again from the key on each order
(the CA answers an existing account's key with its location). The router
answers the challenge: each one is published through a callback before the
CA is asked to validate it, and withdrawn after, whatever the outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from dockyard.certificates.inspecting import inspect, new_key_pem
from dockyard.domain.certificates import LETS_ENCRYPT, AcmeFailed, Issued

Publish = Callable[[str, str], None]  # (token, key authorization)
Withdraw = Callable[[str], None]  # (token)


@dataclass(frozen=True)
class Authority:
    """Where orders go: the directory URL, the account, and whom to trust for its TLS."""

    directory: str = LETS_ENCRYPT
    email: str | None = None
    ca_root: str | None = None  # a PEM file: the private CA's TLS root
    timeout: float = 90.0  # for one whole order


def new_account_key() -> str:
    """An RSA account key (PEM): every ACME CA accepts RS256."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _client(authority: Authority, account_key_pem: str) -> client.ClientV2:
    key = serialization.load_pem_private_key(account_key_pem.encode("ascii"), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    net = client.ClientNetwork(JWKRSA(key=key), user_agent="dockyard", timeout=30)
    if authority.ca_root:
        # requests takes a CA bundle's path where acme passes verify_ssl.
        net.verify_ssl = authority.ca_root  # type: ignore[assignment]
    directory = client.ClientV2.get_directory(authority.directory, net)
    acme = client.ClientV2(directory, net)
    contact = (f"mailto:{authority.email}",) if authority.email else ()
    registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as existing:  # the key's account: use it
        net.account = messages.RegistrationResource(
            uri=existing.location, body=messages.Registration()
        )
    return acme


def _words(exc: BaseException) -> str:
    """What went wrong, in the CA's words where it gave some; never a key."""
    if isinstance(exc, messages.Error):
        return exc.detail or exc.description or str(exc.typ)
    if isinstance(exc, errors.ValidationError):
        problems = [
            challb.error.detail or str(challb.error.typ)
            for authzr in exc.failed_authzrs
            for challb in authzr.body.challenges
            if challb.error is not None
        ]
        return "validation failed: " + ("; ".join(problems) or "the CA gave no reason")
    if isinstance(exc, errors.TimeoutError):
        return "the CA did not finish the order in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the CA's TLS certificate is not trusted (see --acme-ca-root)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "the CA cannot be reached"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the CA did not answer in time"
    return f"{type(exc).__name__}: {exc}"


def order(
    authority: Authority,
    account_key_pem: str,
    name: str,
    publish: Publish,
    withdraw: Withdraw,
) -> Issued:
    """A certificate for ``name`` (one DNS name), or ``AcmeFailed`` saying why."""
    published: list[str] = []
    try:
        acme = _client(authority, account_key_pem)
        key_pem = new_key_pem()
        csr = crypto_util.make_csr(key_pem.encode("ascii"), [name])
        orderr = acme.new_order(csr)
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue
            challb = next(
                (c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                None,
            )
            if challb is None:
                raise AcmeFailed(f"the CA offers no HTTP-01 challenge for {name}")
            response, validation = challb.response_and_validation(acme.net.key)
            token = challb.chall.encode("token")
            publish(token, validation)
            published.append(token)
            acme.answer_challenge(challb, response)
        deadline = datetime.now() + timedelta(seconds=authority.timeout)
        finished = acme.poll_and_finalize(orderr, deadline)
    except AcmeFailed:
        raise
    except Exception as exc:  # the library's, the network's: one clear line
        raise AcmeFailed(f"ACME order for {name} at {authority.directory}: {_words(exc)}") from None
    finally:
        for token in published:
            with contextlib.suppress(Exception):
                withdraw(token)
    found = inspect(finished.fullchain_pem)
    return Issued(name, found.chain_pem, key_pem, found.not_after.astimezone(UTC), found.issuer)
