"""Watching a release once it is live: the decision to roll it back automatically.

For ``RELEASE_WATCH_SECONDS`` (default 60, 0: off) after a deploy, rollback,
configuration change or restart switches the router, each routed container
of the new release is looked at, pass after pass. One that exited or was
restarted by its runtime, or whose health check keeps failing, is reason to
bring the previous release back. A container that is gone was removed on
purpose (a scale, another operation) and is no longer watched.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.domain.containers import Container

# A routed container whose health check fails this long in a row is unhealthy.
UNHEALTHY_SECONDS = 5.0
# The name an operation the platform starts by itself is started by.
SYSTEM_USER = "dockyard"


@dataclass(frozen=True)
class Watched:
    """A container as it was when its release went live, and its health since."""

    container: Container
    failing_since: float | None = None  # when its health check began to fail

    @property
    def name(self) -> str:
        return f"{self.container.service}.{self.container.index + 1}"


def verdict(
    watched: Watched, now: Container, *, answered: bool, at: float
) -> tuple[Watched, str | None]:
    """The container's watch after one look: its state now, and why to roll back (or None).

    ``answered``: whether its health check passed on this pass (asked only
    of a container that runs); ``at``: seconds since the release went live.
    """
    name, before = watched.name, watched.container
    if now.restarts > before.restarts:
        times = now.restarts - before.restarts
        return watched, (
            f"{name} was restarted by the runtime ({times} time{'s' if times > 1 else ''}) "
            f"{at:.0f} s after it went live" + _exit(now)
        )
    if not now.running and not now.starting:
        return watched, f"{name} exited ({now.state}) {at:.0f} s after it went live" + _exit(now)
    if now.starting or answered:
        return Watched(now), None
    since = watched.failing_since if watched.failing_since is not None else at
    if at - since >= UNHEALTHY_SECONDS:
        return watched, (
            f"{name} failed its health check for {at - since:.0f} s in a row, "
            f"from {since:.0f} s after it went live"
        )
    return Watched(now, since), None


def _exit(container: Container) -> str:
    if container.exit_code is None:
        return ""
    return f"; it last exited with status {container.exit_code}"
