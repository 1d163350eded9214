"""Releases: an image pinned to a digest, a configuration version and services."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dockyard.domain.errors import InvalidInput

ROUTED_SERVICES = ("web", "cmd")
DEFAULT_SERVICE = "cmd"
PROCFILE_PATHS = ("/.dockyard/Procfile", "/.aptible/Procfile")
DEFAULT_HEALTHCHECK_TIMEOUT = 180
MAX_HEALTHCHECK_TIMEOUT = 900
# Services that serve no HTTP pass their check by staying up this long.
STAY_UP_SECONDS = 10.0

_SERVICE = re.compile(r"[a-z][a-z0-9_-]{0,29}")


class InvalidProcfile(InvalidInput):
    pass


@dataclass(frozen=True)
class Service:
    name: str
    command: str | None  # None: the image's own CMD

    @property
    def routed(self) -> bool:
        return self.name in ROUTED_SERVICES


def parse_procfile(text: str) -> list[Service]:
    """``name: command`` lines; blank lines and ``#`` comments are skipped."""
    services: dict[str, Service] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon or not _SERVICE.fullmatch(name) or not command:
            raise InvalidProcfile(
                f"Procfile line {number} is not 'name: command' with a lowercase name"
            )
        services[name] = Service(name, command)
    if not services:
        raise InvalidProcfile("the Procfile defines no services")
    return list(services.values())


def default_services() -> list[Service]:
    return [Service(DEFAULT_SERVICE, None)]


@dataclass(frozen=True)
class HealthCheck:
    timeout: float
    strict: bool

    @property
    def path(self) -> str:
        return "/healthcheck" if self.strict else "/"

    @classmethod
    def from_configuration(cls, values: Mapping[str, str]) -> HealthCheck:
        raw = values.get("RELEASE_HEALTHCHECK_TIMEOUT", str(DEFAULT_HEALTHCHECK_TIMEOUT))
        try:
            timeout = int(raw)
        except ValueError:
            timeout = -1
        if not 0 <= timeout <= MAX_HEALTHCHECK_TIMEOUT:
            raise InvalidInput(
                f"RELEASE_HEALTHCHECK_TIMEOUT must be a whole number of seconds "
                f"from 0 to {MAX_HEALTHCHECK_TIMEOUT}, not {raw!r}"
            )
        strict = values.get("STRICT_HEALTH_CHECKS", "").lower() in ("1", "true", "yes")
        return cls(timeout=float(timeout), strict=strict)


@dataclass(frozen=True)
class Release:
    id: int
    app_id: int
    image: str  # pinned: host/repo@sha256:...
    source: str  # as the user named it
    config_version: int
    services: tuple[Service, ...]
    status: str

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)
