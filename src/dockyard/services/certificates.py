"""HTTPS certificates of the apps' names: ordered, renewed, brought by users, installed.

When a domain is added its certificate is wanted (``pending``) and the
keeper, a thread of the server, orders it from the ACME CA at once; it
renews each certificate ``renew_before`` its expiry, and retries a failed
order with a growing back-off (the domain stays, its HTTP route works, and
``certs`` shows the CA's error). The platform's default names are served
with a ``*.<domain>`` certificate from the local CA (made once, kept
encrypted), or with an ACME certificate per app under
``--acme-default-domain``. Every certificate goes into the router at run
time; keys are decrypted only to be handed to it, never logged.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from dockyard.certificates import authority, inspecting, ordering
from dockyard.domain import records
from dockyard.domain.certificates import (
    ACME,
    ISSUED,
    LOCAL,
    USER,
    AcmeFailed,
    Certificate,
    HttpsNotServed,
    HttpsSettings,
    Issued,
    NameNotCovered,
    NoDomainForCertificate,
    TlsEdge,
    covers,
    due_for_renewal,
    needs_order,
    retry_delay,
)
from dockyard.services import apps
from dockyard.services.context import Platform

log = logging.getLogger("dockyard.certificates")

ACCOUNT_KEY = "acme_account_key"
LOCAL_CA = "local_ca"


@dataclass(frozen=True)
class Listed:
    """One name's certificate as ``certs`` shows it."""

    name: str
    source: str
    status: str
    issuer: str
    not_after: datetime | None
    last_error: str
    next_attempt_at: datetime | None


def edge(platform: Platform) -> TlsEdge | None:
    """The router, if it serves HTTPS."""
    router = platform.router_
    if isinstance(router, TlsEdge) and router.serves_https():
        return router
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _install(platform: Platform, issued: Issued) -> None:
    router = edge(platform)
    if router is not None:
        router.set_certificate(issued.name, issued.chain_pem, issued.key_pem)


def _default_wildcard(platform: Platform) -> str:
    return f"*.{platform.domain}"


# --- hooks of the domain use cases ---


def domains_added(platform: Platform, app: records.App, hosts: list[str]) -> None:
    """Want a certificate for each new name; the keeper orders it now."""
    if platform.https is None:
        return
    if platform.store.want_certificates(app.id, hosts, ACME):
        platform.certificates_due.set()


def domain_removed(platform: Platform, host: str) -> None:
    for name in platform.store.remove_certificates([host]):
        router = edge(platform)
        if router is not None:
            router.remove_certificate(name)


# --- what users do ---


def list_certs(platform: Platform, user: records.User, handle: str) -> list[Listed]:
    """The app's names and their certificates: the default name first."""
    app = apps.find(platform, user, handle)
    store = platform.store
    listed: list[Listed] = []
    default = f"{app.handle}.{platform.domain}"
    records_ = {c.name: c for c in store.certificates(app.id)}
    if platform.https is not None:
        shared = {c.name: c for c in store.certificates() if c.app_id is None}
        own = records_.pop(default, None) or shared.get(_default_wildcard(platform))
        if own is not None:
            listed.append(_listed(default, own))
    hosts = store.domains(app.id).get(app.handle, [])
    for host in hosts:
        found = records_.pop(host, None)
        if found is not None:
            listed.append(_listed(host, found))
        else:
            status = "none" if platform.https is None else "pending"
            listed.append(Listed(host, "", status, "", None, "", None))
    listed.extend(_listed(name, c) for name, c in sorted(records_.items()))
    return listed


def _listed(name: str, cert: Certificate) -> Listed:
    return Listed(
        name,
        cert.source,
        cert.status,
        cert.issuer,
        cert.not_after,
        cert.last_error,
        cert.next_attempt_at,
    )


def add_user_certificate(
    platform: Platform,
    user: records.User,
    handle: str,
    chain_pem: str,
    key_pem: str,
    name: str | None = None,
) -> list[str]:
    """Install a certificate the user brings for each of the app's domains it covers
    (``name`` only, given one); checked first, nothing stored if it fails."""
    app = apps.find(platform, user, handle)
    found = inspecting.check_pair(chain_pem, key_pem)
    hosts = platform.store.domains(app.id).get(app.handle, [])
    if name is not None:
        wanted = name.strip().lower().removesuffix(".")
        if wanted not in hosts:
            raise NoDomainForCertificate(app.handle, hosts)
        if not any(covers(pattern, wanted) for pattern in found.names):
            raise NameNotCovered(wanted, found.names)
        targets = [wanted]
    else:
        targets = [h for h in hosts if any(covers(p, h) for p in found.names)]
        if not targets:
            if not hosts:
                raise NoDomainForCertificate(app.handle, hosts)
            raise NameNotCovered(" or ".join(hosts), found.names)
    for host in targets:
        issued = Issued(host, found.chain_pem, key_pem, found.not_after, found.issuer)
        platform.store.save_certificate(app.id, USER, issued)
        _install(platform, issued)
        log.info("installed the certificate %s brought for %s (%s)", user.name, host, app.handle)
    return targets


def set_force_https(platform: Platform, user: records.User, handle: str, on: bool) -> bool:
    app = apps.find(platform, user, handle)
    if on and platform.https is None:
        raise HttpsNotServed()  # a redirect to a port nothing listens on
    platform.store.set_force_https(app.id, on)
    router = edge(platform)
    if router is not None:
        router.set_force_https(app.handle, on)
    return on


