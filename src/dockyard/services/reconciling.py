"""Bring running containers and routes back to the apps' current releases.

Runs at server start (after interrupted operations are failed) and then
periodically: restarts containers that went missing, removes leftovers of
failed, old or deprovisioned releases, and reloads every route. Apps with an
operation running are left to that operation.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from dockyard.domain.configuration import process_environment
from dockyard.domain.containers import Container, ContainerSpec
from dockyard.services.context import Platform

log = logging.getLogger("dockyard.reconcile")


def reconcile(platform: Platform) -> list[str]:
    """Return what was changed, one line per action."""
    store, runtime, router = platform.store, platform.runtime(), platform.router()
    busy = store.busy_apps()
    live = store.live_releases()
    by_app: dict[str, list[Container]] = defaultdict(list)
    for container in runtime.containers():
        by_app[container.app].append(container)

    actions: list[str] = []
    routes: dict[str, list[int]] = {}
    for handle in sorted(set(by_app) | set(live)):
        containers = by_app.get(handle, [])
        if handle in busy:
            routes[handle] = router.routes().get(handle, [])
            continue
        release = live.get(handle)
        for container in containers:
            if release is None or container.release != release.id:
                runtime.remove(container.id, grace=0)
                actions.append(
                    f"removed leftover {container.app}.{container.service} "
                    f"(release {container.release})"
                )
        if release is None:
            continue
        app = store.find_app_by_id(release.app_id)
        if app is None:
            continue
        values = store.configuration(app.id, release.config_version).values
        current = {(c.service, c.index): c for c in containers if c.release == release.id}
        ports: list[int] = []
        for service in release.services:
            for index in range(app.scale.get(service.name, 1)):
                found = current.get((service.name, index))
                if found is None:
                    found = runtime.start(
                        ContainerSpec(
                            app=handle,
                            release=release.id,
                            service=service.name,
                            index=index,
                            image=release.image,
                            command=service.command,
                            environment=process_environment(values),
                            port=runtime.free_port(),
                        )
                    )
                    actions.append(f"restarted missing {handle}.{service.name}.{index + 1}")
                if service.routed:
                    ports.append(found.port)
            for (name, index), extra in current.items():
                if name == service.name and index >= app.scale.get(service.name, 1):
                    runtime.remove(extra.id)
                    actions.append(f"removed extra {handle}.{name}.{index + 1}")
        if ports:
            routes[handle] = ports
    router.replace_all(routes)
    for action in actions:
        log.info("reconcile: %s", action)
    return actions
