"""Image references (``host/repo:tag``, ``host/repo@sha256:...``) and registry hosts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.domain.errors import InvalidInput

DOCKER_HUB = "docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class InvalidImageReference(InvalidInput):
    def __init__(self, reference: str, why: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {why}")


@dataclass(frozen=True)
class ImageReference:
    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        """Parse like the Docker engine; a host-less name is on Docker Hub."""
        text = reference.strip()
        if not text or text != reference or " " in text:
            raise InvalidImageReference(reference, "expected HOST/REPOSITORY[:TAG|@DIGEST]")
        name, at, digest = text.partition("@")
        if at and not _DIGEST.fullmatch(digest):
            raise InvalidImageReference(reference, "a digest is sha256: and 64 hex digits")
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise InvalidImageReference(reference, f"{tag!r} is not a valid tag")
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            host, repository = first, rest
            if not _HOST.fullmatch(host):
                raise InvalidImageReference(reference, f"{host!r} is not a valid registry host")
        else:
            host, repository = DOCKER_HUB, name if sep else f"library/{name}"
        if not _REPOSITORY.fullmatch(repository):
            raise InvalidImageReference(
                reference, f"{repository!r} is not a valid repository (lowercase, digits, . _ -)"
            )
        if tag is None and not at:
            tag = "latest"
        return cls(host=host, repository=repository, tag=tag, digest=digest or None)

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"

    def pinned(self, digest: str) -> ImageReference:
        return ImageReference(self.host, self.repository, None, digest)


def built_repository(image_registry: str, installation: str, app: str) -> str:
    """Where the app's builds are pushed under ``--image-registry``: its own repository.

    The server's credentials for that registry serve a deploy only for the
    deploying app's own repository, never another app's builds.
    """
    return f"{image_registry}/{installation}/{app}"
