"""One Docker engine connection, shared by the images, builder and scheduler on it.

Every object Dockyard makes on the engine carries the installation's label,
so several installations may share an engine and each sees only its own.
Each app gets a bridge network ``dy-<installation>-<app>``: the ``docker``
scheduler's containers and every backend's builds (``RUN`` steps) run there.
"""

from __future__ import annotations

import contextlib
import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
from docker import APIClient
from docker.auth import AuthConfig
from docker.errors import APIError, DockerException, NotFound
from docker.utils import kwargs_from_env

from dockyard.domain import errors
from dockyard.domain.containers import ContainerSpec, RegistryCredentials
from dockyard.domain.logs import time_key

LABEL_INSTALLATION = "dockyard.installation"
LABEL_APP = "dockyard.app"
LABEL_RELEASE = "dockyard.release"
LABEL_SERVICE = "dockyard.service"
LABEL_INDEX = "dockyard.index"
LABEL_PORT = "dockyard.port"

# The SDK reads ~/.docker/config.json again whenever the auth it holds is
# empty; an entry for a host that cannot exist keeps it from ever doing so.
_NO_HOST = "dockyard.invalid"


def only_these(credentials: Mapping[str, RegistryCredentials]) -> AuthConfig:
    """SDK auth holding exactly these credentials, each for its host, and no file's."""
    auths = {host: {**c.engine_auth(), "serveraddress": host} for host, c in credentials.items()}
    auths[_NO_HOST] = {"serveraddress": _NO_HOST}
    return AuthConfig({"auths": auths})


class Engine:
    """A client of one engine, for one installation, and the app networks on it."""

    def __init__(self, installation: str, base_url: str | None = None) -> None:
        self.installation = installation
        # DOCKER_HOST and friends apply when no URL is given, as for `docker`.
        self._connection: dict[str, Any] = (
            {"base_url": base_url} if base_url else dict(kwargs_from_env())
        )
        try:
            self.client = docker.DockerClient(**self._connection, version="auto")
        except DockerException as exc:
            where = self._connection.get("base_url") or "the default socket"
            raise errors.EngineUnreachable(
                f"cannot reach the Docker engine at {where}: start it or set DOCKER_HOST"
            ) from exc
        # The server's own logins (~/.docker/config.json) must never serve an
        # app that gave no credentials.
        self.client.api._auth_configs = only_these({})  # type: ignore[attr-defined]
        self._networks_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def api_with(
        self, credentials: Mapping[str, RegistryCredentials], timeout: float = 60
    ) -> APIClient:
        """A client of its own that holds exactly these credentials, each for its host.

        The SDK sends the auth its client holds (X-Registry-Config for builds,
        X-Registry-Auth for services); nothing comes from, or goes to, a file.
        """
        # The engine's API version is known: no /version call per client.
        version = self.client.api.api_version
        api = APIClient(**self._connection, version=version, timeout=int(timeout))
        api._auth_configs = only_these(credentials)  # type: ignore[attr-defined]
        return api

    def network_name(self, app: str) -> str:
        return f"dy-{self.installation}-{app}"

    def network(self, app: str) -> str:
        """The name of the app's own network, made if it is missing."""
        name = self.network_name(app)
        with self._networks_lock:
            if not self.client.api.networks(names=[name]):
                try:
                    self.client.api.create_network(
                        name,
                        driver="bridge",
                        check_duplicate=True,
                        labels={LABEL_INSTALLATION: self.installation, LABEL_APP: app},
                    )
                except APIError as exc:
                    if "address pool" in str(exc.explanation or exc):
                        raise errors.NoNetworkAddresses(app) from None
                    if exc.status_code != 409:  # made meanwhile by another server
                        raise
        return name

    def remove_networks(self, app: str) -> None:
        """Remove the app's network, once its containers are gone."""
        for network in self.client.api.networks(filters={"label": self.label_filter(app)}):
            with contextlib.suppress(NotFound):
                self.client.api.remove_network(network["Id"])

    def label_filter(self, app: str | None = None) -> list[str]:
        """Select this installation's objects, of one app or of every app."""
        return [
            f"{LABEL_INSTALLATION}={self.installation}",
            f"{LABEL_APP}={app}" if app else LABEL_APP,
        ]

    def labels(self, spec: ContainerSpec) -> dict[str, str]:
        return {
            LABEL_INSTALLATION: self.installation,
            LABEL_APP: spec.app,
            LABEL_RELEASE: str(spec.release),
            LABEL_SERVICE: spec.service,
        }


MERGE_WINDOW = 0.25  # seconds a log line waits for earlier ones from other containers


def merge_lines(producers: list[Callable[[list[Any]], Iterator[str]]]) -> Iterator[str]:
    """Lines of several log streams, one thread per stream, in the order of their times.

    Each line starts with the engine's time (``domain.logs``); a line is held
    for ``MERGE_WINDOW`` seconds so that lines read meanwhile from the other
    streams can go before it. Each producer appends the stream it reads to the
    list it is given, so that the streams are closed when the reader stops.
    """
    lines: queue.Queue[str | None] = queue.Queue(maxsize=1000)
    streams: list[Any] = []

    def pump(producer: Callable[[list[Any]], Iterator[str]]) -> None:
        try:
            for line in producer(streams):
                lines.put(line)
        finally:
            lines.put(None)

    for producer in producers:
        threading.Thread(target=pump, args=(producer,), daemon=True).start()

    def merged() -> Iterator[str]:
        running = len(producers)
        held: list[tuple[str, int, float, str]] = []  # by time: (key, order, arrived, line)
        order = 0
        try:
            while running or held:
                if running:
                    wait = (
                        None if not held else max(0.0, held[0][2] + MERGE_WINDOW - time.monotonic())
                    )
                    try:
                        line = lines.get(timeout=wait)
                    except queue.Empty:
                        pass
                    else:
                        if line is None:
                            running -= 1
                        else:
                            heapq.heappush(held, (time_key(line), order, time.monotonic(), line))
                            order += 1
                now = time.monotonic()
                while held and (not running or held[0][2] + MERGE_WINDOW <= now):
                    yield heapq.heappop(held)[3]
        finally:
            for stream in streams:
                stream.close()

    return merged()
