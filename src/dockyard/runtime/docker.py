"""The ``docker`` runtime: one Docker engine, each app on a network of its own.

Every app gets a bridge network ``dy-<installation>-<app>`` that the runtime
creates: its containers and its builds' ``RUN`` steps run there, in network
namespaces of their own, and listen on ``PORT`` (5000) at their own address.
The host's loopback listeners (the API, the database, the registry) are not
on any such network, and a packet from one app's network to another's would
have to be forwarded by the host, which the engine is told not to do
(``--ip-forward=false``; with iptables, the engine's isolation rules drop it).
The router, a host process, reaches each container at its address.
"""

from __future__ import annotations

import contextlib
import io
import queue
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import requests
from docker import APIClient
from docker.auth import AuthConfig
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig
from docker.utils import kwargs_from_env

from dockyard.domain import errors
from dockyard.domain.building import BuildFailed
from dockyard.domain.containers import Container, ContainerSpec, RegistryCredentials
from dockyard.domain.images import ImageReference

LABEL_INSTALLATION = "dockyard.installation"
LABEL_APP = "dockyard.app"
LABEL_RELEASE = "dockyard.release"
LABEL_SERVICE = "dockyard.service"
LABEL_INDEX = "dockyard.index"
LABEL_PORT = "dockyard.port"

# Each container has a network namespace of its own: every one listens on
# the same port, as on Aptible and Dokku.
APP_PORT = 5000

_UNAUTHORIZED = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "denied",
    "401",
)
_NOT_FOUND = ("manifest unknown", "not found", "name unknown", "does not exist", "404")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "timeout",
    "connection reset",
    "server gave http response",
)


def _auth(credentials: RegistryCredentials | None) -> dict[str, str] | None:
    if credentials is None:
        return None
    return {"username": credentials.username, "password": credentials.password}


def _build_error(
    text: str,
    from_images: list[ImageReference],
    credentials: Mapping[str, RegistryCredentials],
) -> errors.DockyardError:
    lower = text.lower()
    named = [i for i in from_images if i.host in text or i.repository in text]
    # The engine does not always say which FROM failed: suspect the one whose
    # credentials were sent, then the first.
    suspects = named or [i for i in from_images if i.host in credentials] or from_images
    image = suspects[0] if suspects else None
    pulling = any(w in lower for w in _UNAUTHORIZED + _NOT_FOUND + _UNREACHABLE)
    if image is not None and pulling:
        return registry_error(Exception(text), image, credentials.get(image.host))
    return BuildFailed(f"the build failed: {text.strip()}")


def registry_error(
    exc: Exception, image: ImageReference, credentials: RegistryCredentials | None
) -> errors.DockyardError:
    """Turn the engine's words about a registry into one specific error."""
    text = str(getattr(exc, "explanation", None) or exc).lower()
    if any(word in text for word in _UNREACHABLE):
        return errors.RegistryUnreachable(image.host)
    if any(word in text for word in _UNAUTHORIZED):
        return errors.CredentialsRejected(image.host, had_credentials=credentials is not None)
    if any(word in text for word in _NOT_FOUND):
        return errors.ImageNotFound(str(image))
    return errors.RegistryUnreachable(image.host, "the engine said: " + text[:200])


# The SDK reads ~/.docker/config.json again whenever the auth it holds is
# empty; an entry for a host that cannot exist keeps it from ever doing so.
_NO_HOST = "dockyard.invalid"


def only_these(credentials: Mapping[str, RegistryCredentials]) -> AuthConfig:
    """SDK auth holding exactly these credentials, each for its host, and no file's."""
    auths = {
        host: {"username": c.username, "password": c.password, "serveraddress": host}
        for host, c in credentials.items()
    }
    auths[_NO_HOST] = {"serveraddress": _NO_HOST}
    return AuthConfig({"auths": auths})


