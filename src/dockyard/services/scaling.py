"""Scaling one service of the current release up or down, through the same switch-over."""

from __future__ import annotations

from dataclasses import replace

from dockyard.domain import records
from dockyard.domain.errors import InvalidInput
from dockyard.domain.releases import HealthCheck, Release, Service
from dockyard.services.context import Platform
from dockyard.services.deploying import release_credentials, restart_with, switch_over
from dockyard.services.running import OperationRun

MAX_CONTAINERS = 32


def scale(run: OperationRun) -> str:
    """Start or stop containers of one service of the current release."""
    platform = run.platform
    app = run.app()
    service_name, count = str(run.operation.payload["service"]), int(run.operation.payload["count"])
    release = _current_release(platform, app)
    service = _service_of(app, release, service_name)
    scheduler = platform.scheduler()
    containers = sorted(
        (
            c
            for c in scheduler.containers(app.handle)
            if c.release == release.id and c.service == service.name
        ),
        key=lambda c: c.index,
    )
    run.log(f"Scaling {app.handle} {service.name} from {len(containers)} to {count}")
    scaled = replace(app, scale={**app.scale, service.name: count})
    if count < len(containers) and not scheduler.removes_chosen:
        return _scale_down_by_restart(run, scaled, service, count)
    values = platform.store.configuration(app.id, release.config_version).values
    switch_over(
        run,
        scaled,
        release,
        [(service, range(len(containers), count))],
        # Every other container of the release stays, routed as it is.
        keep=[
            c
            for c in scheduler.containers(app.handle)
            if c.release == release.id and c not in containers[count:]
        ],
        retire=containers[count:],
        values=values,
        health=HealthCheck.from_configuration(values),
        # At the moment of the scale: Swarm's new tasks may pull on any node.
        credentials=release_credentials(platform, app.id, release, run.log),
        on_failure=lambda: run.log("Removed the new containers; the app runs as before"),
    )
    platform.store.set_scale(app.id, dict(scaled.scale))
    return f"{service.name} runs {count} container(s)"


def _scale_down_by_restart(
    run: OperationRun, scaled: records.App, service: Service, count: int
) -> str:
    """Fewer containers on a runtime that picks which ones stop: replace them all.

    Stopping tasks Swarm picks would cut the requests they serve; a new set
    of ``count`` containers is started, checked and routed to first instead.
    """
    run.log(
        f"The runtime picks which containers stop when a service shrinks, so {scaled.handle} "
        f"restarts with {count} {service.name} container(s): no request is cut"
    )
    release = restart_with(run, None, scaled)
    assert release is not None
    run.platform.store.activate_release(scaled.id, release.id, config=None, credentials=None)
    run.platform.store.set_scale(scaled.id, dict(scaled.scale))
    return f"{service.name} runs {count} container(s) (release {release.number})"


def _current_release(platform: Platform, app: records.App) -> Release:
    release = platform.store.get_release(app.current_release_id) if app.current_release_id else None
    if release is None:
        raise InvalidInput(f"app {app.handle!r} has never been deployed: nothing to scale")
    return release


def _service_of(app: records.App, release: Release, name: str) -> Service:
    service = release.service(name)
    if service is None:
        names = ", ".join(s.name for s in release.services)
        raise InvalidInput(f"app {app.handle!r} has no service {name!r}; its services: {names}")
    return service


def check_scale(platform: Platform, app: records.App, service: str, count: int) -> None:
    """Refuse a bad scale request before it is queued."""
    if count < 0:
        raise InvalidInput(f"--container-count must be 0 or more, not {count}")
    if count > MAX_CONTAINERS:
        raise InvalidInput(f"--container-count must be at most {MAX_CONTAINERS}, not {count}")
    _service_of(app, _current_release(platform, app), service)
