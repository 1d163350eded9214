"""The composition root: wires the store, the worker and the API, then serves.

Imported lazily by ``entry`` for ``dockyard server`` only, so the client
commands start without loading the server's libraries.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import uvicorn

from dockyard.api.app import create_api
from dockyard.crypto.keys import FernetCipher, load_or_create_master_key, write_private_file
from dockyard.datadir import DataDirectoryInUse, DataDirectoryLock, make_private
from dockyard.domain.certificates import LETS_ENCRYPT, RENEW_BEFORE, HttpsSettings
from dockyard.domain.containers import RegistryCredentials, Runtime
from dockyard.domain.limits import Limits
from dockyard.git.repositories import Repositories
from dockyard.router import haproxy
from dockyard.router.haproxy import HAProxyRouter
from dockyard.router.probe import http_status
from dockyard.runtime.docker import docker_runtime
from dockyard.runtime.swarm import swarm_runtime
from dockyard.services import certificates
from dockyard.services.accounts import bootstrap_admin
from dockyard.services.context import Platform
from dockyard.services.events import Events
from dockyard.services.reconciling import reconcile
from dockyard.services.recovering import Recoveries
from dockyard.services.renewing import renew
from dockyard.store.database import sqlite_url
from dockyard.store.repository import Store
from dockyard.worker.runner import Worker

log = logging.getLogger("dockyard.server")


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    host: str
    port: int
    database_url: str | None = None
    public_url: str | None = None
    workers: int = 4
    router_listen: str = "127.0.0.1:8080"
    domain: str = "dockyard.localhost"
    docker_host: str | None = None
    build_timeout: float = 1800.0
    release_timeout: float = 1800.0
    runtime: str = "docker"
    image_registry: str | None = None
    image_registry_username: str | None = None
    image_registry_password: str | None = None
    limits: Limits = Limits()  # noqa: RUF009 (frozen: one shared value is safe)
    # Stop the router a stopped server left serving, instead of serving.
    stop_router: bool = False
    # HTTPS: where, and where certificates come from.
    router_https_listen: str | None = None
    acme_ca: str = LETS_ENCRYPT
    acme_email: str | None = None
    acme_ca_root: str | None = None
    acme_default_domain: bool = False


def image_registry_credentials(settings: ServerSettings) -> RegistryCredentials | None:
    if settings.image_registry and settings.image_registry_username:
        return RegistryCredentials(
            settings.image_registry.partition("/")[0],
            settings.image_registry_username,
            settings.image_registry_password or "",
        )
    return None


def make_runtime(settings: ServerSettings, installation: str) -> Runtime:
    if settings.runtime == "docker":
        return docker_runtime(installation, settings.docker_host)
    return swarm_runtime(
        installation,
        settings.docker_host,
        image_registry=settings.image_registry,
        image_registry_credentials=image_registry_credentials(settings),
    )


def _loopback(host: str) -> str:
    """Where a local client reaches a server listening on ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)


def https_settings(settings: ServerSettings) -> HttpsSettings | None:
    if not settings.router_https_listen:
        return None
    renew_before = os.environ.get("DOCKYARD_CERT_RENEW_BEFORE_SECONDS")  # tests widen it
    return HttpsSettings(
        acme_directory=settings.acme_ca,
        acme_email=settings.acme_email,
        acme_ca_root=settings.acme_ca_root,
        acme_default_domain=settings.acme_default_domain,
        renew_before=timedelta(seconds=float(renew_before)) if renew_before else RENEW_BEFORE,
    )


def build_platform(settings: ServerSettings) -> Platform:
    """Everything the server runs, on a data directory this process has locked."""
    cipher = FernetCipher(load_or_create_master_key(settings.data_dir))
    store = Store(settings.database_url or sqlite_url(settings.data_dir), cipher)
    store.migrate()
    public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    installation = store.installation_id()
    router = HAProxyRouter(
        listen=settings.router_listen,
        domain=settings.domain,
        data_dir=settings.data_dir,
        https_listen=settings.router_https_listen,
    )
    platform = Platform(
        store=store,
        events=Events(),
        public_url=public_url.rstrip("/"),
        hold_seconds=float(os.environ.get("DOCKYARD_OPERATION_HOLD_SECONDS", "0")),
        make_runtime=lambda: make_runtime(settings, installation),
        router_=router,
        probe=http_status,
        domain=settings.domain,
        repositories=Repositories(settings.data_dir / "git"),
        internal_url=f"http://{_loopback(settings.host)}:{settings.port}",
        builds_dir=settings.data_dir / "builds",
        build_timeout=settings.build_timeout,
        release_timeout=settings.release_timeout,
        limits=settings.limits,
        image_registry=settings.image_registry if settings.runtime == "swarm" else None,
        installation=installation,
        image_registry_credentials=image_registry_credentials(settings),
        https=https_settings(settings),
    )
    token = bootstrap_admin(platform)
    if token is not None:
        write_private_file(settings.data_dir / "admin-token", token + "\n")
        log.info("created the admin user; its token is in %s", settings.data_dir / "admin-token")
    return platform