def force_https(platform: Platform, app: records.App) -> bool:
    return app.id in platform.store.force_https()


# --- the keeper's pass ---


def install_all(platform: Platform) -> int:
    """Put every stored certificate and redirect into the router (at start); the count."""
    router = edge(platform)
    if router is None:
        return 0
    served = platform.store.served_certificates()
    for issued in served:
        router.set_certificate(issued.name, issued.chain_pem, issued.key_pem)
    forced = platform.store.force_https()
    for app in platform.store.all_apps() if forced else []:
        if app.id in forced:
            router.set_force_https(app.handle, True)
    return len(served)


def default_certificate(platform: Platform) -> Issued:
    """The ``*.<domain>`` certificate of the local CA, made now if there is none: what the
    router serves for a name it has no certificate of its own for."""
    settings = platform.https or HttpsSettings()
    _local_default(platform, settings, _now())
    found = platform.store.certificate_material(_default_wildcard(platform))
    assert found is not None
    return found


def _local_default(platform: Platform, settings: HttpsSettings, now: datetime) -> Issued | None:
    """The ``*.<domain>`` certificate from the local CA, made or renewed if due: the new one."""
    name = _default_wildcard(platform)
    current = next((c for c in platform.store.certificates() if c.name == name), None)
    until = current.not_after if current is not None else None
    if until is not None and not due_for_renewal(until, now, settings.renew_before):
        return None
    ca_cert, ca_key = json.loads(
        platform.store.secret_setting(
            LOCAL_CA, lambda: json.dumps(authority.new_authority(platform.installation))
        )
    )
    issued = authority.issue(ca_cert, ca_key, [name])
    platform.store.save_certificate(None, LOCAL, issued)
    log.info("the local CA issued the certificate of %s", name)
    return issued


def renew(platform: Platform, now: datetime | None = None) -> list[str]:
    """One pass: the default names' certificate, then every ACME order that is due.

    Returns one line per order made or failed.
    """
    settings, router = platform.https, edge(platform)
    if settings is None or router is None:
        return []
    moment = now or _now()
    store = platform.store
    # The local CA's *.<domain> is always there: the certificate for a name the
    # router has none for; with --acme-default-domain each app's own name also
    # gets one from the CA (an exact name beats the wildcard).
    local = _local_default(platform, settings, moment)
    if local is not None:
        router.set_certificate(local.name, local.chain_pem, local.key_pem)
    if settings.acme_default_domain:
        for app in store.all_apps():
            store.want_certificates(app.id, [f"{app.handle}.{platform.domain}"], ACME)
    done: list[str] = []
    for cert in store.certificates():
        if not needs_order(cert, moment, settings.renew_before):
            continue
        done.append(_order(platform, settings, router, cert))
    return done


def _order(platform: Platform, settings: HttpsSettings, router: TlsEdge, cert: Certificate) -> str:
    store = platform.store
    ca = ordering.Authority(
        settings.acme_directory,
        email=settings.acme_email,
        ca_root=settings.acme_ca_root,
        timeout=settings.order_timeout,
    )
    try:
        account = store.secret_setting(ACCOUNT_KEY, ordering.new_account_key)
        issued = ordering.order(
            ca, account, cert.name, router.set_challenge, router.remove_challenge
        )
    except AcmeFailed as failed:
        failures = cert.failures + 1
        retry_at = _now() + retry_delay(failures)
        store.certificate_failed(cert.name, failed.message, retry_at, failures)
        log.warning(
            "no certificate for %s (failure %d; next attempt at %s): %s",
            cert.name,
            failures,
            f"{retry_at:%H:%M:%S}",
            failed.message,
        )
        return f"{cert.name}: {failed.message}"
    if not any(c.name == cert.name for c in store.certificates()):
        return f"{cert.name}: removed while it was ordered"  # the domain went meanwhile
    store.save_certificate(cert.app_id, ACME, issued)
    router.set_certificate(issued.name, issued.chain_pem, issued.key_pem)
    verb = "renewed" if cert.status == ISSUED else "issued"
    log.info(
        "%s the certificate of %s (%s, until %s)",
        verb,
        cert.name,
        issued.issuer,
        f"{issued.not_after:%Y-%m-%d}",
    )
    return f"{cert.name}: {verb} until {issued.not_after:%Y-%m-%d %H:%M}"


class Keeper:
    """Runs ``renew`` at start, every ``interval`` seconds, and as soon as a domain is
    added (``Platform.certificates_due``), in a thread of its own: an order takes
    seconds and must not hold the reconciler or an API request."""

    def __init__(self, platform: Platform, interval: float = 60.0) -> None:
        self.platform = platform
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="certificates", daemon=True)

    def start(self) -> None:
        try:
            install_all(self.platform)
        except Exception as exc:
            log.warning("installing the stored certificates failed (%s)", type(exc).__name__)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.platform.certificates_due.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        due = self.platform.certificates_due
        while not self._stopping.is_set():
            due.clear()
            try:
                renew(self.platform)
            except Exception as exc:  # its type only: a message could hold a key's text
                log.warning("the certificate pass failed (%s); trying again", type(exc).__name__)
            due.wait(self.interval)
