"""What each kind of operation does once a worker has claimed it."""

from __future__ import annotations

from collections.abc import Callable

from dockyard.domain.errors import InvalidInput
from dockyard.domain.operations import OperationType
from dockyard.services.configuration import change_from_payload
from dockyard.services.deploying import deploy, restart_with
from dockyard.services.rolling_back import rollback
from dockyard.services.running import OperationRun
from dockyard.services.scaling import scale
from dockyard.services.watching import watch_release


def configure(run: OperationRun) -> str:
    store = run.platform.store
    app = run.app()
    change = change_from_payload(run.operation.payload)
    run.log(f"Updating the configuration of {app.handle}: {change.summary()}")
    run.hold()
    values = run.platform.limits.check_change(
        store.configuration(app.id, app.config_version).values, change
    )
    run.check_cancelled()
    release = restart_with(run, values)
    if release is None:
        version = store.save_configuration(app.id, values, run.operation.id)
    else:
        version = store.activate_release(
            app.id, release.id, config=(values, run.operation.id), credentials=None
        )
        watch_release(run, release, values)
    run.log(f"Configuration version {version} is now current")
    return f"configuration version {version}"


def restart(run: OperationRun) -> str:
    app = run.app()
    release = restart_with(run, None)
    if release is None:
        raise InvalidInput(f"app {app.handle!r} has never been deployed: nothing to restart")
    run.platform.store.activate_release(app.id, release.id, config=None, credentials=None)
    run.log(f"{app.handle} restarted with release {release.number}")
    store = run.platform.store
    watch_release(run, release, store.configuration(app.id, app.config_version).values)
    return f"release {release.number}"


def deprovision(run: OperationRun) -> str:
    platform = run.platform
    app = run.app()
    run.log(f"Deprovisioning {app.handle}")
    run.hold()
    run.check_cancelled()
    if platform.store.releases(app.id):
        platform.router().unroute(app.handle)
        scheduler = platform.scheduler()
        containers = scheduler.containers(app.handle)
        scheduler.remove(containers)
        run.log(f"Removed {len(containers)} container(s) and the route")
    platform.scheduler().forget(app.handle)
    images = platform.images()
    images.prune_tags(images.image_repository(app.handle), keep=set())
    platform.store.delete_app(app.id)
    if platform.repositories is not None:
        platform.repositories.remove(app.handle)
    run.log(
        f"{app.handle} is deprovisioned: its configuration, stored registry credentials, "
        "git repository, network, built images and grants are deleted"
    )
    return f"{app.handle} deprovisioned"


HANDLERS: dict[OperationType, Callable[[OperationRun], str]] = {
    OperationType.CONFIGURE: configure,
    OperationType.DEPLOY: deploy,
    OperationType.RESTART: restart,
    OperationType.SCALE: scale,
    OperationType.ROLLBACK: rollback,
    OperationType.DEPROVISION: deprovision,
}


def execute(run: OperationRun) -> str:
    """Run the operation; return its result message or raise why it failed."""
    return HANDLERS[run.operation.type](run)