def run(settings: ServerSettings, lock: DataDirectoryLock | None = None) -> None:
    """Serve until stopped; ``lock`` is the data directory's, if already taken."""
    logging.basicConfig(
        level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Everything the server and its children (the router, git) create is
    # private to the server's user.
    os.umask(0o077)
    if lock is None:
        try:
            # Before anything else touches the data directory.
            lock = DataDirectoryLock.acquire(settings.data_dir)
        except DataDirectoryInUse as exc:
            _fail(exc.message)
    try:
        make_private(settings.data_dir)
        if settings.stop_router:
            stop_data_dir_router(settings.data_dir)
        else:
            _serve(settings)
    finally:
        lock.release()


def _fail(message: str) -> NoReturn:
    """One line on stderr and a non-zero exit: the server cannot start."""
    print(f"dockyard server: {message}", file=sys.stderr)
    raise SystemExit(1)


def stop_data_dir_router(data_dir: Path) -> None:
    """``dockyard server --stop-router``: stop the router a stopped server left.

    An earlier version's server may have left a Caddy: it is stopped too.
    """
    stopped = False
    for name, stop in (("caddy", haproxy.stop_caddy_left), ("haproxy", haproxy.stop_router)):
        pid = stop(data_dir)
        if pid is not None:
            stopped = True
            print(f"stopped the router of {data_dir} ({name}, pid {pid})")
    if not stopped:
        print(f"no router is running for {data_dir}")


def _serve(settings: ServerSettings) -> None:
    platform = build_platform(settings)
    router = platform.router_
    assert isinstance(router, HAProxyRouter)
    # The Caddy an earlier version's server left serving holds the address:
    # it hands over (routes come back from the database before the API answers).
    if (pid := haproxy.stop_caddy_left(settings.data_dir)) is not None:
        log.info("stopped the Caddy an earlier version left (pid %d): HAProxy takes over", pid)
    if router.serves_https():
        # The TLS bind's certificate, from the local CA: there before HAProxy starts.
        default = certificates.default_certificate(platform)
        router.set_default_certificate(default.chain_pem, default.key_pem)
    try:
        # Adopts the router a previous server left serving, or starts one.
        router.start()
    except haproxy.RouterError as exc:
        platform.store.close()
        _fail(str(exc))
    worker = Worker(platform, concurrency=settings.workers)
    worker.start()
    platform.worker_id = worker.id  # one-off runs are this worker's, for recovery
    # Swarm moves tasks between nodes by itself: follow them sooner.
    default_interval = "5" if settings.runtime == "swarm" else "30"
    reconciler = Reconciler(
        platform,
        interval=float(os.environ.get("DOCKYARD_RECONCILE_SECONDS", default_interval)),
    )
    reconciler.start()
    recoveries = Recoveries(platform)  # container recovery, in the apps' operations
    recoveries.start()
    keeper = certificates.Keeper(
        platform, interval=float(os.environ.get("DOCKYARD_CERT_SECONDS", "60"))
    )
    if platform.https is not None:
        keeper.start()
    api = create_api(platform)
    config = uvicorn.Config(
        api,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=os.environ.get("DOCKYARD_ACCESS_LOG", "1") != "0",
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        if platform.https is not None:
            keeper.stop()
        recoveries.stop()
        reconciler.stop()
        worker.stop()
        router.stop()
        platform.store.close()


class Reconciler:
    """Reconciles at start, then every ``interval`` seconds, in a thread."""

    def __init__(self, platform: Platform, interval: float = 30.0) -> None:
        self.platform = platform
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        # The first pass runs before the API answers, so routes are back first.
        self._pass()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            self._pass()

    def _pass(self) -> None:
        try:
            reconcile(self.platform)
        except Exception as exc:
            log.warning("reconciliation failed (%s); trying again in %.0f s", exc, self.interval)
        try:
            # Renewed a pass early, so none lapses between two passes.
            renew(self.platform, margin=2 * self.interval)
        except Exception as exc:
            log.warning("renewing registry auth failed (%s); trying again", exc)
