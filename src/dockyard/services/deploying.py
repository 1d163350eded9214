"""Releases: resolve, pull, start, check, switch the router, drain the old.

Every path that changes what runs — deploy, configuration change, restart —
goes through ``roll_out``, so each gets the same health check and the same
guarantee: on any failure the new containers are removed and the previous
release keeps serving with its previous configuration.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from dockyard.domain import records
from dockyard.domain.building import BuildFailed, from_images
from dockyard.domain.configuration import MASK, is_secret, process_environment
from dockyard.domain.containers import (
    Container,
    ContainerSpec,
    RegistryCredentials,
    Scheduler,
)
from dockyard.domain.errors import HealthCheckFailed, InvalidInput
from dockyard.domain.health import judge
from dockyard.domain.images import ImageReference
from dockyard.domain.releases import (
    PROCFILE_PATHS,
    HealthCheck,
    Release,
    Service,
    default_services,
    parse_procfile,
)
from dockyard.services.configuration import change_from_payload
from dockyard.services.context import Platform
from dockyard.services.credentials import GIVEN, Resolved, Resolver, release_credentials_for
from dockyard.services.running import OperationRun

# How long requests already sent to containers being replaced may take.
DRAIN_TIMEOUT = 30.0
PROBE_INTERVAL = 0.02
LOG_LINES_ON_FAILURE = 20
MAX_CONTAINERS = 32


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
    if git:
        # Credentials given with a git deploy are for the FROM registry, by the
        # same rule as the app's DOCKYARD_PRIVATE_REGISTRY_* (never its config).
        flags = {}
        if payload.get("username") and payload.get("password"):
            flags = {
                "DOCKYARD_PRIVATE_REGISTRY_USERNAME": str(payload["username"]),
                "DOCKYARD_PRIVATE_REGISTRY_PASSWORD": str(payload["password"]),
            }
        artifact, given = _build(
            run, app, git["commit"], git.get("archive"), {**values, **flags}, bool(flags)
        )
    elif payload.get("image") or (current and not current.source.startswith("git:")):
        image = ImageReference.parse(str(payload.get("image") or (current and current.source)))
        given = _given_credentials(payload, image.host)
        artifact = _pull(run, app, image, given)
    elif current is not None:
        run.log(f"Deploying {current.source} again ({current.image})")
        artifact = Artifact(current.image, current.source, list(current.services))
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
        )

    release = new_release(artifact.services)
    if artifact.source.startswith("git:"):
        _keep_build(run, app, release)
    try:
        roll_out(run, app, release, values, health, artifact.credentials, artifact.pending)
    except ServicesDiffer as differ:
        run.log("The image's services differ from the ones started: starting the image's")
        release = new_release(differ.services)
        roll_out(run, app, release, values, health, artifact.credentials)
    version = platform.store.activate_release(
        app.id,
        release.id,
        config=None if change.empty else (values, run.operation.id),
        credentials=given,
    )
    if given is not None:
        run.log(f"Saved the credentials for {given.host} for later deploys of {app.handle}")
    run.log(f"Release {release.id} is live at {platform.url(app.handle)}")
    return f"release {release.id} ({artifact.source}) with configuration version {version}"


@dataclass(frozen=True)
class Artifact:
    image: str  # what containers run: pinned digest or local image id
    source: str  # what the user named: an image reference or git:<commit>
    services: list[Service]  # or a guess, while ``pending`` reads the image's
    pending: PendingServices | None = None
    # What the image was pulled with, for the hosts that pull it again (Swarm nodes).
    credentials: RegistryCredentials | None = None


def _pull(
    run: OperationRun,
    app: records.App,
    image: ImageReference,
    given: RegistryCredentials | None,
) -> Artifact:
    platform = run.platform
    images = platform.images()
    resolver = Resolver(platform, app.id)
    resolved = {
        image.host: resolver.for_host(
            image.host, given=given, image=str(image), deploying=app.handle
        )
    }
    run.log(f"Resolving {image} ({resolved[image.host].phrase()})")
    digest, resolved = resolver.retrying(
        resolved,
        lambda found: image.digest or images.resolve(image, found[image.host].credentials),
        run.log,
    )
    pinned = image.pinned(digest)
    store = run.platform.store
    current = store.get_release(app.current_release_id) if app.current_release_id else None
    guess = list(current.services) if current else default_services()
    if platform.scheduler().pulls_on_nodes and all(s.routed for s in guess):
        # Only the Procfile needs the image here: read it while the nodes pull
        # and start the services the app ran last time (web or cmd only).
        run.log(f"Pulling {pinned} for its Procfile while the nodes start it")
        credentials = resolved[image.host].credentials
        later = _services_later(run, pinned, credentials, guess)
        return Artifact(str(pinned), str(image), guess, later, credentials)
    run.log(f"Pulling {pinned}")
    _, resolved = resolver.retrying(
        resolved, lambda found: images.pull(pinned, found[image.host].credentials), run.log
    )
    credentials = resolved[image.host].credentials
    return Artifact(str(pinned), str(image), _image_services(run, str(pinned)), None, credentials)


class ServicesDiffer(Exception):
    """The image's Procfile names other services than the ones started."""

    def __init__(self, services: list[Service]) -> None:
        super().__init__("the image's services differ from the ones started")
        self.services = services


