"""The ``swarm`` runtime: apps as Docker Swarm services spread over several hosts.

Each Dockyard container (a service's Nth instance of a release) is a Swarm
service of one task, on host networking, with a host-mode published port so
the scheduler never puts two tasks with the same port on one node. The image
is pinned to its digest; registry credentials travel with the service
creation (``X-Registry-Auth``), and Swarm keeps them for re-scheduling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from docker.errors import APIError, NotFound
from docker.types import (
    ContainerSpec as SwarmContainerSpec,
)
from docker.types import (
    EndpointSpec,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from dockyard.domain.building import BuildFailed
from dockyard.domain.containers import Container, ContainerSpec, RegistryCredentials
from dockyard.domain.images import ImageReference
from dockyard.runtime.docker import (
    LABEL_APP,
    LABEL_INDEX,
    LABEL_PORT,
    LABEL_RELEASE,
    LABEL_SERVICE,
    DockerRuntime,
)

PORTS = range(20000, 30000)
START_TIMEOUT = 120.0
_FINAL_TASK_STATES = {"failed", "rejected", "shutdown", "complete", "orphaned", "remove"}


class SwarmRuntime(DockerRuntime):
    """Runs on a swarm manager; images resolve, pull and build on the manager."""

    def __init__(
        self,
        installation: str,
        base_url: str | None = None,
        image_registry: str | None = None,
        image_registry_credentials: RegistryCredentials | None = None,
    ) -> None:
        super().__init__(installation, base_url)
        self._addresses: dict[str, str] = {}
        self.image_registry = image_registry
        self._registry_credentials = image_registry_credentials

    # what differs from one engine: containers are services

    def start(
        self, spec: ContainerSpec, credentials: RegistryCredentials | None = None
    ) -> Container:
        image = spec.image
        if credentials is None and self.image_registry and image.startswith(self.image_registry):
            credentials = self._registry_credentials
        auth = {credentials.host: credentials} if credentials else {}
        api = self.api_with(auth)
        labels = self.labels(spec)
        environment = {**spec.environment, "PORT": str(spec.port)}
        template = TaskTemplate(
            container_spec=SwarmContainerSpec(
                image,
                command=["/bin/sh", "-c", spec.command] if spec.command else None,
                env=[f"{k}={v}" for k, v in environment.items()],
                labels=labels,
                init=True,
                stop_grace_period=10_000_000_000,
            ),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            networks=["host"],
        )
        try:
            created = api.create_service(
                template,
                name=f"dy-{self.installation}-{spec.release}-{spec.service}-{spec.index}",
                labels=labels,
                mode=ServiceMode("replicated", replicas=1),
                endpoint_spec=EndpointSpec(
                    mode="dnsrr",
                    ports={spec.port: (spec.port, "tcp", "host")},  # type: ignore[dict-item]
                ),
            )
        finally:
            api.close()
        service_id = str(created["ID"])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = self.inspect(service_id)
            if found is not None and (found.running or found.state in _FINAL_TASK_STATES):
                return found
            time.sleep(0.2)
        found = self.inspect(service_id)
        assert found is not None
        return found

    def free_port(self) -> int:
        claimed = {c.port for c in self.containers()}
        candidates = [p for p in random.sample(PORTS, 200) if p not in claimed]
        return candidates[0]

    def remove(self, container_id: str, *, grace: float = 10.0) -> None:
        try:
            self._client.api.remove_service(container_id)
        except NotFound:
            return
        deadline = time.monotonic() + grace + 10
        while time.monotonic() < deadline:  # its port is free once its task is gone
            try:
                if not self._client.api.tasks(filters={"service": container_id}):
                    return
            except APIError:
                return
            time.sleep(0.2)

    def containers(self, app: str | None = None) -> list[Container]:
        services = self._client.api.services(filters={"label": self.label_filter(app)})
        return [self._service(s) for s in services]

    def inspect(self, container_id: str) -> Container | None:
        try:
            return self._service(self._client.api.inspect_service(container_id))
        except NotFound:
            return None

    def logs(self, container_id: str, tail: int = 20) -> str:
        try:
            output = self._client.api.service_logs(
                container_id, stdout=True, stderr=True, tail=str(tail)
            )
            return b"".join(output).decode("utf-8", "replace")
        except (NotFound, APIError):
            return ""

    def app_logs(self, app: str, tail: int, follow: bool) -> Iterator[str]:
        for container in sorted(self.containers(app), key=lambda c: (c.service, c.index)):
            prefix = f"{container.service}.{container.index + 1}"
            for line in self.logs(container.id, tail).splitlines():
                yield f"{prefix} | {line}"

    def nodes(self) -> list[dict[str, Any]]:
        found = []
        for node in self._client.api.nodes():
            found.append(
                {
                    "id": node["ID"][:12],
                    "hostname": node["Description"]["Hostname"],
                    "address": node["Status"].get("Addr", ""),
                    "state": node["Status"]["State"],
                    "availability": node["Spec"]["Availability"],
                    "role": node["Spec"]["Role"],
                }
            )
        return found

    def _service(self, service: Mapping[str, Any]) -> Container:
        labels = service["Spec"].get("Labels", {})
        tasks = self._client.api.tasks(filters={"service": service["ID"]})
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        task = running[0] if running else max(tasks, key=lambda t: t["UpdatedAt"], default=None)
        state = task["Status"]["State"] if task else "pending"
        address = self._address(task["NodeID"]) if task and task.get("NodeID") else ""
        return Container(
            id=str(service["ID"]),
            app=labels.get(LABEL_APP, ""),
            release=int(labels.get(LABEL_RELEASE, "0")),
            service=labels.get(LABEL_SERVICE, ""),
            index=int(labels.get(LABEL_INDEX, "0")),
            port=int(labels.get(LABEL_PORT, "0")),
            state=state,
            address=address,
        )

    def _address(self, node_id: str) -> str:
        if node_id not in self._addresses:
            self._addresses[node_id] = str(self._client.api.inspect_node(node_id)["Status"]["Addr"])
        return self._addresses[node_id]

    # builds reach every node through a registry

    def build(
        self,
        context: Path,
        *,
        credentials: Mapping[str, RegistryCredentials],
        from_images: list[ImageReference],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> str:
        """Build on the manager, push to the image registry, return the pinned name."""
        several = len(self._client.api.nodes()) > 1
        if self.image_registry is None and several:
            raise BuildFailed(
                "this swarm has several nodes and built images must reach them all: "
                "start the server with --image-registry HOST/PREFIX (and its credentials)"
            )
        image_id = super().build(
            context,
            credentials=credentials,
            from_images=from_images,
            timeout=timeout,
            on_line=on_line,
        )
        if self.image_registry is None:
            return image_id
        repository = f"{self.image_registry}/build"
        tag = image_id.removeprefix("sha256:")[:16]
        self._client.api.tag(image_id, repository, tag)
        auth = self._registry_credentials
        on_line(f"Pushing {repository}:{tag}")
        for event in self._client.api.push(
            repository,
            tag=tag,
            stream=True,
            decode=True,
            auth_config={"username": auth.username, "password": auth.password} if auth else None,
        ):
            if "error" in event:
                raise BuildFailed(f"pushing the built image failed: {event['error']}")
        reference = ImageReference.parse(f"{repository}:{tag}")
        digest = self.resolve(reference, auth)
        return str(reference.pinned(digest))
