"""Containers as the runtime reports them, and what each part of a runtime must do.

A runtime is three ports: ``Images`` (resolve, pull, read, tag and prune
images), a ``Builder`` and a ``Scheduler`` that runs containers. A backend
implements each (``runtime.docker``, ``runtime.swarm``); one that only
schedules (Kubernetes, later) can reuse the engine's images and builder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dockyard.domain.images import ImageReference
from dockyard.domain.recovery import Exit
from dockyard.domain.runs import OneOff, OneOffSpec

# The user a credential helper names for an identity token (Docker's protocol).
IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class RegistryCredentials:
    """A login for one registry host: a username and password, or an identity token.

    An identity token (what a credential helper answers as the user
    ``<token>``) is not a password: the engine trades it at the registry's
    token server (an OAuth refresh token) for an access token.
    """

    host: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password, even by accident
        return f"RegistryCredentials(host={self.host!r}, username={self.username!r})"

    @property
    def identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USER

    def engine_auth(self) -> dict[str, str]:
        """The auth config the Docker engine takes for pulls, builds and services."""
        if self.identity_token:
            return {"identitytoken": self.password, "serveraddress": self.host}
        return {"username": self.username, "password": self.password, "serveraddress": self.host}


@dataclass(frozen=True)
class ContainerSpec:
    """What every container of one service of a release runs."""

    app: str
    release: int
    service: str
    image: str
    command: str | None
    environment: Mapping[str, str]


# Swarm's task states before "running"; an engine's container starts at once.
STARTING_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)


@dataclass(frozen=True)
class Container:
    id: str
    app: str
    release: int
    service: str
    index: int
    port: int
    state: str  # the engine's: running, exited, restarting, created...
    # Where the router and health checks reach it: its own address on its
    # app's network, or (Swarm) its node's; empty while it has none.
    address: str = "127.0.0.1"
    # Swarm: the task running the slot now (``docker service ps`` shows it);
    # the id above names the slot, which outlives its tasks.
    task: str = ""
    # How it last exited, when it did (None: it has not, or nobody knows),
    # and what the engine said when it would not run it (Swarm's task error).
    exit_code: int | None = None
    error: str = ""
    # How many times the runtime started it again after it exited (Docker's
    # restart count; Swarm's tasks of its slot that exited). Listings may say 0.
    restarts: int = 0

    @property
    def shown_id(self) -> str:
        """What a user is shown: the engine's container id, or Swarm's task id."""
        return (self.task or self.id)[:12]

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def starting(self) -> bool:
        """On its way to running (Swarm: assigned to a node, pulling, starting)."""
        return self.state in STARTING_STATES

    @property
    def upstream(self) -> str:
        return f"{self.address}:{self.port}"


class Images(Protocol):
    """The images on the engine and the registries they come from."""

    def resolve(self, image: ImageReference, credentials: RegistryCredentials | None) -> str:
        """The image's digest (``sha256:...``), asked of its registry."""
        ...

    def pull(self, image: ImageReference, credentials: RegistryCredentials | None) -> None: ...

    def read_first(self, image: str, paths: tuple[str, ...]) -> tuple[str, str] | None:
        """The first of ``paths`` that is a file in the image, with its text."""
        ...

    def read_firsts(
        self, image: str, groups: Sequence[tuple[str, ...]]
    ) -> list[tuple[str, str] | None]:
        """``read_first`` of each group of paths, in one look at the image."""
        ...

    def tag(self, image: str, repository: str, tag: str) -> None: ...

    def image_repository(self, app: str) -> str:
        """Where the app's built images are tagged, apart from other installations'."""
        ...

    def prune_tags(self, repository: str, keep: set[str]) -> list[str]:
        """Remove tags of ``repository`` not in ``keep``; return the removed ones."""
        ...

    def has_image(self, image: str) -> bool:
        """Whether the engine holds ``image`` (an id or a name)."""
        ...


