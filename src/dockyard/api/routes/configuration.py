from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import (
    ConfigChangeIn,
    ConfigKeyPath,
    ConfigOut,
    ConfigValueOut,
    HandlePath,
    OperationOut,
)
from dockyard.domain.configuration import ConfigChange, is_secret
from dockyard.services import configuration

router = APIRouter(tags=["configuration"])


@router.get("/apps/{handle}/configuration", responses=responses(401, 404, 422))
def show(
    handle: HandlePath, platform: PlatformDep, user: CurrentUser, reveal: bool = False
) -> ConfigOut:
    config = configuration.current(platform, user, handle, reveal=reveal)
    return ConfigOut(
        version=config.version,
        values=config.values,
        masked=not reveal and any(is_secret(k) for k in config.values),
    )


@router.get("/apps/{handle}/configuration/{key}", responses=responses(401, 404, 422))
def get_value(
    handle: HandlePath,
    key: ConfigKeyPath,
    platform: PlatformDep,
    user: CurrentUser,
    reveal: bool = False,
) -> ConfigValueOut:
    value = configuration.get(platform, user, handle, key, reveal=reveal)
    return ConfigValueOut(key=key, value=value, masked=not reveal and is_secret(key))


@router.post(
    "/apps/{handle}/configuration", status_code=202, responses=responses(401, 404, 409, 413, 422)
)
def change(
    handle: HandlePath, body: ConfigChangeIn, platform: PlatformDep, user: CurrentUser
) -> OperationOut:
    requested = ConfigChange(set=body.set, unset=frozenset(body.unset))
    return OperationOut.of(configuration.change(platform, user, handle, requested))


@router.get("/apps/{handle}/configuration-versions", responses=responses(401, 404, 422))
def versions(handle: HandlePath, platform: PlatformDep, user: CurrentUser) -> list[int]:
    return configuration.history(platform, user, handle)