@dataclass
class PendingServices:
    """The services of an image still being pulled, to compare with a guess."""

    future: Future[tuple[str, str] | None]
    run: OperationRun
    guess: list[Service]

    def check(self, *, wait: bool) -> None:
        """Raise ServicesDiffer once known to differ; with ``wait``, wait to know."""
        if not wait and not self.future.done():
            return
        services = _services_from(self.run, self.future.result())  # or the pull's error
        if [(s.name, s.command) for s in services] != [(s.name, s.command) for s in self.guess]:
            raise ServicesDiffer(services)


def _services_later(
    run: OperationRun,
    pinned: ImageReference,
    credentials: RegistryCredentials | None,
    guess: list[Service],
) -> PendingServices:
    images = run.platform.images()

    def pull_and_read() -> tuple[str, str] | None:
        images.pull(pinned, credentials)
        return images.read_first(str(pinned), PROCFILE_PATHS)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="procfile")
    future = executor.submit(pull_and_read)
    executor.shutdown(wait=False)
    return PendingServices(future, run, guess)


def _build(
    run: OperationRun,
    app: records.App,
    commit: str,
    archive: str | None,
    values: Mapping[str, str],
    keep_given: bool = False,
) -> tuple[Artifact, RegistryCredentials | None]:
    """Build the commit; also return the credentials given with it, to keep."""
    platform = run.platform
    context = Path(archive) if archive else platform.builds_dir / f"{run.operation.id}.tar"
    try:
        if archive is None:
            platform.builds_dir.mkdir(parents=True, exist_ok=True)
            platform.git().archive(app.handle, commit, context)
        files = _read_members(context, ("Dockerfile", "Procfile"))
        dockerfile = files.get("Dockerfile")
        if dockerfile is None:
            raise BuildFailed(
                f"commit {commit[:7]} has no Dockerfile at the root of the repository: "
                "add one, commit and push again"
            )
        resolver = Resolver(platform, app.id)
        resolved = resolver.for_build(dockerfile, values, given=keep_given)
        given = next((r.credentials for r in resolved.values() if r.origin == GIVEN), None)
        hosts = ", ".join(h for h, r in resolved.items() if r.credentials) or "none"
        run.log(f"Building commit {commit[:7]} (registry credentials for: {hosts})")
        for found in resolved.values():
            if found.credentials is not None or found.source is not None:
                run.log(f"  FROM images on {found.host}: {found.phrase()}")

        def build(found: Mapping[str, Resolved]) -> str:
            return platform.builder().build(
                context,
                app=app.handle,
                credentials={h: r.credentials for h, r in found.items() if r.credentials},
                from_images=from_images(dockerfile),
                timeout=platform.build_timeout,
                on_line=lambda line: run.log(f"  {line}"),
            )

        image_id, _ = resolver.retrying(resolved, build, run.log)
    finally:
        context.unlink(missing_ok=True)
    run.log(f"Built {image_id[:19]}")
    procfile = files.get("Procfile")
    if procfile is not None:
        services = parse_procfile(procfile)
        run.log("Services from the repository's Procfile: " + ", ".join(s.name for s in services))
    else:
        services = _image_services(run, image_id)
    return Artifact(image_id, f"git:{commit}", services), given


def _read_members(archive: Path, names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    with tarfile.open(archive) as tar:
        for name in names:
            try:
                member = tar.getmember(name)
            except KeyError:
                continue
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                found[name] = extracted.read(1_000_000).decode("utf-8", "replace")
    return found


def _keep_build(run: OperationRun, app: records.App, release: Release) -> None:
    """Tag the build ``dockyard/<installation>/<app>:<release>``; drop tags beyond the last few."""
    images = run.platform.images()
    repository = images.image_repository(app.handle)
    images.tag(release.image, repository, str(release.id))
    recent = [r for r in run.platform.store.releases(app.id) if r.source.startswith("git:")]
    keep = {str(r.id) for r in recent[: run.platform.kept_builds]} | {str(release.id)}
    if app.current_release_id is not None:
        keep.add(str(app.current_release_id))
    images.prune_tags(repository, keep)


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
    )
    run.log(f"Restarting {app.handle} with release {release.id} ({current.image})")
    roll_out(run, app, release, values, health)
    return release


def _image_services(run: OperationRun, image: str) -> list[Service]:
    return _services_from(run, run.platform.images().read_first(image, PROCFILE_PATHS))


def _services_from(run: OperationRun, found: tuple[str, str] | None) -> list[Service]:
    if found is None:
        run.log("No Procfile in the image: one service, cmd, runs the image's CMD")
        return default_services()
    path, text = found
    services = parse_procfile(text)
    run.log(f"Services from {path}: {', '.join(s.name for s in services)}")
    return services


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
) -> None:
    """Replace everything the app runs with the release's containers."""
    platform = run.platform
    credentials = credentials or release_credentials(platform, app.id, release, run.log)

    def failed() -> None:
        platform.store.fail_release(release.id)
        run.log(f"Removed the containers of release {release.id}; the previous release stays")

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
            f"of release {release.id}"
        )
    elif app.handle in router.routes():
        router.unroute(app.handle)
        run.log(f"Router: nothing serves {platform.url(app.handle)} now")
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
    return f"{service.name} runs {count} container(s) (release {release.id})"


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
