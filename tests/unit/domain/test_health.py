"""The health decision for one new container."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dockyard.domain.containers import Container
from dockyard.domain.health import WAIT, Verdict, judge
from dockyard.domain.releases import STAY_UP_SECONDS, HealthCheck

RUNNING = Container("c1", "web", 3, "cmd", 0, 5000, "running", "10.203.32.2")
LOOSE = HealthCheck(timeout=30, strict=False)
STRICT = HealthCheck(timeout=30, strict=True)


def never() -> int | None:
    raise AssertionError("probed when the answer decides nothing")


def test_gone_or_exited_fails_at_once() -> None:
    assert judge(None, routed=True, elapsed=0, health=LOOSE, probe=never) == Verdict(
        failure="exited (gone)"
    )
    exited = replace(RUNNING, state="exited")
    assert judge(exited, routed=False, elapsed=0, health=LOOSE, probe=never).failure == (
        "exited (exited)"
    )


@pytest.mark.parametrize(("code", "error", "failure"), [
    (3, "", "exited with code 3 (restarting)"),
    (127, "", "exited with code 127: its command was not found in the image (restarting)"),
    (137, "", "exited with code 137: killed (SIGKILL): out of memory, or stopped by force "
              "(restarting)"),
    (None, "No command specified", "could not run: the image has no CMD or ENTRYPOINT: set one "
     "in the Dockerfile, or give each service its command in a Procfile (restarting)"),
    (1, "task: non-zero exit (1)", "exited with code 1 (restarting)"),
    (None, "no suitable node", "could not run: no suitable node (restarting)"),
])  # fmt: skip
def test_an_exit_says_its_code_and_what_it_means(
    code: int | None, error: str, failure: str
) -> None:
    exited = replace(RUNNING, state="restarting", exit_code=code, error=error)
    assert judge(exited, routed=True, elapsed=0, health=LOOSE, probe=never).failure == failure


def test_starting_waits_until_the_timeout() -> None:
    pulling = replace(RUNNING, state="preparing")
    assert judge(pulling, routed=True, elapsed=29, health=LOOSE, probe=never) is WAIT
    assert judge(pulling, routed=True, elapsed=30, health=LOOSE, probe=never).failure == (
        "did not start within 30 s (preparing)"
    )


@pytest.mark.parametrize(("status", "health", "healthy"), [
    (200, LOOSE, True), (404, LOOSE, True), (500, LOOSE, True),
    (200, STRICT, True), (404, STRICT, False), (None, LOOSE, False),
])  # fmt: skip
def test_a_routed_container_is_healthy_once_it_answers(
    status: int | None, health: HealthCheck, healthy: bool
) -> None:
    verdict = judge(RUNNING, routed=True, elapsed=1, health=health, probe=lambda: status)
    assert verdict == (Verdict(healthy=True, note=f"answered HTTP {status}") if healthy else WAIT)


def test_a_routed_container_that_never_answers_fails_at_the_timeout() -> None:
    silent = judge(RUNNING, routed=True, elapsed=30, health=LOOSE, probe=lambda: None)
    assert silent.failure == "did not answer HTTP on 10.203.32.2:5000 within 30 s"
    wrong = judge(RUNNING, routed=True, elapsed=30, health=STRICT, probe=lambda: 503)
    assert wrong.failure == "answered 503 on /healthcheck, not 200"


def test_a_worker_is_healthy_once_it_stayed_up() -> None:
    assert judge(RUNNING, routed=False, elapsed=0, health=LOOSE, probe=never) is WAIT
    assert judge(
        RUNNING, routed=False, elapsed=STAY_UP_SECONDS, health=LOOSE, probe=never
    ) == Verdict(healthy=True, note="stayed up")


def test_a_wait_says_how_far_it_is() -> None:
    from dockyard.domain.health import waiting_note

    assert waiting_note(
        "web.1", routed=True, elapsed=12.4, health=HealthCheck(timeout=180, strict=False)
    ) == ("waiting for web.1 to answer HTTP on PORT: 12 s of 180 s")
    assert waiting_note("worker.2", routed=False, elapsed=5.2, health=LOOSE) == (
        f"waiting for worker.2 to stay up: 5 s of {STAY_UP_SECONDS:.0f} s"
    )
