from __future__ import annotations

from fastapi import APIRouter, Response

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.schemas import AppDetail, AppIn, AppOut, GrantIn, OperationOut
from dockyard.domain import records
from dockyard.services import apps
from dockyard.services.context import Platform

router = APIRouter(tags=["apps"])


def _out(platform: Platform, app: records.App) -> AppOut:
    return AppOut(
        handle=app.handle,
        created_at=app.created_at,
        config_version=app.config_version,
        git_remote=platform.git_remote(app.handle),
    )


@router.get("/apps")
def list_apps(platform: PlatformDep, user: CurrentUser) -> list[AppOut]:
    return [_out(platform, app) for app in apps.list_visible(platform, user)]


@router.post("/apps", status_code=201)
def create_app(body: AppIn, platform: PlatformDep, user: CurrentUser) -> AppOut:
    return _out(platform, apps.create(platform, user, body.handle))


@router.get("/apps/{handle}")
def show_app(handle: str, platform: PlatformDep, user: CurrentUser) -> AppDetail:
    app = apps.find(platform, user, handle)
    return AppDetail(**_out(platform, app).model_dump(), members=apps.members(platform, app))


@router.delete("/apps/{handle}", status_code=202)
def deprovision_app(handle: str, platform: PlatformDep, user: CurrentUser) -> OperationOut:
    return OperationOut.of(apps.deprovision(platform, user, handle))


@router.post("/apps/{handle}/grants", status_code=204)
def grant(handle: str, body: GrantIn, platform: PlatformDep, user: CurrentUser) -> Response:
    apps.grant(platform, user, handle, body.user)
    return Response(status_code=204)


@router.delete("/apps/{handle}/grants/{user_name}", status_code=204)
def revoke(handle: str, user_name: str, platform: PlatformDep, user: CurrentUser) -> Response:
    apps.revoke(platform, user, handle, user_name)
    return Response(status_code=204)
