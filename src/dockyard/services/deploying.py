"""Releases: start, check, switch the router, drain the old.

Every path that changes what runs — deploy, configuration change, restart,
scale, rollback — goes through ``switch_over``, so each gets the same health
check and the same guarantee: on any failure the new containers are removed
and the previous release keeps serving with its previous configuration. What
a deploy runs comes from ``artifacts``; scaling is in ``scaling``, rollback in
``rolling_back``. Deploys and rollbacks run the release phase
(``release_phase``) first, before any new container starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from dockyard.domain import records
from dockyard.domain.configuration import MASK, is_secret, process_environment
from dockyard.domain.containers import (
    Container,
    ContainerSpec,
    RegistryCredentials,
    Scheduler,
)
from dockyard.domain.errors import HealthCheckFailed, InvalidInput
from dockyard.domain.health import PROGRESS_SECONDS, judge, waiting_note
from dockyard.domain.images import ImageReference
from dockyard.domain.release_phase import ReleaseCommand
from dockyard.domain.releases import HealthCheck, Release, Service
from dockyard.services.artifacts import (
    Artifact,
    PendingServices,
    ServicesDiffer,
    build,
    keep_build,
    pull,
    release_commands_of,
)
from dockyard.services.configuration import change_from_payload
from dockyard.services.context import Platform
from dockyard.services.credentials import release_credentials_for
from dockyard.services.release_phase import run_release_phase
from dockyard.services.running import OperationRun
from dockyard.services.watching import watch_release

# How long requests already sent to containers being replaced may take.
DRAIN_TIMEOUT = 30.0
PROBE_INTERVAL = 0.02
LOG_LINES_ON_FAILURE = 20


class NeverDeployed(InvalidInput):
    def __init__(self, handle: str) -> None:
        super().__init__(
            f"app {handle!r} has never been deployed: pass --docker-image to deploy an image"
        )


def _given_credentials(payload: Mapping[str, Any], host: str) -> RegistryCredentials | None:
    username, password = payload.get("username"), payload.get("password")
    if username and password:
        return RegistryCredentials(host, str(username), str(password))
    return None


def deploy(run: OperationRun) -> str:
    """Deploy an image, a pushed commit or a commit named later, with config changes."""
    platform, payload = run.platform, run.operation.payload
    app = run.app()
    current = platform.store.get_release(app.current_release_id) if app.current_release_id else None
    change = change_from_payload(payload)
    values = change.apply(platform.store.configuration(app.id, app.config_version).values)
    if not change.empty:  # changes queued together may add up beyond the limits
        platform.limits.check_configuration(values)
    health = HealthCheck.from_configuration(values)
    if not change.empty:
        run.log(f"Configuration for this deploy: {change.summary()}")

    given: RegistryCredentials | None = None
    git = payload.get("git")
    git_ref: str | None = None
    if git:
        git_ref = git.get("branch") or git.get("commitish")
        # Credentials given with a git deploy are for the FROM registry, by the
        # same rule as the app's DOCKYARD_PRIVATE_REGISTRY_* (never its config).
        flags = {}
        if payload.get("username") and payload.get("password"):
            flags = {
                "DOCKYARD_PRIVATE_REGISTRY_USERNAME": str(payload["username"]),
                "DOCKYARD_PRIVATE_REGISTRY_PASSWORD": str(payload["password"]),
            }
        artifact, given = build(
            run, app, git["commit"], git.get("archive"), {**values, **flags}, bool(flags)
        )
    elif payload.get("image") or (current and not current.source.startswith("git:")):
        image = ImageReference.parse(str(payload.get("image") or (current and current.source)))
        given = _given_credentials(payload, image.host)
        artifact = pull(run, app, image, given)
    elif current is not None:
        run.log(f"Deploying {current.source_text()} again ({current.image})")
        commands = tuple(release_commands_of(run, app, current))
        artifact = Artifact(
            current.image, current.source, list(current.services), release_commands=commands
        )
        git_ref = current.git_ref
    else:
        raise NeverDeployed(app.handle)
    run.check_cancelled()

    def new_release(services: list[Service]) -> Release:
        return platform.store.create_release(
            app.id,
            image=artifact.image,
            source=artifact.source,
            config_version=app.config_version,
            services=services,
            operation_id=run.operation.id,
            kind=run.operation.type.value,
            git_ref=git_ref,
        )

    release = new_release(artifact.services)
    if artifact.source.startswith("git:"):
        keep_build(run, app, release)
    try:
        roll_out(
            run,
            app,
            release,
            values,
            health,
            artifact.credentials,
            artifact.pending,
            release_commands=artifact.release_commands,
        )
    except ServicesDiffer as differ:
        if differ.commands:
            # Swarm only: the nodes started the image while the manager read it.
            run.log(
                "The image has release commands: the containers started were removed before "
                "they served anything; the commands run first, then the image's services start"
            )
        else:
            run.log("The image's services differ from the ones started: starting the image's")
        release = new_release(differ.services)
        found = differ.commands
        roll_out(run, app, release, values, health, artifact.credentials, release_commands=found)
    version = platform.store.activate_release(
        app.id,
        release.id,
        config=None if change.empty else (values, run.operation.id),
        credentials=given,
    )
    if given is not None:
        run.log(f"Saved the credentials for {given.host} for later deploys of {app.handle}")
    run.log(f"Release {release.number} is live at {platform.url(app.handle)}")
    watch_release(run, release, values)
    return (
        f"release {release.number} ({release.source_text()}) with configuration version {version}"
    )


def restart_with(
    run: OperationRun, values: dict[str, str] | None, app: records.App | None = None
) -> Release | None:
    """Roll out the current release again, with ``values`` as its configuration.

    ``app`` may carry a new scale. Returns the new release, or None when the
    app has never been deployed.
    """
    platform = run.platform
    app = app or run.app()
    if app.current_release_id is None:
        return None
    current = platform.store.get_release(app.current_release_id)
    assert current is not None
    if values is None:
        values = platform.store.configuration(app.id, app.config_version).values
    health = HealthCheck.from_configuration(values)
    release = platform.store.create_release(
        app.id,
        image=current.image,
        source=current.source,
        config_version=app.config_version,
        services=list(current.services),
        operation_id=run.operation.id,
        kind=run.operation.type.value,
        git_ref=current.git_ref,
    )
    run.log(f"Restarting {app.handle} with release {release.number} ({current.image})")
    roll_out(run, app, release, values, health)
    return release


def release_credentials(
    platform: Platform,
    app_id: int,
    release: Release,
    log: Callable[[str], None] | None = None,
) -> RegistryCredentials | None:
    """What the registry a release's image comes from gets now (see ``credentials``)."""
    if release.image.startswith("sha256:"):
        return None  # built here: no registry to pull from
    host = ImageReference.parse(release.image).host
    return release_credentials_for(platform, app_id, host, log, image=release.image)


