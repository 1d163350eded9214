"""The health decision for one new container, one pass at a time.

A deploy, restart or scale starts containers, then asks of each, every
pass, until all are healthy or one has failed: is it still there, has it
started, does it answer HTTP (routed services), or has it stayed up long
enough (the others)?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dockyard.domain.containers import Container
from dockyard.domain.refusals import describe_exit
from dockyard.domain.releases import STAY_UP_SECONDS, HealthCheck


@dataclass(frozen=True)
class Verdict:
    """``healthy``: stop watching it (``note`` says why); ``failure``: why it failed."""

    healthy: bool = False
    failure: str | None = None
    note: str = ""


WAIT = Verdict()


def judge(
    state: Container | None,
    *,
    routed: bool,
    elapsed: float,
    health: HealthCheck,
    probe: Callable[[], int | None],
) -> Verdict:
    """``state``: the container as the runtime lists it now (None: gone).

    ``probe`` asks the container over HTTP; it is called only when the
    answer decides something (a routed container that runs).
    """
    if state is None:
        return Verdict(failure="exited (gone)")
    if not (state.running or state.starting):
        return Verdict(failure=f"{describe_exit(state.exit_code, state.error)} ({state.state})")
    if state.starting:
        if elapsed >= health.timeout:
            return Verdict(failure=f"did not start within {health.timeout:.0f} s ({state.state})")
        return WAIT
    if not routed:
        return Verdict(healthy=True, note="stayed up") if elapsed >= STAY_UP_SECONDS else WAIT
    status = probe()
    if status is not None and (status == 200 or not health.strict):
        return Verdict(healthy=True, note=f"answered HTTP {status}")
    if elapsed < health.timeout:
        return WAIT
    if status is None:
        return Verdict(
            failure=f"did not answer HTTP on {state.upstream} within {health.timeout:.0f} s"
        )
    return Verdict(failure=f"answered {status} on {health.path}, not 200")


PROGRESS_SECONDS = 5.0  # how often a wait says how far it is


def waiting_note(name: str, *, routed: bool, elapsed: float, health: HealthCheck) -> str:
    """``waiting for web.1 to answer HTTP on PORT: 12 s of 180 s``, while it waits."""
    if routed:
        return (
            f"waiting for {name} to answer HTTP on PORT: {elapsed:.0f} s of {health.timeout:.0f} s"
        )
    return f"waiting for {name} to stay up: {elapsed:.0f} s of {STAY_UP_SECONDS:.0f} s"
