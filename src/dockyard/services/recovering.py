"""Container recovery, told in the app's operations as it happens.

A thread reads the scheduler's exits (containers that died on their own,
which the engine starts again) and records each as a ``recover`` operation
of the app, started by ``dockyard``, with one line: ``container recovery:
web.2 exited with 137 (out of memory); it is started again``. Only the
app's current release counts (a deploy's new containers that fail their
health check are that deploy's business), and each container is told at
most once every two minutes.
"""

from __future__ import annotations

import logging
import threading
import time

from dockyard.domain.recovery import Exit, Throttle, recovery_line
from dockyard.services.context import Platform
from dockyard.services.reconciling import reconcile_app
from dockyard.services.watching import SYSTEM

log = logging.getLogger("dockyard.recovery")


def record(platform: Platform, exit: Exit, throttle: Throttle, now: float) -> str | None:
    """Record the exit in the app's operations, if it is one to tell; the line told."""
    app = platform.store.find_app(exit.app, SYSTEM)
    if app is None or app.current_release_id != exit.release:
        return None
    if not throttle.allow(exit, now):
        return None
    line = recovery_line(exit)
    platform.store.record_recovery(app, line)
    return line


class Recoveries:
    """Follows the scheduler's exits in a thread of its own, until stopped."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._stopping = threading.Event()
        self._throttle = Throttle()
        self._thread = threading.Thread(target=self._loop, name="recoveries", daemon=True)
        # The containers waited for: a crash loop has one waiter, not one per crash.
        self._rerouting: set[tuple[str, str, int]] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                for exit in self.platform.scheduler().exits(self._stopping):
                    told = record(self.platform, exit, self._throttle, time.monotonic())
                    if told:
                        log.info("%s: %s", exit.app, told)
                    key = (exit.app, exit.service, exit.index)
                    with self._lock:
                        if key in self._rerouting:
                            continue
                        self._rerouting.add(key)
                    threading.Thread(
                        target=self._reroute, args=(exit, key), name="reroute", daemon=True
                    ).start()
                return
            except Exception as exc:
                log.warning("reading container exits failed (%s); again in 5 s", exc)
                self._stopping.wait(5)

    def _reroute(self, exit: Exit, key: tuple[str, str, int]) -> None:
        """Route the restarted container's address as soon as it has one."""
        try:
            scheduler = self.platform.scheduler()
            deadline = time.monotonic() + 30
            while not self._stopping.wait(0.2) and time.monotonic() < deadline:
                back = [
                    c
                    for c in scheduler.containers(exit.app)
                    if (c.service, c.index) == (exit.service, exit.index)
                    and c.running
                    and c.address
                ]
                if back:
                    for action in reconcile_app(self.platform, exit.app):
                        log.info("recovery: %s", action)
                    return
        finally:
            with self._lock:
                self._rerouting.discard(key)
