"""What every use case is handed: the store, events, runtime and router."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.domain.certificates import HttpsSettings
from dockyard.domain.containers import (
    Builder,
    Images,
    RegistryCredentials,
    Router,
    Runtime,
    Scheduler,
)
from dockyard.domain.errors import DockyardError
from dockyard.domain.limits import Limits
from dockyard.domain.records import User
from dockyard.domain.registries import Held
from dockyard.domain.release_phase import DEFAULT_RELEASE_TIMEOUT
from dockyard.domain.releases import KEPT_BUILDS
from dockyard.git.repositories import Repositories
from dockyard.registry.sources import Sources
from dockyard.services.events import Events
from dockyard.store.repository import Store

Probe = Callable[[str, str], "int | None"]


class NoRuntime(DockyardError):
    def __init__(self) -> None:
        super().__init__("this server runs no containers: it was started without a runtime")


def _no_probe(upstream: str, path: str) -> int | None:
    return None


@dataclass
class Platform:
    store: Store
    events: Events
    public_url: str
    # Seconds each operation waits once started: lets tests interrupt and
    # cancel running operations (``DOCKYARD_OPERATION_HOLD_SECONDS``).
    hold_seconds: float = 0.0
    make_runtime: Callable[[], Runtime] | None = None
    router_: Router | None = None
    probe: Probe = _no_probe
    domain: str = "dockyard.localhost"
    repositories: Repositories | None = None
    # Where the hook and other local clients reach the API.
    internal_url: str = ""
    builds_dir: Path = Path("/tmp")
    build_timeout: float = 1800.0
    # How long a release command may run (``--release-timeout``).
    release_timeout: float = float(DEFAULT_RELEASE_TIMEOUT)
    kept_builds: int = KEPT_BUILDS
    limits: Limits = field(default_factory=Limits)
    # Credentials fetched from registry sources, kept as long as each allows.
    registry_sources: Sources = field(default_factory=Sources)
    # The server's --image-registry (HOST/PREFIX) and its credentials: the
    # resolver's last resort for images under that prefix (Swarm's builds).
    image_registry: str | None = None
    installation: str = ""
    image_registry_credentials: RegistryCredentials | None = None
    # The id of this process's worker: one-off runs (not queued) are recorded as
    # its, so that a server that dies with runs going has them marked interrupted.
    worker_id: str = ""
    # Set when the router serves HTTPS: where certificates come from.
    https: HttpsSettings | None = None
    # (app, release) -> what its services hold for pulls to come (Swarm). In
    # memory only: a restarted server renews every service once.
    held_auth: dict[tuple[str, int], Held] = field(default_factory=dict, init=False)
    # Set to have the certificate keeper order what is due now (a domain was added).
    certificates_due: threading.Event = field(default_factory=threading.Event, init=False)
    _runtime: Runtime | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _app_locks: dict[str, threading.Lock] = field(default_factory=dict, init=False)
    # Token -> (user, monotonic expiry): most requests need no database read.
    token_cache: dict[str, tuple[User, float]] = field(default_factory=dict, init=False)
    # User id -> (store generation, GET /apps body).
    app_lists: dict[int, tuple[int, bytes]] = field(default_factory=dict, init=False)

    def app_lock(self, handle: str) -> threading.Lock:
        """Held while an operation of this process changes the app's containers."""
        with self._lock:
            return self._app_locks.setdefault(handle, threading.Lock())

    def git_remote(self, handle: str) -> str:
        return f"{self.public_url}/git/{handle}.git"

    def _connected(self) -> Runtime:
        """The runtime's parts, connected on first use."""
        with self._lock:
            if self._runtime is None:
                if self.make_runtime is None:
                    raise NoRuntime()
                self._runtime = self.make_runtime()
            return self._runtime

    # One accessor per part, so each use case names the one it needs.
    def images(self) -> Images:
        return self._connected().images

    def builder(self) -> Builder:
        return self._connected().builder

    def scheduler(self) -> Scheduler:
        return self._connected().scheduler

    def git(self) -> Repositories:
        if self.repositories is None:
            raise NoRuntime()
        return self.repositories

    def router(self) -> Router:
        if self.router_ is None:
            raise NoRuntime()
        return self.router_

    def url(self, handle: str) -> str:
        if self.router_ is None:
            return ""
        return self.router_.url(handle)
