"""The one place that decides which credentials go to which registry host.

For each host an engine call pulls from, at the moment of the call: the
credentials given with the deploy, else the app's ``*_PRIVATE_REGISTRY_*``
configuration (for ``FROM`` images), else the app's source for the host
(credentials a deploy stored are one), else the global source, else, for
images under the server's ``--image-registry`` prefix, that registry's
credentials, else none.
Credentials only ever go to their own host. When a registry rejects
credentials a fetching source gave, they are fetched once more, bypassing
the cache, and the call is tried once more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from dockyard.domain.building import configured_credentials, from_images
from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import CredentialsRejected
from dockyard.domain.images import ImageReference, built_repository
from dockyard.domain.registries import (
    Fetched,
    Source,
    SourceCredentialsRejected,
    SourceFailed,
)
from dockyard.registry.sources import Sources
from dockyard.services.context import Platform

T = TypeVar("T")
Log = Callable[[str], None]

GIVEN = "the credentials given with the deploy"
CONFIGURED = "the app's DOCKYARD_PRIVATE_REGISTRY_* configuration"
IMAGE_REGISTRY = "the server's --image-registry credentials"


def sources_of(platform: Platform) -> Sources:
    """The platform's cache of fetched credentials (one per server process)."""
    return platform.registry_sources


def _clock(at: datetime) -> str:
    return at.astimezone().strftime("%H:%M")


@dataclass(frozen=True)
class Resolved:
    """Credentials for one host and where they came from; never shows the secret."""

    host: str
    credentials: RegistryCredentials | None
    origin: str = ""
    source: Source | None = None
    fetched: Fetched | None = None

    @property
    def refetchable(self) -> bool:
        """Fetched credentials a registry may reject as expired: worth fetching again."""
        return self.source is not None and self.source.kind.fetches and self.credentials is not None

    def describe(self) -> str:
        """Which credentials, from where, fetched and expiring when; never the secret."""
        if self.credentials is None:
            if self.source is not None:
                return f"no credentials for {self.host}: its {self.source.label} has none"
            return f"no credentials for {self.host}"
        if self.origin == GIVEN:
            return f"the credentials given for {self.host}"
        if self.source is not None and self.source.from_deploy:
            return f"stored credentials for {self.host}"
        text = f"credentials for {self.host} from {self.origin}"
        if self.refetchable and self.fetched is not None:
            text += f", fetched {_clock(self.fetched.fetched_at)}"
            expires = self.fetched.expires_at
            if expires is not None and expires <= self.fetched.fetched_at:
                text += ", already expired (used once, not kept)"
            elif expires is not None:
                text += f", expire {_clock(expires)}"
        return text

    def phrase(self) -> str:
        """``describe`` after "with": "with stored credentials for HOST", "without ..."."""
        text = self.describe()
        return "without" + text[2:] if self.credentials is None else "with " + text


