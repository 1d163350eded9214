"""The ``swarm`` runtime: apps as Docker Swarm services spread over several hosts.

Each service of a release is one replicated Swarm service: its tasks are
Dockyard's containers, numbered by their slot, and Swarm spreads them over
the nodes (``spread=node.id``) and moves them off a drained or lost node.
Tasks use the host network; each listens on a port of its own, derived from
its slot (``PORT`` is a Swarm template), so two tasks may share a node. The
image is pinned to its digest; registry credentials travel with the service
creation and updates (``X-Registry-Auth``), and Swarm keeps them for
re-scheduling, never in the environment. The scheduler sends only the
credentials it is given (the services layer's resolver chooses them).

``renew_credentials`` sends the same spec again with new credentials: Swarm
stores them in the task template's pull options, which it ignores when it
compares a running task with its service, so no task restarts; tasks it
starts later (a drained or lost node, a scale-up) pull with the new ones.
Inspecting a service shows no credentials.

``swarm_runtime`` composes the manager's engine pieces (its images and its
builder, as for one engine) with ``SwarmScheduler``, and wraps the builder
in ``SwarmBuilder``, which pushes each build to ``--image-registry``.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from docker.auth import encode_header
from docker.errors import APIError, NotFound
from docker.types import (
    ContainerSpec as SwarmContainerSpec,
)
from docker.types import (
    Placement,
    PlacementPreference,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from dockyard.domain.building import BuildFailed
from dockyard.domain.containers import (
    STARTING_STATES,
    Builder,
    Container,
    ContainerSpec,
    Images,
    RegistryCredentials,
    Runtime,
)
from dockyard.domain.images import ImageReference, built_repository
from dockyard.domain.logs import split_stamp
from dockyard.domain.recovery import Exit
from dockyard.domain.runs import OneOff, OneOffSpec
from dockyard.runtime.building import EngineBuilder
from dockyard.runtime.engine import (
    LABEL_APP,
    LABEL_PORT,
    LABEL_RELEASE,
    LABEL_SERVICE,
    Engine,
    merge_lines,
)
from dockyard.runtime.images import EngineImages, auth
from dockyard.runtime.one_off import remove_app_one_offs, remove_ended_one_offs, start_one_off
from dockyard.runtime.releasing import run_release_command

# Slot N of a service whose port block is B listens on B*100+N: 10001-32732,
# below Linux's ephemeral ports. Up to 32 tasks per service (MAX_CONTAINERS).
PORT_BLOCKS = range(100, 328)
START_TIMEOUT = 120.0
BLOCK_QUARANTINE = 60.0
# A release command has a network namespace of its own on the manager.
RELEASE_COMMAND_PORT = 5000
_SLOT_PORT = "{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}"
# A task Swarm still wants to run has one of these desired states.
_WANTED = STARTING_STATES | {"running"}
_FAILED = {"failed", "rejected"}
# A task whose container exited by itself; Swarm starts another in its slot.
_ENDED = {"failed", "complete"}
_DETAIL_TASK = "com.docker.swarm.task.id="


def swarm_runtime(
    installation: str,
    base_url: str | None = None,
    image_registry: str | None = None,
    image_registry_credentials: RegistryCredentials | None = None,
) -> Runtime:
    """The ``swarm`` backend, on a manager: images resolve, pull and build there."""
    engine = Engine(installation, base_url)
    images = EngineImages(engine)
    return Runtime(
        images,
        SwarmBuilder(
            engine, EngineBuilder(engine), images, image_registry, image_registry_credentials
        ),
        SwarmScheduler(engine),
    )


def _registry_auth(credentials: RegistryCredentials | None) -> str:
    """The ``X-Registry-Auth`` header; an empty auth (no credentials) replaces any held."""
    return encode_header(credentials.engine_auth() if credentials else {}).decode()


class SwarmScheduler:
    """Runs each service of a release as one Swarm service, through the manager."""

    # Asked for fewer tasks, Swarm picks which ones stop.
    removes_chosen = False
    pulls_on_nodes = True

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._client = engine.client
        self._addresses: dict[str, str] = {}
        self._released: dict[int, float] = {}  # port block -> when its service was removed
        self._blocks_lock = threading.Lock()

    def start(
        self,
        spec: ContainerSpec,
        indexes: Sequence[int],
        credentials: RegistryCredentials | None = None,
    ) -> list[Container]:
        """Create the service, or add tasks to it; wait until Swarm has placed them."""
        if not indexes:
            return []
        existing = self._find(spec)
        if existing is None:
            before: set[str] = set()
            service_id = self._create(spec, len(indexes), credentials)
        else:
            service_id = existing["ID"]
            before = {c.id for c in self._slots(existing)}
            replicas = existing["Spec"]["Mode"]["Replicated"]["Replicas"]
            self._set_replicas(service_id, replicas + len(indexes), credentials)
        # Wait only until Swarm has placed the new tasks on nodes: the health
        # check then asks their ports as soon as they listen.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            new = [c for c in self._slots_of(service_id) if c.id not in before]
            placed = [c for c in new if c.address or c.state in _FAILED]
            if len(placed) >= len(indexes) or time.monotonic() > deadline:
                return sorted(new, key=lambda c: c.index)
            time.sleep(0.02)

    def _create(
        self, spec: ContainerSpec, replicas: int, credentials: RegistryCredentials | None
    ) -> str:
        # Held until the service exists: two apps' deploys in this process
        # must not choose the same block.
        with self._blocks_lock:
            return self._create_on_free_block(spec, replicas, credentials)

    def _create_on_free_block(
        self, spec: ContainerSpec, replicas: int, credentials: RegistryCredentials | None
    ) -> str:
        block = self._free_block()
        labels = {**self._engine.labels(spec), LABEL_PORT: str(block)}
        environment = [f"{k}={v}" for k, v in spec.environment.items()]
        environment.append(f"PORT={block}{_SLOT_PORT}")
        template = TaskTemplate(
            container_spec=SwarmContainerSpec(
                spec.image,
                command=["/bin/sh", "-c", spec.command] if spec.command else None,
                env=environment,
                labels=labels,
                init=True,
                stop_grace_period=10_000_000_000,
            ),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            placement=Placement(preferences=[PlacementPreference("spread", "node.id")]),
            networks=["host"],
        )
        api = self._engine.api_with({credentials.host: credentials} if credentials else {})
        try:
            created = api.create_service(
                template,
                name=self._name(spec),
                labels=labels,
                mode=ServiceMode("replicated", replicas=replicas),
            )
        finally:
            api.close()
        return str(created["ID"])

    def _name(self, spec: ContainerSpec) -> str:
        name = f"dy-{self._engine.installation[:8]}-{spec.app}-{spec.service}-r{spec.release}"
        if len(name) > 63:  # a DNS label
            name = name[:50] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
        return name

    def _find(self, spec: ContainerSpec) -> dict[str, Any] | None:
        for service in self._client.api.services(
            filters={"label": self._engine.label_filter(spec.app)}
        ):
            labels = service["Spec"].get("Labels", {})
            if labels.get(LABEL_RELEASE) == str(spec.release) and (
                labels.get(LABEL_SERVICE) == spec.service
            ):
                return dict(service)
        return None

    def _free_block(self) -> int:
        """A port block no service uses, nor one removed in the last minute."""
        now = time.monotonic()
        self._released = {b: t for b, t in self._released.items() if now - t < BLOCK_QUARANTINE}
        used = set(self._released) | {
            int(service["Spec"]["Labels"].get(LABEL_PORT, "0"))
            for service in self._client.api.services(filters={"label": LABEL_APP})
        }
        return random.choice([b for b in PORT_BLOCKS if b not in used])

    def _set_replicas(
        self, service_id: str, replicas: int, credentials: RegistryCredentials | None = None
    ) -> None:
        """Change only the task count: running tasks stay as they are."""
        self._update(service_id, replicas, _registry_auth(credentials) if credentials else None)

    def renew_credentials(
        self, app: str, release: int, credentials: RegistryCredentials | None
    ) -> int:
        """Send the release's services these credentials (None: none); no task restarts.

        None takes back what they hold: their later pulls go anonymous.
        """
        renewed = 0
        for service in self._client.api.services(filters={"label": self._engine.label_filter(app)}):
            if service["Spec"].get("Labels", {}).get(LABEL_RELEASE) != str(release):
                continue
            try:
                self._update(service["ID"], None, _registry_auth(credentials))
            except NotFound:
                continue  # removed meanwhile
            renewed += 1
        return renewed

    def _update(self, service_id: str, replicas: int | None, registry_auth: str | None) -> None:
        """Send the spec back as it is, with another task count (None: the same).

        The spec goes back exactly as it is (the SDK's update fills in fields,
        and a task spec that differs makes Swarm replace every task). With no
        ``X-Registry-Auth`` (``registry_auth`` None), Swarm keeps the
        credentials the spec has; new ones go to the pull options, which do
        not make running tasks differ.
        """
        api = self._client.api
        headers = {}
        if registry_auth is not None:  # new tasks may land where the image is not yet
            headers["X-Registry-Auth"] = registry_auth
        for attempt in range(5):
            current = api.inspect_service(service_id)
            spec = dict(current["Spec"])
            if replicas is not None:
                spec["Mode"] = {"Replicated": {"Replicas": replicas}}
            response = api._post_json(  # type: ignore[attr-defined]
                api._url("/services/{0}/update", service_id),  # type: ignore[attr-defined]
                data=spec,
                params={"version": current["Version"]["Index"]},
                headers=headers,
            )
            try:
                api._raise_for_status(response)  # type: ignore[attr-defined]
                return
            except APIError as exc:
                if "out of sequence" not in str(exc) or attempt == 4:
                    raise

    def remove(self, containers: Sequence[Container], *, grace: float = 10.0) -> None:
        """Remove whole services, or lower their task count (Swarm picks which stop)."""
        chosen: dict[str, set[str]] = defaultdict(set)
        for container in containers:
            chosen[container.id.split("/")[0]].add(container.id)
        for service_id, ids in chosen.items():
            try:
                service = self._client.api.inspect_service(service_id)
            except NotFound:
                continue
            remaining = [c for c in self._slots(service) if c.id not in ids]
            if remaining:
                self._set_replicas(service_id, len(remaining))
                continue
            try:
                self._client.api.remove_service(service_id)
            except NotFound:
                continue
            # Its tasks take a few seconds more to stop on their nodes.
            self._released[int(service["Spec"].get("Labels", {}).get(LABEL_PORT, "0"))] = (
                time.monotonic()
            )

    def containers(self, app: str | None = None) -> list[Container]:
        services = self._client.api.services(filters={"label": self._engine.label_filter(app)})
        return [c for s in services for c in self._slots(s)]

    def inspect(self, container_id: str) -> Container | None:
        return next((c for c in self._slots_of(container_id) if c.id == container_id), None)

    def _slots_of(self, container_or_service_id: str) -> list[Container]:
        try:
            service = self._client.api.inspect_service(container_or_service_id.split("/")[0])
        except NotFound:
            return []
        return self._slots(service)

    def _slots(self, service: Mapping[str, Any]) -> list[Container]:
        """One container per slot Swarm still runs: its running task, else its newest."""
        labels = service["Spec"].get("Labels", {})
        block = int(labels.get(LABEL_PORT, "0"))
        by_slot: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for task in self._client.api.tasks(filters={"service": service["ID"]}):
            by_slot[int(task.get("Slot", 0))].append(task)
        found = []
        for slot, tasks in sorted(by_slot.items()):
            wanted = [t for t in tasks if t["DesiredState"] in _WANTED]
            if not wanted:
                continue
            running = [t for t in wanted if t["Status"]["State"] == "running"]
            task = (running or sorted(wanted, key=lambda t: str(t["UpdatedAt"])))[-1]
            state = str(task["Status"]["State"])
            failed = [t for t in tasks if t["Status"]["State"] in _FAILED]
            exited = task
            if state != "running" and failed:
                state = "failed"  # and Swarm is starting it again
                exited = sorted(failed, key=lambda t: str(t["UpdatedAt"]))[-1]
            node = task.get("NodeID")
            found.append(
                Container(
                    id=f"{service['ID']}/{slot}",
                    app=labels.get(LABEL_APP, ""),
                    release=int(labels.get(LABEL_RELEASE, "0")),
                    service=labels.get(LABEL_SERVICE, ""),
                    index=slot - 1,
                    port=block * 100 + slot,
                    state=state,
                    address=self._address(node) if node else "",
                    task=str(task["ID"]),
                    exit_code=_exit_code(exited),
                    error=str(exited["Status"].get("Err") or ""),
                    # Tasks moved off a drained or lost node were shut down, not restarted.
                    restarts=sum(t["Status"]["State"] in _ENDED for t in tasks),
                )
            )
        return found

    def _address(self, node_id: str) -> str:
        if node_id not in self._addresses:
            self._addresses[node_id] = str(self._client.api.inspect_node(node_id)["Status"]["Addr"])
        return self._addresses[node_id]

    def logs(self, container_id: str, tail: int = 20) -> str:
        service_id, _, slot = container_id.partition("/")
        lines = [
            line
            for found, _, line in self._service_lines(service_id, tail, follow=False, keep=[])
            if not slot or found == int(slot)
        ]
        return "".join(line + "\n" for line in lines)

    def run_release_command(
        self,
        spec: ContainerSpec,
        *,
        operation: int,
        timeout: float,
        on_line: Callable[[str], None],
        checkpoint: Callable[[], None],
    ) -> int | None:
        """On the manager's engine, in the app's network there (where its builds run).

        The manager holds the release's image: it pulled it, or built it.
        """
        return run_release_command(
            self._engine,
            spec,
            operation=operation,
            port=RELEASE_COMMAND_PORT,
            timeout=timeout,
            on_line=on_line,
            checkpoint=checkpoint,
        )

    def _service_lines(
        self, service_id: str, tail: int, *, follow: bool, keep: list[Any]
    ) -> Iterator[tuple[int, str, str]]:
        """The service's output as (slot, time, line); ``keep`` gets the stream, to close."""
        try:
            slots = {
                t["ID"]: int(t.get("Slot", 0))
                for t in self._client.api.tasks(filters={"service": service_id})
            }
            stream = self._client.api.service_logs(
                service_id,
                details=True,
                follow=follow,
                stdout=True,
                stderr=True,
                tail=str(tail),
                timestamps=True,
            )
            keep.append(stream)
            pending = b""
            for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    # TIME DETAILS TEXT: the engine's time, then the task's details.
                    stamp, rest = split_stamp(raw.decode("utf-8", "replace"))
                    details, _, line = rest.partition(" ")
                    task = next(
                        (
                            p[len(_DETAIL_TASK) :]
                            for p in details.split(",")
                            if p.startswith(_DETAIL_TASK)
                        ),
                        "",
                    )
                    if task not in slots:  # a task started after the listing
                        slots.update(
                            (t["ID"], int(t.get("Slot", 0)))
                            for t in self._client.api.tasks(filters={"service": service_id})
                        )
                    yield slots.get(task, 0), stamp, line
        except (NotFound, APIError):
            return

    def app_logs(self, app: str, tail: int, follow: bool) -> Iterator[str]:
        """The output of every task of the app, each line prefixed by ``service.N |``."""
        services = self._client.api.services(filters={"label": self._engine.label_filter(app)})

        def producer(service: Mapping[str, Any]) -> Callable[[list[Any]], Iterator[str]]:
            name = service["Spec"].get("Labels", {}).get(LABEL_SERVICE, "")

            def lines(keep: list[Any]) -> Iterator[str]:
                for slot, stamp, line in self._service_lines(
                    service["ID"], tail, follow=follow, keep=keep
                ):
                    yield f"{stamp} {name}.{slot} | {line}" if stamp else f"{name}.{slot} | {line}"

            return lines

        ordered = sorted(
            services, key=lambda s: str(s["Spec"].get("Labels", {}).get(LABEL_SERVICE))
        )
        return merge_lines([producer(s) for s in ordered])

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

    def exits(self, stop: threading.Event) -> Iterator[Exit]:
        """None told: Swarm starts a failed task again itself, as a new task; the
        reconciler follows tasks, not their exits (see the README)."""
        return iter(())

    def forget(self, app: str) -> None:
        """Remove the app's network on the manager, where its builds and runs ran."""
        remove_app_one_offs(self._engine, app)
        self._engine.remove_networks(app)

    def one_off(self, spec: OneOffSpec, *, attach: bool = True) -> OneOff:
        """On the manager's engine (a node of the swarm), in the app's network there.

        As the app's builds and release commands: never the host's network.
        """
        return start_one_off(self._engine, spec, attach=attach)

    def remove_ended_one_offs(self, ended: Callable[[int], bool]) -> list[int]:
        return remove_ended_one_offs(self._engine, ended)