def merge_lines(producers: list[Callable[[list[Any]], Iterator[str]]]) -> Iterator[str]:
    """Lines of several log streams as they come, one thread per stream.

    Each producer appends the stream it reads to the list it is given, so
    that the streams are closed when the reader stops.
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
        try:
            while running:
                line = lines.get()
                if line is None:
                    running -= 1
                else:
                    yield line
        finally:
            for stream in streams:
                stream.close()

    return merged()


class DockerRuntime:
    removes_chosen = True
    pulls_on_nodes = False

    def __init__(self, installation: str, base_url: str | None = None) -> None:
        # Several installations may share an engine: each sees only its own.
        self.installation = installation
        # DOCKER_HOST and friends apply when no URL is given, as for `docker`.
        self._connection: dict[str, Any] = (
            {"base_url": base_url} if base_url else dict(kwargs_from_env())
        )
        try:
            self._client = docker.DockerClient(**self._connection, version="auto")
        except DockerException as exc:
            where = self._connection.get("base_url") or "the default socket"
            raise errors.EngineUnreachable(
                f"cannot reach the Docker engine at {where}: start it or set DOCKER_HOST"
            ) from exc
        # The server's own logins (~/.docker/config.json) must never serve an
        # app that gave no credentials.
        self._client.api._auth_configs = only_these({})  # type: ignore[attr-defined]
        self._networks_lock = threading.Lock()

    def network(self, app: str) -> str:
        """The name of the app's own network, made if it is missing."""
        name = f"dy-{self.installation}-{app}"
        with self._networks_lock:
            if not self._client.api.networks(names=[name]):
                try:
                    self._client.api.create_network(
                        name,
                        driver="bridge",
                        check_duplicate=True,
                        labels={LABEL_INSTALLATION: self.installation, LABEL_APP: app},
                    )
                except APIError as exc:
                    if exc.status_code != 409:  # made meanwhile by another server
                        raise
        return name

    def forget(self, app: str) -> None:
        """Remove what the runtime made for a deprovisioned app: its network, its builds."""
        for network in self._client.api.networks(filters={"label": self.label_filter(app)}):
            with contextlib.suppress(NotFound):
                self._client.api.remove_network(network["Id"])
        self.prune_tags(self.image_repository(app), keep=set())

    def image_repository(self, app: str) -> str:
        """Where the app's built images are tagged: each installation has its own."""
        return f"dockyard/{self.installation}/{app}"

    def close(self) -> None:
        self._client.close()

    def resolve(self, image: ImageReference, credentials: RegistryCredentials | None) -> str:
        try:
            data = self._client.images.get_registry_data(str(image), auth_config=_auth(credentials))
        except (APIError, DockerException) as exc:
            raise registry_error(exc, image, credentials) from None
        digest = str(data.id)
        return digest

    def pull(self, image: ImageReference, credentials: RegistryCredentials | None) -> None:
        try:
            self._client.api.pull(
                image.name,
                tag=image.digest or image.tag,
                auth_config=_auth(credentials),
            )
        except (APIError, DockerException) as exc:
            raise registry_error(exc, image, credentials) from None

    def read_first(self, image: str, paths: tuple[str, ...]) -> tuple[str, str] | None:
        """The first of ``paths`` that is a file in the image, with its text."""
        container = self._client.containers.create(image, entrypoint=["/"], network_mode="none")
        try:
            for path in paths:
                try:
                    stream, _ = container.get_archive(path)
                except NotFound:
                    continue
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                    member = archive.next()
                    extracted = archive.extractfile(member) if member and member.isfile() else None
                    if extracted is not None:
                        return path, extracted.read().decode("utf-8", "replace")
            return None
        finally:
            container.remove(force=True)

    def api_with(
        self, credentials: Mapping[str, RegistryCredentials], timeout: float = 60
    ) -> APIClient:
        """A client of its own that holds exactly these credentials, each for its host.

        The SDK sends the auth its client holds (X-Registry-Config for builds,
        X-Registry-Auth for services); nothing comes from, or goes to, a file.
        """
        # The engine's API version is known: no /version call per client.
        version = self._client.api.api_version
        api = APIClient(**self._connection, version=version, timeout=int(timeout))
        api._auth_configs = only_these(credentials)  # type: ignore[attr-defined]
        return api

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
        container = self._client.containers.run(
            spec.image,
            command=command,
            name=f"dy-{self.installation}.{spec.app}.{spec.service}.{index}.r{spec.release}",
            detach=True,
            network=self.network(spec.app),
            init=True,  # forwards SIGTERM, so a stop takes no full grace period
            environment={**spec.environment, "PORT": str(APP_PORT)},
            labels={
                **self.labels(spec),
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

    def containers(self, app: str | None = None) -> list[Container]:
        # One listing call: inspecting each container in turn would trip over
        # those that another app's operation removes meanwhile.
        found = self._client.api.containers(all=True, filters={"label": self.label_filter(app)})
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
                        container_id, stream=True, follow=follow, tail=tail
                    )
                    keep.append(stream)
                    pending = b""
                    for chunk in stream:
                        pending += chunk
                        *complete, pending = pending.split(b"\n")
                        for line in complete:
                            yield f"{prefix} | {line.decode('utf-8', 'replace')}"
                    if pending:
                        yield f"{prefix} | {pending.decode('utf-8', 'replace')}"
                except (APIError, NotFound):
                    return

            return lines

        return merge_lines([producer(f"{c.service}.{c.index + 1}", c.id) for c in found])

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
        """Build the tar ``context``; return the image id (``sha256:...``).

        A client of its own carries only these credentials, each for its own
        host; the engine gets them in the build request, nothing is written
        to a docker config file.
        """
        api = self.api_with(credentials, timeout)
        deadline = time.monotonic() + timeout
        image_id = None
        try:
            with context.open("rb") as archive:
                for event in api.build(
                    fileobj=archive,
                    custom_context=True,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    network_mode=self.network(app),  # RUN steps: as the app runs
                    # Always ask the registry: a base image another app pulled
                    # must not serve a build that lacks the credentials for it.
                    pull=True,
                ):
                    if "error" in event:
                        raise _build_error(str(event["error"]), from_images, credentials)
                    if "stream" in event:
                        for line in str(event["stream"]).splitlines():
                            if line.strip():
                                on_line(line.rstrip())
                    aux = event.get("aux")
                    if isinstance(aux, dict) and "ID" in aux:
                        image_id = str(aux["ID"])
                    if time.monotonic() > deadline:
                        raise BuildFailed(f"the build took longer than {timeout:.0f} s")
        except requests.exceptions.ReadTimeout:
            raise BuildFailed(f"the build took longer than {timeout:.0f} s") from None
        except APIError as exc:
            raise _build_error(str(exc.explanation or exc), from_images, credentials) from None
        finally:
            api.close()
        if image_id is None:
            raise BuildFailed("the build finished without an image")
        return image_id

    def tag(self, image: str, repository: str, tag: str) -> None:
        self._client.api.tag(image, repository, tag)

    def prune_tags(self, repository: str, keep: set[str]) -> list[str]:
        """Remove tags of ``repository`` not in ``keep`` (layers in use stay)."""
        removed = []
        for image in self._client.images.list(name=repository):
            for tag in image.tags:
                if tag.startswith(repository + ":") and tag.rpartition(":")[2] not in keep:
                    try:
                        self._client.images.remove(tag)
                        removed.append(tag)
                    except APIError:
                        pass
        return removed

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

    def has_image(self, image: str) -> bool:
        try:
            self._client.images.get(image)
        except ImageNotFound:
            return False
        return True

    def _container(self, found: Mapping[str, Any]) -> Container:
        """A container as the engine lists it, or as it inspects it."""
        listed = "Labels" in found
        labels = found["Labels"] if listed else found["Config"]["Labels"]
        state = found.get("State", {})
        if isinstance(state, dict):
            status = str(state.get("Status", "unknown"))
            if status == "running" and state.get("Restarting"):
                status = "restarting"
        else:
            status = str(state)
        app = labels.get(LABEL_APP, "")
        networks = (found.get("NetworkSettings") or {}).get("Networks") or {}
        if "host" in networks:
            address = "127.0.0.1"  # started by an earlier Dockyard, on the host network
        else:
            ours = networks.get(f"dy-{self.installation}-{app}") or {}
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
        )
