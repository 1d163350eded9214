"""Dockerfile builds: which registries the ``FROM`` lines name, whose credentials go where."""

from __future__ import annotations

import re
from collections.abc import Mapping

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import DockyardError, InvalidInput
from dockyard.domain.images import ImageReference, InvalidImageReference

DEFAULT_BRANCHES = ("main", "master")
ZERO_COMMIT = "0" * 40

_FROM = re.compile(r"^\s*FROM\s+(?P<rest>.+)$", re.IGNORECASE | re.MULTILINE)
_COMMITISH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


class BuildFailed(DockyardError):
    kind = "build_failed"


class SeveralRegistries(BuildFailed):
    def __init__(self, hosts: list[str]) -> None:
        super().__init__(
            "the Dockerfile's FROM lines name several registries ("
            + ", ".join(hosts)
            + "): set DOCKYARD_PRIVATE_REGISTRY_HOST to the one the private registry "
            "credentials belong to"
        )


def from_images(dockerfile: str) -> list[ImageReference]:
    """The images the ``FROM`` lines pull (build stages named earlier excluded)."""
    stages: set[str] = set()
    images: list[ImageReference] = []
    text = re.sub(r"\\\n", " ", dockerfile)
    for match in _FROM.finditer(text):
        words = [w for w in match.group("rest").split() if not w.startswith("--")]
        if not words:
            continue
        name = words[0]
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
        if name.lower() in stages or name == "scratch" or "$" in name:
            continue
        try:
            images.append(ImageReference.parse(name))
        except InvalidImageReference:
            continue  # the engine will say what is wrong with it
    return images


def _first(values: Mapping[str, str], *keys: str) -> str | None:
    for key in keys:
        if values.get(key):
            return values[key]
    return None


def configured_credentials(
    dockerfile: str, configuration: Mapping[str, str]
) -> dict[str, RegistryCredentials]:
    """The app's ``*_PRIVATE_REGISTRY_*`` credentials, keyed by the one host they are for.

    ``DOCKYARD_PRIVATE_REGISTRY_USERNAME``/``_PASSWORD`` (or the ``APTIBLE_``
    spellings) belong to ``DOCKYARD_PRIVATE_REGISTRY_HOST``, or else to the
    only host the ``FROM`` lines name; a host no ``FROM`` line names gets none.
    """
    hosts = sorted({image.host for image in from_images(dockerfile)})
    username = _first(
        configuration, "DOCKYARD_PRIVATE_REGISTRY_USERNAME", "APTIBLE_PRIVATE_REGISTRY_USERNAME"
    )
    password = _first(
        configuration, "DOCKYARD_PRIVATE_REGISTRY_PASSWORD", "APTIBLE_PRIVATE_REGISTRY_PASSWORD"
    )
    if not (username and password):
        return {}
    host = _first(configuration, "DOCKYARD_PRIVATE_REGISTRY_HOST", "APTIBLE_PRIVATE_REGISTRY_HOST")
    if host is None:
        if len(hosts) > 1:
            raise SeveralRegistries(hosts)
        if not hosts:
            return {}
        host = hosts[0]
    if host not in hosts:
        return {}
    return {host: RegistryCredentials(host, username, password)}


def build_credentials(
    dockerfile: str,
    configuration: Mapping[str, str],
    stored: Mapping[str, RegistryCredentials],
) -> dict[str, RegistryCredentials]:
    """Credentials for each registry host the build pulls from.

    The configuration's (``configured_credentials``) win over ``stored`` ones
    (the app's sources), each serving its own host. Nothing is offered to
    any other host.
    """
    hosts = sorted({image.host for image in from_images(dockerfile)})
    result = {host: stored[host] for host in hosts if host in stored}
    result.update(configured_credentials(dockerfile, configuration))
    return result


def validate_commitish(commitish: str) -> str:
    if not _COMMITISH.fullmatch(commitish) or ".." in commitish:
        raise InvalidInput(f"invalid --git-commitish {commitish!r}: name a branch, tag or commit")
    return commitish
