"""Automatic rollback: watch a release once live; queue a rollback if it crashes.

After a deploy, rollback, configuration change or restart has made its
release current, a thread of the server looks at the release's routed
containers every ``WATCH_INTERVAL`` for ``RELEASE_WATCH_SECONDS`` (the
decision is ``domain.watching``). It stops as soon as another release is
current. When a container exits, is restarted or stays unhealthy, it
queues a ``rollback`` operation to the previous live release, started by
``dockyard``; the rollback checks again, when it runs, that the watched
release is still the current one. The watch lives in the server process
that ran the operation: a server that stops forgets it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from dockyard.domain import records
from dockyard.domain.containers import Container
from dockyard.domain.errors import DockyardError
from dockyard.domain.operations import OperationType
from dockyard.domain.releases import HealthCheck, Release, rollback_target
from dockyard.domain.watching import SYSTEM_USER, Watched, verdict
from dockyard.services.context import Platform
from dockyard.services.running import OperationRun

log = logging.getLogger("dockyard.watch")

WATCH_INTERVAL = 1.0

# Operations the platform starts by itself (no user row: created_by_id is NULL).
SYSTEM = records.User(
    id=0, name=SYSTEM_USER, is_admin=True, created_at=datetime(2026, 1, 1, tzinfo=UTC)
)


def watch_release(run: OperationRun, release: Release, values: Mapping[str, str]) -> None:
    """Watch the release just made current, in a thread of its own (if it is watched).

    ``values``: the configuration it runs with.
    """
    if run.operation.type is OperationType.ROLLBACK and run.operation.created_by == SYSTEM_USER:
        return  # an automatic rollback is not rolled back in turn
    platform = run.platform
    try:
        health = HealthCheck.from_configuration(values)
        if health.watch <= 0:
            return
        scheduler = platform.scheduler()
        routed = [
            found
            for c in scheduler.containers(run.operation.app_handle)
            if c.release == release.id
            and (service := release.service(c.service)) is not None
            and service.routed
            and (found := scheduler.inspect(c.id)) is not None
        ]
    except Exception as exc:  # the release is live: the operation succeeded all the same
        log.warning("not watching release %s of %s: %s", release.number, release.app_id, exc)
        run.log(
            f"Release {release.number} is not watched: {getattr(exc, 'message', 'internal error')}"
        )
        return
    if not routed:
        return
    run.log(
        f"Watching release {release.number} for {health.watch:.0f} s (RELEASE_WATCH_SECONDS): "
        "it is rolled back if a container exits, restarts or keeps failing its health check"
    )
    watcher = threading.Thread(
        target=_watch,
        args=(platform, run.operation.app_handle, release, health, routed),
        name=f"watch-{run.operation.app_handle}",
        daemon=True,
    )
    watcher.start()


def _watch(
    platform: Platform, handle: str, release: Release, health: HealthCheck, routed: list[Container]
) -> None:
    try:
        _look(platform, handle, release, health, {c.id: Watched(c) for c in routed})
    except Exception as exc:  # the server stopping closes the store under it, too
        log.warning("watching release %s of %s stopped: %s", release.number, handle, exc)


def _look(
    platform: Platform,
    handle: str,
    release: Release,
    health: HealthCheck,
    watching: dict[str, Watched],
) -> None:
    store, scheduler = platform.store, platform.scheduler()
    begin = time.monotonic()
    while watching and time.monotonic() - begin < health.watch:
        time.sleep(WATCH_INTERVAL)
        app = store.find_app_by_id(release.app_id)
        if app is None or app.current_release_id != release.id:
            return  # deprovisioned, or another release is current
        if _busy(platform, handle):
            continue  # what an operation stops (the next deploy's retiring) is no crash
        for container_id, watched in list(watching.items()):
            now = scheduler.inspect(container_id)
            if now is None:
                del watching[container_id]  # removed on purpose: a scale, an operation
                continue
            answered = now.running and (
                (status := platform.probe(now.upstream, health.path)) is not None
                and (status == 200 or not health.strict)
            )
            watching[container_id], why = verdict(
                watched, now, answered=answered, at=time.monotonic() - begin
            )
            if why is None:
                continue
            # An operation may have begun since the look above, and stopped it.
            app = store.find_app_by_id(release.app_id)
            if app is None or app.current_release_id != release.id:
                return
            if _busy(platform, handle):
                watching[container_id] = watched
                break
            _roll_back(platform, app, release, why, health)
            return


def _busy(platform: Platform, handle: str) -> bool:
    """Whether an operation changes the app's containers now (here, or in another server)."""
    return platform.app_lock(handle).locked() or handle in platform.store.busy_apps()


def _roll_back(
    platform: Platform, app: records.App, release: Release, why: str, health: HealthCheck
) -> None:
    store = platform.store
    try:
        target = rollback_target(app.handle, store.releases(app.id), release.id, None)
    except DockyardError as exc:
        log.warning(
            "release %s of %s: %s; no earlier release: %s",
            release.number,
            app.handle,
            why,
            exc.message,
        )
        return
    payload = {
        "release": target.number,
        "watched": release.id,
        "watched_number": release.number,
        "reason": f"{why} (watched for {health.watch:.0f} s, RELEASE_WATCH_SECONDS)",
    }
    operation = store.enqueue(app, OperationType.ROLLBACK, payload, SYSTEM)
    platform.events.operation_queued()
    log.warning(
        "release %s of %s: %s; queued operation %s to roll back to release %s",
        release.number,
        app.handle,
        why,
        operation.id,
        target.number,
    )