def start_containers(
    scheduler: Scheduler,
    handle: str,
    release: Release,
    service: Service,
    indexes: Sequence[int],
    values: Mapping[str, str],
    credentials: RegistryCredentials | None = None,
) -> list[Container]:
    """Start containers of a release's service, each on a port of its own."""
    spec = ContainerSpec(
        app=handle,
        release=release.id,
        service=service.name,
        image=release.image,
        command=service.command,
        environment=process_environment(values),
    )
    return scheduler.start(spec, indexes, credentials)


def roll_out(
    run: OperationRun,
    app: records.App,
    release: Release,
    values: Mapping[str, str],
    health: HealthCheck,
    credentials: RegistryCredentials | None = None,
    pending: PendingServices | None = None,
    *,
    release_commands: Sequence[ReleaseCommand] = (),
) -> None:
    """Replace everything the app runs with the release's containers.

    The release commands, if any (deploys and rollbacks), run first.
    """
    platform = run.platform
    credentials = credentials or release_credentials(platform, app.id, release, run.log)

    def failed() -> None:
        platform.store.fail_release(release.id)
        run.log(f"Removed the containers of release {release.number}; the previous release stays")

    try:
        run_release_phase(run, app, release, release_commands, values)
    except BaseException:
        platform.store.fail_release(release.id)
        raise

    switch_over(
        run,
        app,
        release,
        [(service, range(app.scale.get(service.name, 1))) for service in release.services],
        keep=[],
        retire=[c for c in platform.scheduler().containers(app.handle) if c.release != release.id],
        values=values,
        health=health,
        credentials=credentials,
        pending=pending,
        on_failure=failed,
    )


