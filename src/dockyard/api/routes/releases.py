"""An app's releases, numbered from 1, and rollback to one of them."""

from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import (
    HandlePath,
    OperationOut,
    ReleaseDetail,
    ReleaseNumber,
    ReleaseSummary,
    RollbackIn,
)
from dockyard.services import releases, rolling_back

router = APIRouter(tags=["releases"])


@router.get("/apps/{handle}/releases", responses=responses(401, 404, 422))
def list_releases(
    handle: HandlePath, platform: PlatformDep, user: CurrentUser
) -> list[ReleaseSummary]:
    """Newest first; ``current`` marks the one serving."""
    app, found = releases.list_releases(platform, user, handle)
    return [ReleaseSummary.of(release, app.current_release_id) for release in found]


@router.get("/apps/{handle}/releases/{number}", responses=responses(401, 404, 422))
def show_release(
    handle: HandlePath,
    number: ReleaseNumber,
    platform: PlatformDep,
    user: CurrentUser,
    reveal: bool = False,
) -> ReleaseDetail:
    """One release with its configuration; every value is masked unless ``reveal``."""
    app, release, values = releases.show_release(platform, user, handle, number, reveal=reveal)
    return ReleaseDetail(
        **ReleaseSummary.of(release, app.current_release_id).model_dump(),
        services=[s.name for s in release.services],
        configuration=values,
        masked=not reveal and bool(values),
    )


@router.post(
    "/apps/{handle}/releases", status_code=202, responses=responses(401, 404, 409, 413, 422)
)
def rollback(
    handle: HandlePath, body: RollbackIn, platform: PlatformDep, user: CurrentUser
) -> OperationOut:
    """Roll back: a new release with release ``release``'s image and configuration
    (default: the live release before the current one), as a ``rollback`` operation.

    As Heroku's API makes a rollback: a new release from an old one."""
    return OperationOut.of(rolling_back.start_rollback(platform, user, handle, body.release))
