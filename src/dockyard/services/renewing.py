"""Keep the registry credentials that running services hold for later pulls fresh.

On Swarm each node pulls when a task starts there (a drained or lost node, a
scale-up), with the credentials its service holds. For every live release
whose image host has a source, the resolver's current answer is sent to the
release's services (no task restarts) when nothing is known of what they
hold (server start, a new release), one pass before the answer held is due
for renewal (half an ECR token's lifetime, a helper's ``--cache-seconds``),
and right after a source is added or refreshed. An answer equal to the one
held is not sent again. A removed source's credentials are taken back from the
services (they get another source's, or none). What was sent is kept in memory
(``Platform.held_auth``): a server that starts knows nothing and sends again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from dockyard.domain.images import ImageReference
from dockyard.domain.registries import Held, SourceFailed
from dockyard.services.context import Platform
from dockyard.services.credentials import Resolver, sources_of

log = logging.getLogger("dockyard.credentials")


def renew(
    platform: Platform,
    *,
    margin: float = 0.0,
    host: str | None = None,
    app_id: int | None = None,
    changed: bool = False,
) -> list[str]:
    """One pass; ``changed``: ``host``'s source (``app_id``'s, or global) just changed.

    Returns what was done, one line per registry host.
    """
    scheduler = platform.scheduler()
    if not scheduler.pulls_on_nodes:
        return []
    store = platform.store
    now = sources_of(platform).clock()
    renewed: dict[str, int] = defaultdict(int)
    for handle, release in sorted(store.live_releases().items()):
        if release.image.startswith("sha256:"):
            continue  # built on the one engine there is: nothing pulls it
        image_host = ImageReference.parse(release.image).host
        if (host is not None and image_host != host) or app_id not in (None, release.app_id):
            continue
        key = (handle, release.id)
        held = platform.held_auth.get(key)
        due = held is not None and held.due(now, timedelta(seconds=margin))
        owed = changed or (held is not None and held.owed)
        if held is not None and not due and not owed:
            continue
        lock = platform.app_lock(handle)
        if not lock.acquire(blocking=False):
            if changed:  # its operation may have resolved the source before it changed
                platform.held_auth[key] = Held("", None, owed=True)
            continue
        try:
            if handle in store.busy_apps():
                if changed:
                    platform.held_auth[key] = Held("", None, owed=True)
                continue
            resolver = Resolver(platform, release.app_id)
            source = resolver.source(image_host)
            if source is None:
                if changed:  # removed: they get what is left for the host, maybe nothing
                    left = resolver.for_host(image_host, image=release.image).credentials
                    renewed[image_host] += scheduler.renew_credentials(handle, release.id, left)
                platform.held_auth[key] = Held("", None)  # a source added later says so
                continue
            try:
                # Due by time: the cache may still hold the answer that is due.
                resolved = resolver.fetch(source, force=due)
            except SourceFailed as failed:
                log.warning("renewing registry auth of %s: %s", handle, failed.message)
                continue
            fresh = Held.of(source, resolved.fetched)
            same = held is not None and not held.owed and fresh.digest == held.digest
            # A static source at start: it changes only by being added, which says so.
            unchanged_static = held is None and not source.kind.fetches and not changed
            if resolved.credentials is None or same or unchanged_static:
                platform.held_auth[key] = fresh
                continue
            renewed[image_host] += scheduler.renew_credentials(
                handle, release.id, resolved.credentials
            )
            platform.held_auth[key] = fresh
        finally:
            lock.release()
    done = [f"refreshed registry auth of {n} services for {h}" for h, n in renewed.items() if n]
    for line in done:
        log.info("%s", line)
    return done


def source_changed(platform: Platform, host: str, app_id: int | None) -> list[str]:
    """After ``registries:add``, ``:refresh`` or ``:remove``: send what the host's source
    holds now (after a removal: another source's, or none).

    Never fails the user's command: a runtime that cannot be reached now is
    renewed by a later pass.
    """
    try:
        return renew(platform, host=host, app_id=app_id, changed=True)
    except Exception as exc:  # the source is stored; a later pass retries
        log.warning("renewing registry auth for %s failed (%s); the next pass retries", host, exc)
        return []