def switch_over(
    run: OperationRun,
    app: records.App,
    release: Release,
    starts: Sequence[tuple[Service, Sequence[int]]],
    *,
    keep: Sequence[Container],
    retire: Sequence[Container],
    values: Mapping[str, str],
    health: HealthCheck,
    credentials: RegistryCredentials | None,
    pending: PendingServices | None = None,
    on_failure: Callable[[], None] | None = None,
) -> list[tuple[Service, Container]]:
    """The one way what runs changes: start these, check them, switch, retire those.

    ``starts``: the release's services and the container indexes to start.
    The router then sends the app's traffic to the routed containers of
    ``keep`` and of those started; ``retire`` is drained and removed. On any
    failure before the switch the started containers are removed (then
    ``on_failure`` runs) and nothing else has changed.
    """
    platform = run.platform
    scheduler = platform.scheduler()
    started: list[tuple[Service, Container]] = []
    try:
        for service, indexes in starts:
            _start(run, app.handle, release, service, indexes, values, credentials, started)
        run.hold()
        _check_health(run, started, health, values, pending)
        if pending is not None:
            pending.check(wait=True)
        run.check_cancelled()
    except BaseException:
        scheduler.remove([c for _, c in started], grace=0)
        if on_failure is not None:
            on_failure()
        raise

    def routed(container: Container) -> bool:
        service = release.service(container.service)
        return service is not None and service.routed and container.release == release.id

    serving = [c.upstream for c in keep if routed(c)]
    serving += [c.upstream for service, c in started if service.routed]
    router = platform.router()
    if serving:
        router.route(app.handle, serving)
        run.log(
            f"Router: {platform.url(app.handle)} now goes to {len(serving)} container(s) "
            f"of release {release.number}"
        )
    elif app.handle in router.routes():
        # Still routed, to nothing: the router answers 503 saying so (404 is
        # for names no app has).
        router.route(app.handle, [])
        run.log(f"Router: nothing serves {platform.url(app.handle)} now (it answers 503)")
    if retire:
        _drain(run, [c.upstream for c in retire])
        scheduler.remove(retire)
        run.log(f"Stopped {len(retire)} container(s)")
    return started


def _start(
    run: OperationRun,
    handle: str,
    release: Release,
    service: Service,
    indexes: Sequence[int],
    values: Mapping[str, str],
    credentials: RegistryCredentials | None,
    started: list[tuple[Service, Container]],
) -> None:
    """Start containers of a service and add them to ``started``."""
    containers = start_containers(
        run.platform.scheduler(), handle, release, service, indexes, values, credentials
    )
    for container in containers:
        started.append((service, container))
        run.log(f"Started {service.name}.{container.index + 1} on {container.upstream}")


def _drain(run: OperationRun, upstreams: list[str]) -> None:
    if not run.platform.router().drain(upstreams, DRAIN_TIMEOUT):
        run.log(f"Requests to the old containers still ran after {DRAIN_TIMEOUT:.0f} s")


def _check_health(
    run: OperationRun,
    started: list[tuple[Service, Container]],
    health: HealthCheck,
    values: Mapping[str, str],
    pending: PendingServices | None = None,
) -> None:
    scheduler = run.platform.scheduler()
    probe = run.platform.probe
    begin = time.monotonic()
    waiting = {c.id: (s, c) for s, c in started}
    if any(s.routed for s, _ in started):
        run.log(
            f"Waiting up to {health.timeout:.0f} s for HTTP on {health.path}"
            + (" (status 200, STRICT_HEALTH_CHECKS)" if health.strict else "")
        )
    latest = {c.id: c for _, c in started}
    apps = {c.app for _, c in started}
    progress = begin + PROGRESS_SECONDS
    while waiting:
        run.check_cancelled()
        if pending is not None:  # a guess found wrong stops here, not at its timeout
            pending.check(wait=False)
        elapsed = time.monotonic() - begin
        # One listing a pass, rather than one inspection per container.
        now = {c.id: c for app in apps for c in scheduler.containers(app)}
        for container_id, (service, container) in list(waiting.items()):
            state = now.get(container_id)
            if state is not None:
                container = latest[container_id] = state  # Swarm may have placed it anew
            verdict = judge(
                state,
                routed=service.routed,
                elapsed=elapsed,
                health=health,
                probe=partial(probe, container.upstream, health.path),
            )
            if verdict.failure is not None:
                raise _failed(run, container, values, verdict.failure)
            if verdict.healthy:
                run.log(f"{service.name}.{container.index + 1} {verdict.note}")
                del waiting[container_id]
        if waiting and time.monotonic() >= progress:  # a line every few seconds
            progress += PROGRESS_SECONDS
            for service, container in waiting.values():
                name = f"{service.name}.{container.index + 1}"
                run.log(waiting_note(name, routed=service.routed, elapsed=elapsed, health=health))
        if waiting:
            time.sleep(PROBE_INTERVAL)
    started[:] = [(s, latest[c.id]) for s, c in started]


def _failed(
    run: OperationRun, container: Container, values: Mapping[str, str], why: str
) -> HealthCheckFailed:
    logs = run.platform.scheduler().logs(container.id, tail=LOG_LINES_ON_FAILURE)
    for key, value in values.items():  # an app may print its own secrets
        if is_secret(key) and value:
            logs = logs.replace(value, MASK)
    name = f"{container.service}.{container.index + 1}"
    run.log(f"{name} {why}; its last log lines:")
    for line in logs.splitlines()[-LOG_LINES_ON_FAILURE:]:
        run.log(f"  | {line}")
    return HealthCheckFailed(f"the new release failed its health check: {name} {why}")
