"""Images on the engine, and the registries they come from (``domain.containers.Images``).

The engine's own distribution endpoint and pull speak the registry
protocol; what the engine says about a registry becomes one specific error.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from dockyard.domain import errors
from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.images import ImageReference
from dockyard.runtime.engine import Engine

UNAUTHORIZED = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "denied",
    "401",
)
NOT_FOUND = ("manifest unknown", "not found", "name unknown", "does not exist", "404")
UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "timeout",
    "connection reset",
    "server gave http response",
)


def auth(credentials: RegistryCredentials | None) -> dict[str, str] | None:
    return None if credentials is None else credentials.engine_auth()


def registry_error(
    exc: Exception, image: ImageReference, credentials: RegistryCredentials | None
) -> errors.DockyardError:
    """Turn the engine's words about a registry into one specific error."""
    text = str(getattr(exc, "explanation", None) or exc).lower()
    if any(word in text for word in UNREACHABLE):
        return errors.RegistryUnreachable(image.host)
    if any(word in text for word in UNAUTHORIZED):
        return errors.CredentialsRejected(image.host, had_credentials=credentials is not None)
    if any(word in text for word in NOT_FOUND):
        return errors.ImageNotFound(str(image))
    return errors.RegistryUnreachable(image.host, "the engine said: " + text[:200])


class EngineImages:
    """Resolves, pulls, reads, tags and prunes images on one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._client = engine.client

    def resolve(self, image: ImageReference, credentials: RegistryCredentials | None) -> str:
        try:
            data = self._client.images.get_registry_data(str(image), auth_config=auth(credentials))
        except (APIError, DockerException) as exc:
            raise registry_error(exc, image, credentials) from None
        digest = str(data.id)
        return digest

    def pull(self, image: ImageReference, credentials: RegistryCredentials | None) -> None:
        try:
            self._client.api.pull(
                image.name,
                tag=image.digest or image.tag,
                auth_config=auth(credentials),
            )
        except (APIError, DockerException) as exc:
            raise registry_error(exc, image, credentials) from None

    def read_first(self, image: str, paths: tuple[str, ...]) -> tuple[str, str] | None:
        """The first of ``paths`` that is a file in the image, with its text."""
        return self.read_firsts(image, [paths])[0]

    def read_firsts(
        self, image: str, groups: Sequence[tuple[str, ...]]
    ) -> list[tuple[str, str] | None]:
        """``read_first`` of each group of paths, from one container (made once)."""
        container = self._client.containers.create(image, entrypoint=["/"], network_mode="none")
        try:
            return [self._first_in(container, paths) for paths in groups]
        finally:
            container.remove(force=True)

    @staticmethod
    def _first_in(container: Any, paths: tuple[str, ...]) -> tuple[str, str] | None:
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

    def image_repository(self, app: str) -> str:
        """Where the app's built images are tagged: each installation has its own."""
        return f"dockyard/{self._engine.installation}/{app}"

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

    def has_image(self, image: str) -> bool:
        try:
            self._client.images.get(image)
        except ImageNotFound:
            return False
        return True