class Builder(Protocol):
    """Builds an app's Dockerfile into an image its containers can run."""

    def build(
        self,
        context: Path,
        *,
        app: str,
        credentials: Mapping[str, RegistryCredentials],
        from_images: list[ImageReference],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> str:
        """Build a tar context for ``app``; return what its containers run.

        That is the image id, or a name pinned to a digest where the image
        must reach other hosts. Its ``RUN`` steps run on the app's own
        network; each credential goes to its host only.
        """
        ...


class Scheduler(Protocol):
    """Runs an app's containers: on one Docker engine, or as Swarm services."""

    # Whether ``remove`` stops exactly the containers it is given. Swarm,
    # asked to run fewer tasks of a service, chooses which ones stop itself.
    removes_chosen: bool
    # Whether containers may run on hosts other than the one that pulls here
    # (Swarm): each node pulls for itself, so a pull here only reads the image.
    pulls_on_nodes: bool

    def start(
        self,
        spec: ContainerSpec,
        indexes: Sequence[int],
        credentials: RegistryCredentials | None = None,
    ) -> list[Container]:
        """Start one container per index, each with a ``PORT`` of its own.

        ``credentials`` let every host pull the image. A scheduler that numbers
        containers itself (Swarm's task slots) may number the new ones otherwise.
        """
        ...

    def remove(self, containers: Sequence[Container], *, grace: float = 10.0) -> None:
        """Stop and remove containers; see ``removes_chosen``."""
        ...

    def containers(self, app: str | None = None) -> list[Container]: ...

    def inspect(self, container_id: str) -> Container | None: ...

    def logs(self, container_id: str, tail: int = 20) -> str: ...

    def run_release_command(
        self,
        spec: ContainerSpec,
        *,
        operation: int,
        timeout: float,
        on_line: Callable[[str], None],
        checkpoint: Callable[[], None],
    ) -> int | None:
        """Run ``spec.command`` once in a container of its own, on the app's network.

        Its output goes to ``on_line`` as it comes; ``checkpoint`` is called
        while it runs and may raise (a cancelled operation). Returns its exit
        status, or None when it ran past ``timeout`` seconds and was killed.
        The container is removed however it ends; one left by a server that
        died goes as a one-off run's does, once ``operation`` has ended.
        """
        ...

    def app_logs(self, app: str, tail: int, follow: bool) -> Iterator[str]:
        """The output of the app's containers, line by line, prefixed by service."""
        ...

    def nodes(self) -> list[dict[str, Any]]:
        """The hosts containers run on: id, hostname, address, state, availability, role."""
        ...

    def forget(self, app: str) -> None:
        """Remove what was made to run a deprovisioned app (its network)."""
        ...

    def exits(self, stop: threading.Event) -> Iterator[Exit]:
        """The app containers that exit on their own (to be started again), as they do,
        until ``stop`` is set; a scheduler that cannot tell yields none."""
        ...

    def renew_credentials(
        self, app: str, release: int, credentials: RegistryCredentials | None
    ) -> int:
        """Give the release's containers these credentials (None: none) for the pulls to come.

        Nothing restarts. A scheduler whose hosts pull only when a container
        starts (``pulls_on_nodes`` false) has nothing to renew. Returns how
        many services or containers now hold them.
        """
        ...

    def one_off(self, spec: OneOffSpec, *, attach: bool = True) -> OneOff:
        """Start a one-off container (``dockyard run``) on the app's own network.

        Its image is on the engine already. It is attached to before it
        starts unless ``attach`` is false; whoever waits for it removes it.
        """
        ...

    def remove_ended_one_offs(self, ended: Callable[[int], bool]) -> list[int]:
        """Remove one-offs whose run ``ended`` says is over (their server stopped).

        Returns the ids of their runs' operations.
        """
        ...


@dataclass(frozen=True)
class Runtime:
    """One backend's three parts, sharing one connection to their engine."""

    images: Images
    builder: Builder
    scheduler: Scheduler


class Router(Protocol):
    """Sends ``http://<app>.<domain>/`` to the app's routed containers."""

    def route(self, app: str, upstreams: list[str]) -> None:
        """Send the app's traffic to these ``host:port`` upstreams."""
        ...

    def unroute(self, app: str) -> None: ...

    def routes(self) -> dict[str, list[str]]: ...

    def set_names(self, app: str, names: list[str]) -> None:
        """The app's custom domains (``*.`` wildcards too), besides ``<app>.<domain>``."""
        ...

    def names(self) -> dict[str, list[str]]: ...

    def drain(self, upstreams: list[str], timeout: float) -> bool:
        """Wait until requests in flight to these upstreams are answered."""
        ...

    # HTTPS (a router that serves none says so, and refuses certificates).

    def serves_https(self) -> bool: ...

    def set_certificate(self, name: str, chain_pem: str, key_pem: str) -> None:
        """Serve this certificate for ``name``, replacing the one it had; no reload."""
        ...

    def remove_certificate(self, name: str) -> None: ...

    def set_challenge(self, token: str, key_authorization: str) -> None:
        """Answer the ACME CA's ``/.well-known/acme-challenge/<token>`` over HTTP."""
        ...

    def remove_challenge(self, token: str) -> None: ...

    def set_force_https(self, app: str, on: bool) -> None:
        """Redirect the app's plain HTTP requests to HTTPS (308), or stop."""
        ...

    def url(self, app: str) -> str: ...
