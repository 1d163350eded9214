"""What a deploy runs: an image pulled and pinned, or a commit built; its services
and its release commands.

The services come from the image's or repository's Procfile (else one,
``cmd``); the release commands from ``.dockyard.yml`` (or ``.aptible.yml``)
and the Procfile's ``release:`` line, at the repository's root for a commit
and in the image for an image. On Swarm a pulled image's files are read
while the first containers start, and a guess found wrong is corrected
(``ServicesDiffer``).
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dockyard.domain import records
from dockyard.domain.building import BuildFailed, from_images
from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import ImageNotFound
from dockyard.domain.images import ImageReference
from dockyard.domain.release_phase import CONFIG_FILES, IMAGE_CONFIG_PATHS, ReleaseCommand
from dockyard.domain.releases import (
    PROCFILE_PATHS,
    Release,
    ReleaseImageGone,
    Service,
    builds_to_keep,
    default_services,
    parse_procfile,
)
from dockyard.git.repositories import GitError
from dockyard.services.credentials import GIVEN, Resolved, Resolver
from dockyard.services.release_phase import commands_from, describe
from dockyard.services.running import OperationRun


@dataclass(frozen=True)
class Artifact:
    image: str  # what containers run: pinned digest or local image id
    source: str  # what the user named: an image reference or git:<commit>
    services: list[Service]  # or a guess, while ``pending`` reads the image's
    pending: PendingServices | None = None
    # What the image was pulled with, for the hosts that pull it again (Swarm nodes).
    credentials: RegistryCredentials | None = None
    # What the release phase runs before any container starts.
    release_commands: tuple[ReleaseCommand, ...] = ()


class ServicesDiffer(Exception):
    """The image's Procfile names other services than the ones started, or the
    image has release commands, which must run before any container starts."""

    def __init__(self, services: list[Service], commands: list[ReleaseCommand]) -> None:
        super().__init__("the image's services differ from the ones started")
        self.services = services
        self.commands = commands


# What a pulled image's files say: its Procfile, its .dockyard.yml (path, text).
ImageFiles = tuple[tuple[str, str] | None, tuple[str, str] | None]


@dataclass
class PendingServices:
    """The services of an image still being pulled, to compare with a guess."""

    future: Future[ImageFiles]
    run: OperationRun
    guess: list[Service]

    def check(self, *, wait: bool) -> None:
        """Raise ServicesDiffer once known to differ; with ``wait``, wait to know."""
        if not wait and not self.future.done():
            return
        procfile, config = self.future.result()  # or the pull's error
        commands = commands_from(config, procfile)
        services = services_from(self.run, procfile)
        guessed = [(s.name, s.command) for s in self.guess]
        if commands or [(s.name, s.command) for s in services] != guessed:
            raise ServicesDiffer(services, commands)


def pull(
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
        later = services_later(run, pinned, credentials, guess)
        return Artifact(str(pinned), str(image), guess, later, credentials)
    run.log(f"Pulling {pinned}")
    _, resolved = resolver.retrying(
        resolved, lambda found: images.pull(pinned, found[image.host].credentials), run.log
    )
    credentials = resolved[image.host].credentials
    services, commands = image_contents(run, str(pinned))
    return Artifact(str(pinned), str(image), services, None, credentials, tuple(commands))


def services_later(
    run: OperationRun,
    pinned: ImageReference,
    credentials: RegistryCredentials | None,
    guess: list[Service],
) -> PendingServices:
    images = run.platform.images()

    def pull_and_read() -> ImageFiles:
        images.pull(pinned, credentials)
        procfile, config = images.read_firsts(str(pinned), [PROCFILE_PATHS, IMAGE_CONFIG_PATHS])
        return procfile, config

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="procfile")
    future = executor.submit(pull_and_read)
    executor.shutdown(wait=False)
    return PendingServices(future, run, guess)


def build(
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
        files = read_members(context, ("Dockerfile", "Procfile", *CONFIG_FILES))
        dockerfile = files.get("Dockerfile")
        if dockerfile is None:
            raise BuildFailed(
                f"commit {commit[:7]} has no Dockerfile at the root of the repository: "
                "add one, commit and push again"
            )
        config = _first(files, CONFIG_FILES)
        commands_from(config, None)  # a malformed file fails before the build
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
    services, commands = _commit_contents(run, files, image_id)
    return Artifact(image_id, f"git:{commit}", services, release_commands=tuple(commands)), given


def _first(files: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    return next(((name, files[name]) for name in names if name in files), None)


def _commit_contents(
    run: OperationRun, files: Mapping[str, str], image: str, *, tell: bool = True
) -> tuple[list[Service], list[ReleaseCommand]]:
    """A commit's services and release commands: its Procfile, else the image's."""
    config = _first(files, CONFIG_FILES)
    procfile = files.get("Procfile")
    if procfile is None:
        found = run.platform.images().read_first(image, PROCFILE_PATHS)
        commands = commands_from(config, found)
        services = services_from(run, found) if tell else []
    else:
        commands = commands_from(config, ("Procfile", procfile))
        services = parse_procfile(procfile)
        if tell:
            names = ", ".join(s.name for s in services)
            run.log(f"Services from the repository's Procfile: {names}")
    _told(run, commands)
    return services, commands


def _told(run: OperationRun, commands: list[ReleaseCommand]) -> None:
    if commands:
        run.log(f"Release commands: {describe(commands)}")


def image_contents(
    run: OperationRun, image: str, *, tell: bool = True
) -> tuple[list[Service], list[ReleaseCommand]]:
    """An image's services and release commands, from its own files."""
    images = run.platform.images()
    procfile, config = images.read_firsts(image, [PROCFILE_PATHS, IMAGE_CONFIG_PATHS])
    commands = commands_from(config, procfile)
    services = services_from(run, procfile) if tell else []
    _told(run, commands)
    return services, commands