class SwarmBuilder:
    """Builds on the manager; pushes to the image registry so every node can pull."""

    def __init__(
        self,
        engine: Engine,
        builder: Builder,
        images: Images,
        image_registry: str | None = None,
        image_registry_credentials: RegistryCredentials | None = None,
    ) -> None:
        self._client = engine.client
        self._installation = engine.installation
        self._builder = builder
        self._images = images
        self.image_registry = image_registry
        self._registry_credentials = image_registry_credentials

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
        """Build on the manager, push to the image registry, return the pinned name."""
        several = len(self._client.api.nodes()) > 1
        if self.image_registry is None and several:
            raise BuildFailed(
                "this swarm has several nodes and built images must reach them all: "
                "start the server with --image-registry HOST/PREFIX (and its credentials)"
            )
        image_id = self._builder.build(
            context,
            app=app,
            credentials=credentials,
            from_images=from_images,
            timeout=timeout,
            on_line=on_line,
        )
        if self.image_registry is None:
            return image_id
        repository = built_repository(self.image_registry, self._installation, app)
        tag = image_id.removeprefix("sha256:")[:16]
        self._images.tag(image_id, repository, tag)
        pushing = self._registry_credentials
        on_line(f"Pushing {repository}:{tag}")
        for event in self._client.api.push(
            repository,
            tag=tag,
            stream=True,
            decode=True,
            auth_config=auth(pushing),
        ):
            if "error" in event:
                raise BuildFailed(f"pushing the built image failed: {event['error']}")
        reference = ImageReference.parse(f"{repository}:{tag}")
        digest = self._images.resolve(reference, pushing)
        return str(reference.pinned(digest))


def _exit_code(task: Mapping[str, Any]) -> int | None:
    """How the task's container exited, once it has (Swarm says 0 while it runs)."""
    if task["Status"]["State"] in ("running", "new", "pending", "assigned", "accepted"):
        return None
    found = (task["Status"].get("ContainerStatus") or {}).get("ExitCode")
    return int(found) if isinstance(found, int) else None
