"""Container recovery: a container that dies on its own is started again, and said so.

Real servers on the test Docker engine: the app's process is killed inside its
container (as a crash or the kernel would), the engine starts the container
again, and the app's operations get one ``recover`` operation, started by
``dockyard``, naming the container and its exit status; a crash loop is told
once every two minutes, not at each crash. A container Dockyard stops (a
deploy's old ones) is no recovery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from tests.integration.registry import Registry, docker_client
from tests.integration.servers import Server
from tests.integration.test_deploys import credentials, deploy

LINE = "container recovery: cmd.1 exited with 137 (killed); it is started again"


def recoveries(server: Server, app: str) -> list[dict]:
    listed = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    return [o for o in listed if o["type"] == "recover"]


def kill_the_apps_process(app: str) -> None:
    client = docker_client()
    try:
        (container,) = client.containers.list(filters={"label": f"dockyard.app={app}"})
        # Its PID 1 is docker-init; the app (httpd) is its child, killed as the
        # kernel's OOM killer would: init then exits with 128 + 9.
        done = container.exec_run(["sh", "-c", "kill -9 $(pidof httpd)"])
        assert done.exit_code == 0, done.output
    finally:
        client.close()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_container_that_dies_is_started_again_and_told_once(
    server: Server, registry: Registry, app: str
) -> None:
    # No automatic rollback (issue 12): this test's crashes are the app's own.
    watch = "RELEASE_WATCH_SECONDS=0"
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry), watch).code == 0
    # A deploy's old container, stopped by Dockyard, is no recovery.
    assert deploy(server, app, registry.image("web:v2")).code == 0
    assert recoveries(server, app) == []

    kill_the_apps_process(app)
    wait_for(lambda: recoveries(server, app), "no recovery was recorded")
    (told,) = recoveries(server, app)
    assert told["status"] == "succeeded"
    assert told["created_by"] == "dockyard"
    assert told["message"] == LINE
    wait_for(lambda: served_or_none(server, app) == "hello-v2", "the app did not come back")

    # Again at once: a crash loop is told once every two minutes.
    kill_the_apps_process(app)
    wait_for(lambda: served_or_none(server, app) == "hello-v2", "the app did not come back")
    time.sleep(1)
    assert len(recoveries(server, app)) == 1


def served_or_none(server: Server, app: str) -> str | None:
    try:
        response = server.get(app, timeout=2)
    except httpx.HTTPError:  # not back yet
        return None
    return response.text.strip() if response.status_code == 200 else None