def release_commands_of(
    run: OperationRun, app: records.App, release: Release
) -> list[ReleaseCommand]:
    """What a past release's release phase runs when it is deployed again.

    Its commit's files (from the app's repository) or its image's, as they
    are: the release phase runs again, as on a deploy.
    """
    if not release.from_commit:
        return image_contents(run, release.image, tell=False)[1]
    platform = run.platform
    commit = release.source.removeprefix("git:")
    platform.builds_dir.mkdir(parents=True, exist_ok=True)
    context = platform.builds_dir / f"{run.operation.id}-release.tar"
    try:
        platform.git().archive(app.handle, commit, context)
        files = read_members(context, ("Procfile", *CONFIG_FILES))
    except GitError:
        run.log(f"Commit {commit[:7]} is not in the repository: only the image's Procfile counts")
        files = {}
    finally:
        context.unlink(missing_ok=True)
    return _commit_contents(run, files, release.image, tell=False)[1]


def read_members(archive: Path, names: tuple[str, ...]) -> dict[str, str]:
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


def keep_build(run: OperationRun, app: records.App, release: Release) -> None:
    """Tag the build ``dockyard/<installation>/<app>:<release id>``; drop tags no
    longer needed, keeping the images of the last releases for rollbacks."""
    images = run.platform.images()
    repository = images.image_repository(app.handle)
    images.tag(release.image, repository, str(release.id))
    releases = run.platform.store.releases(app.id)
    keep = builds_to_keep(releases, app.current_release_id, run.platform.kept_builds)
    images.prune_tags(repository, {str(found) for found in keep | {release.id}})


def restore(run: OperationRun, app: records.App, release: Release) -> RegistryCredentials | None:
    """Make a past release's image ready to run again; what its registry gets now.

    Credentials are resolved as of now, never copied from the past. An image
    that is gone — a build pruned here, a manifest deleted from its registry —
    fails naming the release, before anything changes.
    """
    platform = run.platform
    images = platform.images()
    if release.local:
        if not images.has_image(release.image):
            raise ReleaseImageGone(app.handle, release, "the built image was removed")
        run.log(f"The image of release {release.number} is still here ({release.image[:19]})")
        return None
    image = ImageReference.parse(release.image)
    resolver = Resolver(platform, app.id)
    resolved = {image.host: resolver.for_host(image.host, image=str(image), deploying=app.handle)}
    run.log(f"Pulling {image} ({resolved[image.host].phrase()})")

    def fetch(found: Mapping[str, Resolved]) -> None:
        # The registry is asked even when the engine holds the image: the
        # engine would not ask, and other hosts (Swarm nodes) pull from it.
        credentials = found[image.host].credentials
        images.resolve(image, credentials)
        images.pull(image, credentials)

    try:
        _, resolved = resolver.retrying(resolved, fetch, run.log)
    except ImageNotFound:
        raise ReleaseImageGone(
            app.handle, release, f"the registry {image.host} no longer has it"
        ) from None
    return resolved[image.host].credentials


def services_from(run: OperationRun, found: tuple[str, str] | None) -> list[Service]:
    if found is None:
        run.log("No Procfile in the image: one service, cmd, runs the image's CMD")
        return default_services()
    path, text = found
    services = parse_procfile(text)
    run.log(f"Services from {path}: {', '.join(s.name for s in services)}")
    return services
