"""The ``docker`` runtime: one Docker engine, each app on a network of its own.

Every app gets a bridge network ``dy-<installation>-<app>`` that the runtime
creates: its containers and its builds' ``RUN`` steps run there, in network
namespaces of their own, and listen on ``PORT`` (5000) at their own address.
The host's loopback listeners (the API, the database, the registry) are not
on any such network, and a packet from one app's network to another's would
have to be forwarded by the host, which the engine is told not to do
(``--ip-forward=false``; with iptables, the engine's isolation rules drop it).
The router, a host process, reaches each container at its address.

``docker_runtime`` puts the parts together: the engine's images and builder
(``images.py``, ``building.py``) and ``DockerScheduler``, on one ``Engine``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from docker.errors import APIError, NotFound
from docker.types import LogConfig

from dockyard.domain.containers import Container, ContainerSpec, RegistryCredentials, Runtime
from dockyard.domain.errors import ContainerRefused
from dockyard.domain.logs import split_stamp
from dockyard.domain.recovery import Exit
from dockyard.domain.refusals import explain_refusal
from dockyard.domain.runs import OneOff, OneOffSpec
from dockyard.runtime.building import EngineBuilder
from dockyard.runtime.engine import (
    LABEL_APP,
    LABEL_INDEX,
    LABEL_PORT,
    LABEL_RELEASE,
    LABEL_SERVICE,
    Engine,
    merge_lines,
)
from dockyard.runtime.exits import engine_exits
from dockyard.runtime.images import EngineImages
from dockyard.runtime.one_off import remove_app_one_offs, remove_ended_one_offs, start_one_off
from dockyard.runtime.releasing import run_release_command

# Each container has a network namespace of its own: every one listens on
# the same port, as on Aptible and Dokku.
APP_PORT = 5000
_EXIT_CODE = re.compile(r"(Exited|Restarting) \((?P<code>\d+)\)")


def docker_runtime(installation: str, base_url: str | None = None) -> Runtime:
    """The ``docker`` backend: images, builds and containers on one engine."""
    engine = Engine(installation, base_url)
    return Runtime(EngineImages(engine), EngineBuilder(engine), DockerScheduler(engine))


class DockerScheduler:
    """Runs each container on the engine, on its app's network."""

    removes_chosen = True
    pulls_on_nodes = False

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._client = engine.client

    def start(
        self,
        spec: ContainerSpec,
        indexes: Sequence[int],
        credentials: RegistryCredentials | None = None,
    ) -> list[Container]:
        # The image was pulled (with its credentials) before: the engine has it.
        command: Any = ["/bin/sh", "-c", spec.command] if spec.command else None
        started: list[Container] = []
        try:
            for index in indexes:
                started.append(self._run(spec, index, command))
        except BaseException:
            self.remove(started, grace=0)
            raise
        return started

    def _run(self, spec: ContainerSpec, index: int, command: Any) -> Container:
        name = f"dy-{self._engine.installation}.{spec.app}.{spec.service}.{index}.r{spec.release}"
        try:
            return self._create_and_start(spec, index, command, name)
        except APIError as exc:
            # Created, then refused at start: it goes, whatever the reason.
            with contextlib.suppress(NotFound, APIError):
                self._client.api.remove_container(name, force=True)
            told = explain_refusal(str(exc.explanation or ""))
            if told is None:
                raise
            raise ContainerRefused(f"{spec.service}.{index + 1}: {told}") from None

    def _create_and_start(
        self, spec: ContainerSpec, index: int, command: Any, name: str
    ) -> Container:
        container = self._client.containers.run(
            spec.image,
            command=command,
            name=name,
            detach=True,
            network=self._engine.network(spec.app),
            init=True,  # forwards SIGTERM, so a stop takes no full grace period
            environment={**spec.environment, "PORT": str(APP_PORT)},
            labels={
                **self._engine.labels(spec),
                LABEL_INDEX: str(index),
                LABEL_PORT: str(APP_PORT),
            },
            restart_policy={"Name": "always"},
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
        )
        container.reload()  # its address is known once it started
        return self._container(container.attrs)

    def remove(self, containers: Sequence[Container], *, grace: float = 10.0) -> None:
        for found in containers:
            try:
                self._client.api.stop(found.id, timeout=int(grace))
                self._client.api.remove_container(found.id, force=True)
            except NotFound:
                pass
            except APIError as exc:
                if exc.status_code != 409:  # being removed by someone else already
                    raise

    def containers(self, app: str | None = None) -> list[Container]:
        # One listing call: inspecting each container in turn would trip over
        # those that another app's operation removes meanwhile.
        found = self._client.api.containers(
            all=True, filters={"label": self._engine.label_filter(app)}
        )
        return [self._container(c) for c in found]

    def inspect(self, container_id: str) -> Container | None:
        try:
            return self._container(self._client.api.inspect_container(container_id))
        except NotFound:
            return None

    def logs(self, container_id: str, tail: int = 20) -> str:
        try:
            output = self._client.containers.get(container_id).logs(tail=tail)
        except (NotFound, APIError):  # gone, or being removed
            return ""
        return bytes(output).decode("utf-8", "replace")

    def run_release_command(
        self,
        spec: ContainerSpec,
        *,
        operation: int,
        timeout: float,
        on_line: Callable[[str], None],
        checkpoint: Callable[[], None],
    ) -> int | None:
        return run_release_command(
            self._engine,
            spec,
            operation=operation,
            port=APP_PORT,
            timeout=timeout,
            on_line=on_line,
            checkpoint=checkpoint,
        )

    def app_logs(self, app: str, tail: int, follow: bool) -> Iterator[str]:
        """The app's containers' output, each line prefixed by ``service.N |``."""
        found = sorted(
            (c for c in self.containers(app) if c.running or c.state == "restarting"),
            key=lambda c: (c.service, c.index),
        )

        def producer(prefix: str, container_id: str) -> Callable[[list[Any]], Iterator[str]]:
            def lines(keep: list[Any]) -> Iterator[str]:
                try:
                    stream = self._client.api.logs(
                        container_id, stream=True, follow=follow, tail=tail, timestamps=True
                    )
                    keep.append(stream)
                    pending = b""
                    for chunk in stream:
                        pending += chunk
                        *complete, pending = pending.split(b"\n")
                        for line in complete:
                            yield _stamped(prefix, line)
                    if pending:
                        yield _stamped(prefix, pending)
                except (APIError, NotFound):
                    return

            return lines

        return merge_lines([producer(f"{c.service}.{c.index + 1}", c.id) for c in found])

    def nodes(self) -> list[dict[str, Any]]:
        """The hosts apps run on: this one engine."""
        info = self._client.info()
        return [
            {
                "id": str(info.get("ID", ""))[:12],
                "hostname": str(info.get("Name", "")),
                "address": "127.0.0.1",
                "state": "ready",
                "availability": "active",
                "role": "engine",
            }
        ]

    def exits(self, stop: threading.Event) -> Iterator[Exit]:
        return engine_exits(self._engine, stop)

    def forget(self, app: str) -> None:
        """Remove the app's network (and one-off runs still on it)."""
        remove_app_one_offs(self._engine, app)
        self._engine.remove_networks(app)

    def renew_credentials(
        self, app: str, release: int, credentials: RegistryCredentials | None
    ) -> int:
        return 0  # the engine pulled before the containers started: none pulls later

    def one_off(self, spec: OneOffSpec, *, attach: bool = True) -> OneOff:
        return start_one_off(self._engine, spec, attach=attach)

    def remove_ended_one_offs(self, ended: Callable[[int], bool]) -> list[int]:
        return remove_ended_one_offs(self._engine, ended)

    def _container(self, found: Mapping[str, Any]) -> Container:
        """A container as the engine lists it, or as it inspects it."""
        listed = "Labels" in found
        labels = found["Labels"] if listed else found["Config"]["Labels"]
        state = found.get("State", {})
        exit_code: int | None = None
        if isinstance(state, dict):  # inspected
            status = str(state.get("Status", "unknown"))
            if status == "running" and state.get("Restarting"):
                status = "restarting"
            if status in ("exited", "restarting", "dead"):
                exit_code = int(state.get("ExitCode", 0))
        else:  # listed: "Exited (3) 2 seconds ago", "Restarting (137) 1 second ago"
            status = str(state)
            if found_code := _EXIT_CODE.match(str(found.get("Status", ""))):
                exit_code = int(found_code["code"])
        app = labels.get(LABEL_APP, "")
        networks = (found.get("NetworkSettings") or {}).get("Networks") or {}
        if "host" in networks:
            address = "127.0.0.1"  # started by an earlier Dockyard, on the host network
        else:
            ours = networks.get(self._engine.network_name(app)) or {}
            address = str(ours.get("IPAddress") or "")  # none while it is stopped
        return Container(
            id=str(found["Id"]),
            app=app,
            release=int(labels.get(LABEL_RELEASE, "0")),
            service=labels.get(LABEL_SERVICE, ""),
            index=int(labels.get(LABEL_INDEX, "0")),
            port=int(labels.get(LABEL_PORT, "0")),
            state=status,
            address=address,
            exit_code=exit_code,
            restarts=int(found.get("RestartCount") or 0),  # inspected only
        )


def _stamped(prefix: str, raw: bytes) -> str:
    """``TIME web.1 | text`` from the engine's ``TIME text``."""
    stamp, text = split_stamp(raw.decode("utf-8", "replace"))
    return f"{stamp} {prefix} | {text}" if stamp else f"{prefix} | {text}"
