"""Releases: an image pinned to a digest, a configuration version and services.

Each app numbers its releases from 1; the numbers are what users see and
name (``releases``, ``rollback --release N``). The store's ids stay internal
(container labels, build tags).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from dockyard.domain.errors import DockyardError, InvalidInput, NotFound

ROUTED_SERVICES = ("web", "cmd")
DEFAULT_SERVICE = "cmd"
PROCFILE_PATHS = ("/.dockyard/Procfile", "/.aptible/Procfile")
DEFAULT_HEALTHCHECK_TIMEOUT = 180
MAX_HEALTHCHECK_TIMEOUT = 900
# Services that serve no HTTP pass their check by staying up this long.
STAY_UP_SECONDS = 10.0
# How long a release is watched once live, to roll it back if it crashes.
DEFAULT_WATCH_SECONDS = 60
MAX_WATCH_SECONDS = 3600

# A Procfile's ``release:`` line runs in the release phase (Heroku's spelling).
PROCFILE_RELEASE = "release"

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
    """``name: command`` lines; blank lines and ``#`` comments are skipped.

    A ``release:`` line is the release phase's (``procfile_release``), not a
    service: a Procfile with only that one runs the image's CMD as ``cmd``.
    """
    services = _procfile_entries(text)
    services.pop(PROCFILE_RELEASE, None)
    return list(services.values()) or default_services()


def procfile_release(text: str) -> str | None:
    """The command of the Procfile's ``release:`` line (Heroku's), if it has one."""
    found = _procfile_entries(text).get(PROCFILE_RELEASE)
    return found.command if found else None


def _procfile_entries(text: str) -> dict[str, Service]:
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
    return services


def default_services() -> list[Service]:
    return [Service(DEFAULT_SERVICE, None)]


@dataclass(frozen=True)
class HealthCheck:
    timeout: float
    strict: bool
    # Seconds the release is watched once live (0: not watched): see ``domain.watching``.
    watch: float = float(DEFAULT_WATCH_SECONDS)

    @property
    def path(self) -> str:
        return "/healthcheck" if self.strict else "/"

    @classmethod
    def from_configuration(cls, values: Mapping[str, str]) -> HealthCheck:
        timeout = _seconds(
            values,
            "RELEASE_HEALTHCHECK_TIMEOUT",
            DEFAULT_HEALTHCHECK_TIMEOUT,
            MAX_HEALTHCHECK_TIMEOUT,
        )
        watch = _seconds(values, "RELEASE_WATCH_SECONDS", DEFAULT_WATCH_SECONDS, MAX_WATCH_SECONDS)
        strict = values.get("STRICT_HEALTH_CHECKS", "").lower() in ("1", "true", "yes")
        return cls(timeout=float(timeout), strict=strict, watch=float(watch))


def _seconds(values: Mapping[str, str], key: str, default: int, maximum: int) -> int:
    raw = values.get(key, str(default))
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if not 0 <= seconds <= maximum:
        raise InvalidInput(
            f"{key} must be a whole number of seconds from 0 to {maximum}, not {raw!r}"
        )
    return seconds


# What made a release: the type of the operation that created it.
KINDS = ("deploy", "configure", "restart", "scale", "rollback")
# Statuses of a release that served: the current one is active.
LIVE = ("active", "retired")
# Built images are kept for at least the images of this many last releases.
KEPT_BUILDS = 10


@dataclass(frozen=True)
class Release:
    id: int
    app_id: int
    image: str  # pinned: host/repo@sha256:...
    source: str  # as the user named it
    config_version: int
    services: tuple[Service, ...]
    status: str  # pending, active, failed, retired
    number: int = 0  # the app's own numbering, from 1
    kind: str = "deploy"
    git_ref: str | None = None  # the branch pushed or the commitish deployed
    created_at: datetime | None = None
    created_by: str = ""

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def from_commit(self) -> bool:
        return self.source.startswith("git:")

    @property
    def local(self) -> bool:
        """Built on this engine and never pushed: the image is a local image id."""
        return self.image.startswith("sha256:")

    def source_text(self) -> str:
        """``git:<short sha> (ref)`` for a commit; an image reference as given."""
        if not self.source.startswith("git:"):
            return self.source
        text = "git:" + self.source[4:11]
        return f"{text} ({self.git_ref})" if self.git_ref else text

    def digest(self) -> str:
        """The image's digest (``sha256:...``): pinned in the reference, or the image id."""
        return self.image.rpartition("@")[2] if "@" in self.image else self.image


class ReleaseNotFound(NotFound):
    def __init__(self, handle: str, number: int) -> None:
        super().__init__(f"app {handle!r} has no release {number}")


class ReleaseImageGone(DockyardError):
    """A release's image cannot be had any more: pruned here, or deleted from its registry."""

    kind = "image_gone"

    def __init__(self, handle: str, release: Release, why: str) -> None:
        super().__init__(
            f"cannot roll {handle} back to release {release.number}: its image "
            f"{release.image} is gone ({why}); nothing was changed"
        )


def rollback_target(
    handle: str, releases: Sequence[Release], current_id: int | None, number: int | None
) -> Release:
    """The release a rollback brings back: ``number``, or the live one before the current.

    Refuses what cannot be rolled back to, each with its own message.
    """
    live = sorted((r for r in releases if r.live), key=lambda r: r.number)
    current = next((r for r in releases if r.id == current_id), None)
    if len(live) < 2 or current is None:
        count = "no release" if not live else "only one release"
        raise InvalidInput(
            f"app {handle!r} has {count}: a rollback needs an earlier release to go back to"
        )
    if number is None:
        earlier = [r for r in live if r.number < current.number]
        if not earlier:
            raise InvalidInput(
                f"app {handle!r} has no release before the current one ({current.number}): "
                "pass --release N"
            )
        return earlier[-1]
    target = next((r for r in releases if r.number == number), None)
    if target is None:
        raise ReleaseNotFound(handle, number)
    if target.id == current.id:
        raise InvalidInput(
            f"release {number} is the current release of {handle!r}: nothing to roll back to"
        )
    if not target.live:
        raise InvalidInput(
            f"release {number} of {handle!r} never served ({target.status}): "
            "only releases that went live can be rolled back to"
        )
    return target


def builds_to_keep(
    releases: Sequence[Release], current_id: int | None, count: int = KEPT_BUILDS
) -> set[int]:
    """Ids of the releases whose build tags stay, keeping their images.

    The images the last ``count`` releases that went live ran stay (those
    can be rolled back to; a restart or a rollback runs an older release's
    image), and the current one's: every tag of such an image is kept.
    ``releases`` newest first.
    """
    live = [r for r in releases if r.live]
    wanted = {r.image for r in live[:count] if r.from_commit}
    wanted |= {r.image for r in releases if r.id == current_id and r.from_commit}
    return {r.id for r in releases if r.from_commit and r.image in wanted}
