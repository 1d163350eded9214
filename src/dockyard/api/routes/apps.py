from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import (
    AppDetail,
    AppIn,
    AppOut,
    ContainerOut,
    DeployIn,
    GrantIn,
    HandlePath,
    OperationOut,
    ReleaseOut,
    ScaleIn,
    TailLines,
    UserNamePath,
)
from dockyard.domain import records
from dockyard.domain.configuration import ConfigChange
from dockyard.services import apps, releases
from dockyard.services.context import Platform

router = APIRouter(tags=["apps"])


def _out(platform: Platform, app: records.App) -> AppOut:
    return AppOut(
        handle=app.handle,
        created_at=app.created_at,
        config_version=app.config_version,
        git_remote=platform.git_remote(app.handle),
    )


_APP_LIST = TypeAdapter(list[AppOut])


@router.get("/apps", response_model=list[AppOut], responses=responses(401))
async def list_apps(platform: PlatformDep, user: CurrentUser) -> Response:
    # The API's busiest read: served from bytes kept since the last write
    # when this process is the only writer, else one thread hop to the store.
    store = platform.store
    generation = store.generation
    cached = platform.app_lists.get(user.id)
    if store.single_writer and cached is not None and cached[0] == generation:
        return Response(cached[1], media_type="application/json")
    found = await run_in_threadpool(apps.list_visible, platform, user)
    body = _APP_LIST.dump_json([_out(platform, app) for app in found])
    if store.single_writer:
        platform.app_lists[user.id] = (generation, body)
    return Response(body, media_type="application/json")


@router.post("/apps", status_code=201, responses=responses(401, 409, 413, 422))
def create_app(body: AppIn, platform: PlatformDep, user: CurrentUser) -> AppOut:
    return _out(platform, apps.create(platform, user, body.handle))


@router.get("/apps/{handle}", responses=responses(401, 404, 422, 503))
def show_app(handle: HandlePath, platform: PlatformDep, user: CurrentUser) -> AppDetail:
    app = apps.find(platform, user, handle)
    now = releases.running(platform, app)
    release = now.release
    return AppDetail(
        **_out(platform, app).model_dump(),
        members=apps.members(platform, app),
        url=now.url,
        release=ReleaseOut(
            id=release.id,
            number=release.number,
            image=release.image,
            source=release.source,
            config_version=release.config_version,
            services=[s.name for s in release.services],
        )
        if release
        else None,
        containers=[
            ContainerOut(
                id=c.shown_id,
                service=c.service,
                index=c.index,
                release=c.release,
                release_number=now.numbers.get(c.release),
                address=c.address,
                port=c.port,
                state=c.state,
            )
            for c in now.containers
        ],
        registry_hosts=now.registry_hosts,
    )


@router.post("/apps/{handle}/deploy", status_code=202, responses=responses(401, 404, 409, 413, 422))
def deploy(
    handle: HandlePath, body: DeployIn, platform: PlatformDep, user: CurrentUser
) -> OperationOut:
    operation = releases.start_deploy(
        platform,
        user,
        handle,
        image=body.docker_image,
        username=body.private_registry_username,
        password=body.private_registry_password,
        change=ConfigChange(set=body.set, unset=frozenset(body.unset)),
        git_commitish=body.git_commitish,
    )
    return OperationOut.of(operation)


@router.post("/apps/{handle}/scale", status_code=202, responses=responses(401, 404, 409, 413, 422))
def scale(
    handle: HandlePath, body: ScaleIn, platform: PlatformDep, user: CurrentUser
) -> OperationOut:
    operation = releases.start_scale(platform, user, handle, body.service, body.container_count)
    return OperationOut.of(operation)


@router.get(
    "/apps/{handle}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}, **responses(401, 404, 422, 503)},
)
def app_logs(
    handle: HandlePath,
    platform: PlatformDep,
    user: CurrentUser,
    tail: TailLines = 100,
    follow: bool = False,
    timestamps: bool = False,
) -> StreamingResponse:
    """The containers' output as text lines, ``service.N | line``, in the order of their
    times (``timestamps``: each line starts with it); ``follow`` streams on."""
    lines = releases.logs(platform, user, handle, tail=tail, follow=follow, timestamps=timestamps)
    return StreamingResponse((line + "\n" for line in lines), media_type="text/plain")


@router.get("/nodes", responses=responses(401, 503))
def list_nodes(platform: PlatformDep, user: CurrentUser) -> list[dict[str, Any]]:
    """The hosts apps run on, with the tasks of your apps on each."""
    return releases.nodes(platform, user)


@router.post("/apps/{handle}/restart", status_code=202, responses=responses(401, 404, 409, 422))
def restart(handle: HandlePath, platform: PlatformDep, user: CurrentUser) -> OperationOut:
    return OperationOut.of(releases.start_restart(platform, user, handle))


@router.delete("/apps/{handle}", status_code=202, responses=responses(401, 404, 409, 422))
def deprovision_app(handle: HandlePath, platform: PlatformDep, user: CurrentUser) -> OperationOut:
    return OperationOut.of(apps.deprovision(platform, user, handle))


@router.post("/apps/{handle}/grants", status_code=204, responses=responses(401, 403, 404, 413, 422))
def grant(handle: HandlePath, body: GrantIn, platform: PlatformDep, user: CurrentUser) -> Response:
    apps.grant(platform, user, handle, body.user)
    return Response(status_code=204)


@router.delete(
    "/apps/{handle}/grants/{user_name}", status_code=204, responses=responses(401, 403, 404, 422)
)
def revoke(
    handle: HandlePath, user_name: UserNamePath, platform: PlatformDep, user: CurrentUser
) -> Response:
    apps.revoke(platform, user, handle, user_name)
    return Response(status_code=204)
