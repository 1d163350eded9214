"""Registry credential sources as users manage them: list, add, test, refresh, remove.

Global sources (no app) are for admins only; an app's are for those who
may see the app (others are told it does not exist, as for apps).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from dockyard.domain import records
from dockyard.domain.errors import Forbidden, ImageNotFound, InvalidInput
from dockyard.domain.images import ImageReference
from dockyard.domain.registries import (
    Source,
    SourceFailed,
    SourceKind,
    SourceNotFound,
    new_source,
    validate_host,
)
from dockyard.registry import credential_helpers
from dockyard.registry.sources import fetch_now
from dockyard.services import apps, renewing
from dockyard.services.context import Platform
from dockyard.services.credentials import Resolved, Resolver, sources_of

# An image no registry holds: resolving it checks a login without pulling.
_PROBE_REPOSITORY = "dockyard-credentials-check/none"


class GlobalSourcesForAdmins(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "registry sources for every app (no --app) need an admin token: "
            "pass --app for one of your apps"
        )


class ServerAwsForAdmins(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "an aws-ecr source without --aws-access-key-id uses the server's own AWS "
            "credentials: that needs an admin token; give the keys of your own AWS user"
        )


class HelperForAdmins(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "a credential-helper source runs a program on the server, with the server's own "
            "credentials: that needs an admin token; give a username and password instead"
        )


def _scope(platform: Platform, user: records.User, handle: str | None) -> records.App | None:
    if handle is None:
        if not user.is_admin:
            raise GlobalSourcesForAdmins()
        return None
    return apps.find(platform, user, handle)


def _scope_name(app: records.App | None) -> str:
    return "global" if app is None else f"app {app.handle}"


def list_sources(platform: Platform, user: records.User, handle: str | None) -> list[Source]:
    """The global sources; or an app's, with the global ones that serve it too."""
    app = _scope(platform, user, handle)
    if app is None:
        return platform.store.sources(None)
    own = platform.store.sources(app)
    hosts = {s.host for s in own}
    serving = [s for s in platform.store.sources(None) if s.host not in hosts]
    return sorted(own + serving, key=lambda s: (s.host, s.app_id is None))


@dataclass(frozen=True)
class Added:
    source: Source
    resolved: Resolved
    replaced: bool


def add(
    platform: Platform, user: records.User, handle: str | None, host: str, **options: Any
) -> Added:
    """Check, fetch once, then store: a source that cannot answer is not stored."""
    app = _scope(platform, user, handle)
    new = new_source(host, environ=os.environ, **options)
    server_aws = new.kind is SourceKind.AWS_ECR and "access_key_id" not in new.secrets
    if server_aws and not user.is_admin:
        raise ServerAwsForAdmins()
    if new.kind is SourceKind.CREDENTIAL_HELPER and not user.is_admin:
        raise HelperForAdmins()
    helper = new.settings.get("helper")
    if helper is not None and credential_helpers.program(helper) is None:
        raise InvalidInput(
            f"unknown credential helper {helper!r}: there is no docker-credential-{helper} "
            "on the server's PATH"
        )
    trial = Source(new.host, new.kind, app.id if app else None, new.settings, new.secrets)
    try:
        fetched = fetch_now(trial)
    except SourceFailed as failed:
        raise InvalidInput(f"{failed.message}; nothing was stored") from None
    replaced = platform.store.source(app.id if app else None, new.host) is not None
    source = platform.store.add_source(new, app, user.name)
    if source.kind.fetches:
        platform.store.record_fetch(
            source.id, fetched_at=fetched.fetched_at, expires_at=fetched.expires_at
        )
    cache = sources_of(platform)
    cache.forget()  # whatever an older source of the host gave
    cache.keep(source, fetched)
    renewing.source_changed(platform, source.host, source.app_id)  # running Swarm services
    return Added(
        source, Resolved(source.host, fetched.credentials, source.label, source, fetched), replaced
    )


def _find(platform: Platform, app: records.App | None, host: str) -> Source:
    host = validate_host(host)
    found = platform.store.source(app.id if app else None, host)
    if found is None:
        raise SourceNotFound(host, _scope_name(app))
    return found


@dataclass(frozen=True)
class Tested:
    resolved: Resolved
    checked: str  # what the registry said


def test(
    platform: Platform,
    user: records.User,
    handle: str | None,
    host: str,
    image: str | None = None,
) -> Tested:
    """Fetch now (no cache) and check the credentials against the registry.

    With an app, the source that serves its pulls from the host: its own, or
    the global one.
    """
    app = _scope(platform, user, handle)
    if app is None:
        source = _find(platform, None, host)
    else:
        found = Resolver(platform, app.id).source(validate_host(host))
        if found is None:
            raise SourceNotFound(validate_host(host), _scope_name(app))
        source = found
    reference = ImageReference.parse(image) if image else None
    if reference is not None and reference.host != source.host:
        raise InvalidInput(
            f"--image {image} is on {reference.host}, not {source.host}: credentials go only "
            "to their own host"
        )
    resolved = Resolver(platform, app.id if app else None).fetch(source, force=True)
    images = platform.images()
    if reference is not None:
        digest = reference.digest or images.resolve(reference, resolved.credentials)
        return Tested(resolved, f"{reference} resolves to {digest}")
    probe = ImageReference(source.host, _PROBE_REPOSITORY, "latest")
    # The registry letting us in and finding nothing means the login works.
    with contextlib.suppress(ImageNotFound):
        images.resolve(probe, resolved.credentials)
    return Tested(resolved, f"the registry {source.host} accepts the credentials")


def refresh(
    platform: Platform, user: records.User, handle: str | None, host: str | None
) -> list[tuple[Source, Resolved | str]]:
    """Fetch now, bypassing the cache: one source, or every source of the scope."""
    app = _scope(platform, user, handle)
    chosen = [_find(platform, app, host)] if host else platform.store.sources(app)
    resolver = Resolver(platform, app.id if app else None)
    done: list[tuple[Source, Resolved | str]] = []
    for source in chosen:
        if not source.kind.fetches:
            continue
        try:
            done.append((source, resolver.fetch(source, force=True)))
        except SourceFailed as failed:
            done.append((source, failed.message))
            continue
        renewing.source_changed(platform, source.host, source.app_id)
    return done


@dataclass(frozen=True)
class Removed:
    source: Source
    used_by: list[str]


def remove(platform: Platform, user: records.User, handle: str | None, host: str) -> Removed:
    """Remove a source; say which apps' current releases pull from its host."""
    app = _scope(platform, user, handle)
    source = _find(platform, app, host)
    used_by = platform.store.apps_pulling_from(source.host, app.id if app else None)
    platform.store.remove_source(app.id if app else None, source.host)
    sources_of(platform).forget(source)
    # Running Swarm services give up what it gave them.
    renewing.source_changed(platform, source.host, source.app_id)
    return Removed(source, used_by)
