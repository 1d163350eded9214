"""The watch of a live release: when it is rolled back automatically."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dockyard.domain.containers import Container
from dockyard.domain.errors import InvalidInput
from dockyard.domain.releases import HealthCheck
from dockyard.domain.watching import UNHEALTHY_SECONDS, Watched, verdict

LIVE = Container(id="c1", app="web", release=7, service="web", index=0, port=5000, state="running")


def test_a_container_that_stays_up_and_answers_is_fine() -> None:
    watched, why = verdict(Watched(LIVE), LIVE, answered=True, at=3)
    assert why is None and watched == Watched(LIVE)


def test_a_restart_is_reason_to_roll_back() -> None:
    now = replace(LIVE, restarts=1)
    _, why = verdict(Watched(LIVE), now, answered=True, at=4.2)
    assert why == "web.1 was restarted by the runtime (1 time) 4 s after it went live"
    _, why = verdict(Watched(LIVE), replace(LIVE, restarts=3, exit_code=1), answered=True, at=9)
    assert why == (
        "web.1 was restarted by the runtime (3 times) 9 s after it went live; it last "
        "exited with status 1"
    )


def test_an_exit_is_reason_to_roll_back() -> None:
    now = replace(LIVE, state="restarting", exit_code=137)
    _, why = verdict(Watched(LIVE), now, answered=False, at=2)
    assert why == "web.1 exited (restarting) 2 s after it went live; it last exited with status 137"


def test_a_health_check_that_keeps_failing_is_reason_to_roll_back() -> None:
    watched, why = verdict(Watched(LIVE), LIVE, answered=False, at=10)
    assert why is None and watched.failing_since == 10
    watched, why = verdict(watched, LIVE, answered=False, at=10 + UNHEALTHY_SECONDS - 1)
    assert why is None
    # One answer in between starts the count again.
    recovered, why = verdict(watched, LIVE, answered=True, at=13)
    assert why is None and recovered.failing_since is None
    _, why = verdict(watched, LIVE, answered=False, at=10 + UNHEALTHY_SECONDS)
    assert why == "web.1 failed its health check for 5 s in a row, from 10 s after it went live"


def test_a_task_being_placed_again_is_waited_for() -> None:
    now = replace(LIVE, state="pending", address="")
    watched, why = verdict(Watched(LIVE), now, answered=False, at=5)
    assert why is None and watched.failing_since is None


def test_release_watch_seconds() -> None:
    assert HealthCheck.from_configuration({}).watch == 60
    assert HealthCheck.from_configuration({"RELEASE_WATCH_SECONDS": "0"}).watch == 0
    for bad in ("-1", "soon", "3601"):
        with pytest.raises(InvalidInput, match="RELEASE_WATCH_SECONDS must be a whole number"):
            HealthCheck.from_configuration({"RELEASE_WATCH_SECONDS": bad})
