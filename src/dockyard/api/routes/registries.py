"""Registry credential sources: ``/registries``; global ones for admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import (
    Handle,
    RegistryCheckIn,
    RegistryFetchOut,
    RegistryHost,
    RegistryRefreshIn,
    RegistryRemovedOut,
    RegistrySourceIn,
    RegistrySourceOut,
)
from dockyard.domain.registries import Source
from dockyard.services import registries
from dockyard.services.credentials import Resolved

router = APIRouter(tags=["registries"])

AppQuery = Annotated[Handle | None, Query(description="The app's handle; none: global sources")]
HostPath = Annotated[
    RegistryHost, Path(description="The registry host, e.g. registry.example.com:5000")
]

# Settings anyone who sees the source may read; the rest stays inside.
_SHOWN = ("username", "region", "role_arn", "endpoint_url", "helper", "cache_seconds")


def source_out(source: Source) -> RegistrySourceOut:
    settings = {k: v for k, v in source.settings.items() if k in _SHOWN}
    if source.kind.value == "aws-ecr":
        settings["aws_credentials"] = (
            "given keys" if "access_key_id" in source.secrets else "the server's own"
        )
    return RegistrySourceOut(
        host=source.host,
        kind=source.kind.value,
        scope="global" if source.app_id is None else "app",
        app=source.app_handle,
        settings=settings,
        created_by=source.created_by or ("a deploy" if source.from_deploy else ""),
        created_at=source.created_at,
        last_fetched_at=source.last_fetched_at,
        expires_at=source.expires_at,
        last_error=source.last_error,
        stored_by_deploy=source.from_deploy,
    )


def fetch_out(source: Source, resolved: Resolved | str, **extra: object) -> RegistryFetchOut:
    if isinstance(resolved, str):
        return RegistryFetchOut(
            source=source_out(source), fetched="", found=False, expires_at=None, error=resolved
        )
    fetched = resolved.fetched
    return RegistryFetchOut(
        source=source_out(source),
        fetched=resolved.describe(),
        found=resolved.credentials is not None,
        expires_at=fetched.expires_at if fetched else None,
        error="",
        **extra,
    )


@router.get("/registries", responses=responses(401, 403, 404, 422))
def list_sources(
    platform: PlatformDep, user: CurrentUser, app: AppQuery = None
) -> list[RegistrySourceOut]:
    return [source_out(s) for s in registries.list_sources(platform, user, app)]


@router.post("/registries", status_code=201, responses=responses(401, 403, 404, 413, 422))
def add_source(
    body: RegistrySourceIn, platform: PlatformDep, user: CurrentUser
) -> RegistryFetchOut:
    options = body.model_dump(exclude={"host", "app"})
    added = registries.add(platform, user, body.app, body.host, **options)
    return fetch_out(added.source, added.resolved, replaced=added.replaced)


@router.post("/registries/refresh", responses=responses(401, 403, 404, 413, 422, 502))
def refresh_sources(
    body: RegistryRefreshIn, platform: PlatformDep, user: CurrentUser
) -> list[RegistryFetchOut]:
    done = registries.refresh(platform, user, body.app, body.host)
    return [fetch_out(source, resolved) for source, resolved in done]


@router.post("/registries/{host}/test", responses=responses(401, 403, 404, 413, 422, 502, 503))
def test_source(
    host: HostPath, body: RegistryCheckIn, platform: PlatformDep, user: CurrentUser
) -> RegistryFetchOut:
    tested = registries.test(platform, user, body.app, host, body.image)
    source = tested.resolved.source
    assert source is not None
    return fetch_out(source, tested.resolved, checked=tested.checked)


@router.delete("/registries/{host}", responses=responses(401, 403, 404, 422))
def remove_source(
    host: HostPath, platform: PlatformDep, user: CurrentUser, app: AppQuery = None
) -> RegistryRemovedOut:
    removed = registries.remove(platform, user, app, host)
    return RegistryRemovedOut(source=source_out(removed.source), used_by=removed.used_by)
