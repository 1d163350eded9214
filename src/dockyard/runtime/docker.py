"""The ``docker`` runtime: one Docker engine, containers with host networking."""

from __future__ import annotations

import io
import queue
import socket
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
from docker.models.containers import Container as DockerContainer
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
        port = self.free_port()
        container = self._client.containers.run(
            spec.image,
            command=command,
            name=f"dy-{self.installation}.{spec.app}.{spec.service}.{index}.r{spec.release}",
            detach=True,
            network_mode="host",
            init=True,  # forwards SIGTERM, so a stop takes no full grace period
            environment={**spec.environment, "PORT": str(port)},
            labels={
                **self.labels(spec),
                LABEL_INDEX: str(index),
                LABEL_PORT: str(port),
            },
            restart_policy={"Name": "always"},
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
        )
        return self._container(container)

    def free_port(self) -> int:
        """A loopback port no process listens on and no app container claims."""
        claimed = {c.port for c in self.containers()}
        for _ in range(100):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            if port not in claimed:
                return port
        raise RuntimeError("no free port found")

    def remove(self, containers: Sequence[Container], *, grace: float = 10.0) -> None:
        for found in containers:
            try:
                container = self._client.containers.get(found.id)
                container.stop(timeout=int(grace))
                container.remove(force=True)
            except NotFound:
                pass

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
        found = self._client.containers.list(all=True, filters={"label": self.label_filter(app)})
        return [self._container(c) for c in found]

    def inspect(self, container_id: str) -> Container | None:
        try:
            return self._container(self._client.containers.get(container_id))
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
        listed = self._client.containers.list(filters={"label": self.label_filter(app)})
        found = sorted(
            ((self._container(c), c) for c in listed),
            key=lambda pair: (pair[0].service, pair[0].index),
        )

        def producer(
            prefix: str, container: DockerContainer
        ) -> Callable[[list[Any]], Iterator[str]]:
            def lines(keep: list[Any]) -> Iterator[str]:
                try:
                    stream = container.logs(stream=True, follow=follow, tail=tail)
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

        return merge_lines([producer(f"{ours.service}.{ours.index + 1}", c) for ours, c in found])

    def build(
        self,
        context: Path,
        *,
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
                    network_mode="host",  # as the app runs; the engine has no bridge
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

    @staticmethod
    def _container(container: DockerContainer) -> Container:
        labels = container.labels
        state = container.attrs.get("State", {})
        status = state.get("Status", "unknown") if isinstance(state, dict) else str(state)
        if status == "running" and state.get("Restarting"):
            status = "restarting"
        return Container(
            id=str(container.id),
            app=labels.get(LABEL_APP, ""),
            release=int(labels.get(LABEL_RELEASE, "0")),
            service=labels.get(LABEL_SERVICE, ""),
            index=int(labels.get(LABEL_INDEX, "0")),
            port=int(labels.get(LABEL_PORT, "0")),
            state=status,
        )
