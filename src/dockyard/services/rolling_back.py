"""Rollback: a past release's image and configuration together, as a new release.

It runs through the same roll-out as a deploy (release phase, start, health
check, switch, drain), with the registry credentials of now; the app's
configuration version becomes the past release's again.
"""

from __future__ import annotations

from dockyard.domain import records
from dockyard.domain.operations import OperationType
from dockyard.domain.releases import HealthCheck, rollback_target
from dockyard.services import apps
from dockyard.services.artifacts import release_commands_of, restore
from dockyard.services.context import Platform
from dockyard.services.deploying import roll_out
from dockyard.services.operations import start
from dockyard.services.running import OperationRun
from dockyard.services.watching import watch_release


def start_rollback(
    platform: Platform, user: records.User, handle: str, number: int | None
) -> records.Operation:
    """Queue a rollback to release ``number`` (default: the live one before the current).

    The target is chosen now, so the operation brings back the release the
    user was told about; it is checked again when the operation runs.
    """
    app = apps.find(platform, user, handle)
    releases = platform.store.releases(app.id)
    target = rollback_target(app.handle, releases, app.current_release_id, number)
    return start(platform, app, OperationType.ROLLBACK, {"release": target.number}, user)


def rollback(run: OperationRun) -> str:
    platform = run.platform
    store = platform.store
    app = run.app()
    payload = run.operation.payload
    number = int(payload["release"])
    if "watched" in payload:  # queued by the watch of a release (``watching``)
        watched = int(payload["watched_number"])
        run.log(f"Automatic rollback of release {watched}: {payload['reason']}")
        if app.current_release_id != int(payload["watched"]):
            run.log(f"Release {watched} is no longer the current release: nothing is rolled back")
            return f"nothing rolled back: release {watched} is no longer current"
    target = rollback_target(app.handle, store.releases(app.id), app.current_release_id, number)
    run.log(
        f"Rolling {app.handle} back to release {target.number}: {target.source_text()} "
        f"with configuration version {target.config_version}"
    )
    values = store.configuration(app.id, target.config_version).values
    health = HealthCheck.from_configuration(values)
    run.hold()
    credentials = restore(run, app, target)
    run.check_cancelled()
    release = store.create_release(
        app.id,
        image=target.image,
        source=target.source,
        config_version=target.config_version,
        services=list(target.services),
        operation_id=run.operation.id,
        kind=OperationType.ROLLBACK.value,
        git_ref=target.git_ref,
    )
    commands = release_commands_of(run, app, target)
    roll_out(run, app, release, values, health, credentials, release_commands=commands)
    version = store.activate_release(
        app.id, release.id, config=None, credentials=None, config_version=target.config_version
    )
    run.log(
        f"Release {release.number} (release {target.number} again) is live at "
        f"{platform.url(app.handle)}"
    )
    watch_release(run, release, values)
    return (
        f"release {release.number}: release {target.number} ({target.source_text()}) "
        f"with configuration version {version}"
    )
