"""Deploys and restarts as users ask for them, the app's releases, and what it runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.domain import records
from dockyard.domain.archives import check_archive
from dockyard.domain.building import validate_commitish
from dockyard.domain.configuration import MASK, ConfigChange
from dockyard.domain.containers import Container
from dockyard.domain.errors import InvalidInput
from dockyard.domain.images import ImageReference
from dockyard.domain.logs import without_time
from dockyard.domain.operations import OperationType
from dockyard.domain.releases import HealthCheck, Release, ReleaseNotFound
from dockyard.services import apps
from dockyard.services.context import Platform
from dockyard.services.deploying import NeverDeployed
from dockyard.services.operations import start
from dockyard.services.scaling import check_scale


def start_deploy(
    platform: Platform,
    user: records.User,
    handle: str,
    *,
    image: str | None,
    username: str | None,
    password: str | None,
    change: ConfigChange,
    git_commitish: str | None = None,
) -> records.Operation:
    app = apps.find(platform, user, handle)
    git = None
    if image is not None and git_commitish is not None:
        raise InvalidInput("pass --docker-image or --git-commitish, not both")
    if image is not None:
        ImageReference.parse(image)  # a malformed reference fails now, not in the queue
    elif git_commitish is not None:
        commit = platform.git().resolve(app.handle, validate_commitish(git_commitish))
        if commit is None:
            raise InvalidInput(
                f"{git_commitish!r} names no commit pushed to {app.handle}: push it first, "
                f"e.g. git push dockyard main:{git_commitish}"
            )
        git = {"commit": commit, "archive": None, "commitish": git_commitish}
    elif app.current_release_id is None:
        raise NeverDeployed(app.handle)
    HealthCheck.from_configuration(change.set)
    if not change.empty:
        platform.limits.check_change(platform.store.configuration(app.id).values, change)
    if bool(username) != bool(password):
        raise InvalidInput(
            "pass both --private-registry-username and --private-registry-password, or neither"
        )
    payload = {
        "image": image,
        "git": git,
        "username": username,
        "password": password,
        "set": dict(change.set),
        "unset": sorted(change.unset),
    }
    return start(platform, app, OperationType.DEPLOY, payload, user)


def git_push_target(
    platform: Platform, user: records.User, handle: str, commit: str
) -> records.App:
    """The app a pushed commit is for: checked before its archive is received."""
    app = apps.find(platform, user, handle)
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise InvalidInput(f"invalid commit {commit!r}")
    return app


def start_git_push(
    platform: Platform,
    user: records.User,
    handle: str,
    *,
    commit: str,
    branch: str,
    archive: Path,
) -> records.Operation:
    """Queue the deploy of a commit pushed to a deploying branch (from the git hook).

    ``archive`` is the commit's tree, a tar file (gzip allowed) in the builds
    directory. The queued operation owns it; if it is refused, it is removed.
    """
    try:
        app = git_push_target(platform, user, handle, commit)
        with archive.open("rb") as stream:
            check_archive(stream, platform.limits)
        git = {"commit": commit, "archive": str(archive), "branch": branch}
        payload: dict[str, Any] = {"image": None, "git": git, "set": {}, "unset": []}
        return start(platform, app, OperationType.DEPLOY, payload, user)
    except BaseException:
        archive.unlink(missing_ok=True)
        raise


def start_restart(platform: Platform, user: records.User, handle: str) -> records.Operation:
    app = apps.find(platform, user, handle)
    if app.current_release_id is None:
        raise InvalidInput(f"app {app.handle!r} has never been deployed: nothing to restart")
    return start(platform, app, OperationType.RESTART, {}, user)


def start_scale(
    platform: Platform, user: records.User, handle: str, service: str, count: int
) -> records.Operation:
    app = apps.find(platform, user, handle)
    check_scale(platform, app, service, count)
    return start(platform, app, OperationType.SCALE, {"service": service, "count": count}, user)


def list_releases(
    platform: Platform, user: records.User, handle: str
) -> tuple[records.App, list[Release]]:
    """The app's releases, newest first, and the app (which one is current)."""
    app = apps.find(platform, user, handle)
    return app, platform.store.releases(app.id)


def show_release(
    platform: Platform, user: records.User, handle: str, number: int, *, reveal: bool = False
) -> tuple[records.App, Release, dict[str, str]]:
    """One release and its configuration: every value masked unless ``reveal``."""
    app = apps.find(platform, user, handle)
    release = platform.store.release_by_number(app.id, number)
    if release is None:
        raise ReleaseNotFound(app.handle, number)
    values = platform.store.configuration(app.id, release.config_version).values
    if not reveal:
        values = dict.fromkeys(values, MASK)
    return app, release, values


@dataclass(frozen=True)
class Running:
    url: str
    release: Release | None
    containers: list[Container]
    registry_hosts: list[str]
    numbers: dict[int, int]  # the numbers of the releases the containers are of, by id


def running(platform: Platform, app: records.App) -> Running:
    release = None
    containers: list[Container] = []
    numbers: dict[int, int] = {}
    if app.current_release_id is not None:
        release = platform.store.get_release(app.current_release_id)
        containers = sorted(
            platform.scheduler().containers(app.handle),
            key=lambda c: (c.release, c.service, c.index),
        )
        numbers = {r.id: r.number for r in platform.store.releases(app.id)}
    return Running(
        url=platform.url(app.handle),
        release=release,
        containers=containers,
        # Hosts the app has credentials of its own for (a source, or stored by a deploy).
        registry_hosts=sorted({source.host for source in platform.store.sources(app)}),
        numbers=numbers,
    )


def logs(
    platform: Platform,
    user: records.User,
    handle: str,
    *,
    tail: int,
    follow: bool,
    timestamps: bool = False,
) -> Iterator[str]:
    """The containers' lines in the order of their times, which ``timestamps`` shows."""
    app = apps.find(platform, user, handle)
    if tail < 0:
        raise InvalidInput(f"--tail must be 0 or more, not {tail}")
    if app.current_release_id is None:
        raise InvalidInput(f"app {app.handle!r} has never been deployed: it has no logs")
    lines = platform.scheduler().app_logs(app.handle, tail, follow)
    return lines if timestamps else (without_time(line) for line in lines)


def nodes(platform: Platform, user: records.User) -> list[dict[str, Any]]:
    """The scheduler's nodes, each with the tasks of the user's apps placed on it."""
    visible = {app.handle for app in apps.list_visible(platform, user)}
    scheduler = platform.scheduler()
    containers = [c for c in scheduler.containers() if c.app in visible]
    found = []
    listed = scheduler.nodes()
    for node in listed:
        # One engine runs every container (at addresses of their own); on
        # Swarm a task is at its node's address.
        tasks = sorted(
            f"{c.app} {c.service}.{c.index + 1}"
            for c in containers
            if c.running and (len(listed) == 1 or c.address == node["address"])
        )
        found.append({**node, "tasks": tasks})
    return found
