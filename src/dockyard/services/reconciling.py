"""Bring running containers and routes back to the apps' current releases.

Runs at server start (after interrupted operations are failed) and then
periodically: restarts containers that went missing, removes leftovers of
failed, old or deprovisioned releases, and reloads every route. Apps with an
operation running are left to that operation.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from dockyard.domain.containers import Container
from dockyard.domain.errors import DockyardError
from dockyard.domain.releases import Release
from dockyard.services import one_off
from dockyard.services.context import Platform
from dockyard.services.deploying import release_credentials, start_containers

log = logging.getLogger("dockyard.reconcile")


def reconcile(platform: Platform) -> list[str]:
    """Return what was changed, one line per action."""
    store, scheduler = platform.store, platform.scheduler()
    live = store.live_releases()
    by_app: dict[str, list[Container]] = defaultdict(list)
    for container in scheduler.containers():
        by_app[container.app].append(container)

    actions: list[str] = []
    router = platform.router()
    domains = store.domains()
    for handle in sorted(router.names()):
        if handle not in domains:  # removed by another process, or deprovisioned
            router.set_names(handle, [])
    for handle, names in sorted(domains.items()):
        if router.names().get(handle, []) != names:
            router.set_names(handle, names)
            actions.append(f"{handle} answers on {', '.join(names)}")
    for handle in sorted(set(by_app) | set(live) | set(router.routes())):
        actions += reconcile_app(platform, handle)
    actions += one_off.sweep(platform)
    for action in actions:
        log.info("reconcile: %s", action)
    return actions


def reconcile_app(platform: Platform, handle: str) -> list[str]:
    """Reconcile one app, unless an operation is changing it; what was changed.

    Also run when one of its containers was restarted by the engine: its new
    address (a restart may get another) is routed at once, not a pass later.
    """
    store = platform.store
    lock = platform.app_lock(handle)
    if not lock.acquire(blocking=False):
        return []  # an operation of this process is changing the app
    try:
        if handle in store.busy_apps():
            return []  # an operation of another process is
        # Read again under the lock: a deploy may have finished since the
        # first read, and its release must not be taken for a leftover.
        release = store.live_releases(handle).get(handle)
        try:
            return _reconcile_app(platform, handle, release)
        except DockyardError as exc:  # e.g. its registry source fails: others go on
            return [f"could not reconcile {handle}: {exc.message}"]
    finally:
        lock.release()


def _reconcile_app(platform: Platform, handle: str, release: Release | None) -> list[str]:
    store, scheduler, router = platform.store, platform.scheduler(), platform.router()
    actions = []
    containers = scheduler.containers(handle)
    leftovers = [c for c in containers if release is None or c.release != release.id]
    if leftovers:
        scheduler.remove(leftovers, grace=0)
        actions += [
            f"removed leftover {handle}.{c.service} (release {c.release})" for c in leftovers
        ]
    app = store.find_app_by_id(release.app_id) if release else None
    if release is None or app is None:
        if handle in router.routes():
            router.unroute(handle)
            actions.append(f"removed the route of {handle}")
        return actions

    values = store.configuration(app.id, release.config_version).values
    current = [c for c in containers if c.release == release.id]
    routed = set(router.routes().get(handle, []))
    upstreams: list[str] = []
    for service in release.services:
        wanted = app.scale.get(service.name, 1)
        mine = sorted((c for c in current if c.service == service.name), key=lambda c: c.index)
        if len(mine) < wanted:
            used = {c.index for c in mine}
            free = [i for i in range(wanted + len(mine)) if i not in used]
            mine += start_containers(
                scheduler,
                handle,
                release,
                service,
                free[: wanted - len(mine)],
                values,
                release_credentials(platform, app.id, release),
            )
            actions.append(f"restarted missing {handle}.{service.name} containers")
        elif len(mine) > wanted:
            scheduler.remove(mine[wanted:])
            actions.append(f"removed {len(mine) - wanted} extra {handle}.{service.name}")
            mine = mine[:wanted]
        if service.routed:
            # Tasks being moved have no address yet; restarting ones are routed
            # only when none runs, to let the router's retries find the first.
            running = [c for c in mine if c.running]
            candidates = running or [c for c in mine if c.address]
            # One not routed yet (a replaced Swarm task) joins once it answers:
            # running is not listening, and the router would send it requests.
            answering = [
                c
                for c in candidates
                if c.upstream in routed or platform.probe(c.upstream, "/") is not None
            ]
            upstreams += [c.upstream for c in answering or candidates]
    if sorted(upstreams) != router.routes().get(handle, []):
        router.route(handle, upstreams)  # none: it answers 503, the app exists
        actions.append(f"routed {handle} to {', '.join(sorted(upstreams)) or 'nothing'}")
    return actions