class Resolver:
    """Resolves credentials for one app's engine calls."""

    def __init__(self, platform: Platform, app_id: int | None) -> None:
        self.platform = platform
        self.app_id = app_id

    def source(self, host: str) -> Source | None:
        """The app's source for the host, else the global one."""
        store = self.platform.store
        if self.app_id is not None:
            found = store.source(self.app_id, host)
            if found is not None:
                return found
        return store.source(None, host)

    def fetch(self, source: Source, *, force: bool = False) -> Resolved:
        """What the source holds now (fetched, or from the cache unless ``force``)."""
        store = self.platform.store
        try:
            fetched, fresh = sources_of(self.platform).fetch(source, force=force)
        except SourceFailed as failed:
            if source.id:
                store.record_fetch(source.id, error=failed.detail)
            raise
        if fresh and source.id and source.kind.fetches:
            store.record_fetch(
                source.id, fetched_at=fetched.fetched_at, expires_at=fetched.expires_at
            )
        return Resolved(source.host, fetched.credentials, source.label, source, fetched)

    def for_host(
        self,
        host: str,
        *,
        given: RegistryCredentials | None = None,
        configured: RegistryCredentials | None = None,
        force: bool = False,
        image: str | None = None,
        deploying: str | None = None,
    ) -> Resolved:
        """``image``, when given, is what will be pulled (see ``--image-registry``).

        ``deploying`` names the app a user deploys ``image`` to: the server's
        own image-registry credentials then serve only that app's builds.
        """
        if given is not None and given.host == host:
            return Resolved(host, given, GIVEN)
        if configured is not None and configured.host == host:
            return Resolved(host, configured, CONFIGURED)
        source = self.source(host)
        if source is not None:
            return self.fetch(source, force=force)
        prefix = self.platform.image_registry
        own = self.platform.image_registry_credentials
        if image and prefix and own and own.host == host and image.startswith(prefix + "/"):
            mine = deploying is None or ImageReference.parse(image).name == built_repository(
                prefix, self.platform.installation, deploying
            )
            if mine:  # e.g. the images Swarm builds push
                return Resolved(host, own, IMAGE_REGISTRY)
        return Resolved(host, None)

    def for_build(
        self, dockerfile: str, configuration: Mapping[str, str], *, given: bool = False
    ) -> dict[str, Resolved]:
        """Credentials for every host the ``FROM`` lines name.

        With ``given``, the configuration's credentials came with the deploy.
        """
        configured = configured_credentials(dockerfile, configuration)
        found: dict[str, Resolved] = {}
        for host in sorted({image.host for image in from_images(dockerfile)}):
            if host in configured:
                found[host] = Resolved(host, configured[host], GIVEN if given else CONFIGURED)
            else:
                found[host] = self.for_host(host)
        return found

    def retrying(
        self,
        resolved: Mapping[str, Resolved],
        attempt: Callable[[Mapping[str, Resolved]], T],
        log: Log,
    ) -> tuple[T, dict[str, Resolved]]:
        """Run ``attempt``; if a registry rejects a fetching source's credentials,
        fetch them again (no cache) and run it once more.

        Returns its result and the credentials it last used.
        """
        current = dict(resolved)
        try:
            return attempt(current), current
        except CredentialsRejected as rejected:
            host = getattr(rejected, "host", None)
            again = [r for r in current.values() if r.refetchable and r.host == host] or [
                r for r in current.values() if r.refetchable and host is None
            ]
            if not again:
                raise
        for old in again:
            assert old.source is not None
            log(f"The registry {old.host} rejected the credentials from its {old.source.label}:")
            fresh = self.fetch(old.source, force=True)
            log(f"  fetched them again: {fresh.describe()}")
            current[old.host] = fresh
        try:
            return attempt(current), current
        except CredentialsRejected as rejected:
            host = getattr(rejected, "host", None)
            culprit = next((r for r in again if r.host == host), again[0])
            assert culprit.source is not None
            raise SourceCredentialsRejected(culprit.host, culprit.source.label) from None


def release_credentials_for(
    platform: Platform, app_id: int, host: str, log: Log | None = None, image: str | None = None
) -> RegistryCredentials | None:
    """What containers started now pull ``host``'s images (``image``) with.

    Where nodes pull (Swarm), Dockyard never sees a pull fail: credentials a
    source fetched are first shown to the registry (the image's manifest),
    and ones it rejects are fetched again, bypassing the cache, before any
    task gets them.
    """
    resolver = Resolver(platform, app_id)
    resolved = resolver.for_host(host, image=image)
    if image is not None and resolved.refetchable and platform.scheduler().pulls_on_nodes:
        reference = ImageReference.parse(image)
        images = platform.images()
        _, used = resolver.retrying(
            {host: resolved},
            lambda found: images.resolve(reference, found[host].credentials),
            log or (lambda _: None),
        )
        resolved = used[host]
    if log is not None and resolved.credentials is not None:
        log(f"Pulling {resolved.phrase()}")
    return resolved.credentials
