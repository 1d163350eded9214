"""Scaling a service, and reading the containers' output."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

from tests.integration.registry import Registry
from tests.integration.servers import DOCKYARD, Server
from tests.integration.test_deploys import credentials, deploy, request_loop, show

ON_SWARM = True  # on Swarm, scaling down restarts with the new count (see scaling.scale)


def containers_seen(server: Server, app: str, requests: int = 20) -> set[tuple[str, str]]:
    """The containers that answered, told apart by host name and ``PORT``.

    Each container has its own host name (Swarm tasks on the host network
    share the node's, and differ by port).
    """
    seen = set()
    for _ in range(requests):
        response = server.get(app, "/cgi-bin/env")
        assert response.status_code == 200
        env = dict(line.split("=", 1) for line in response.text.splitlines() if "=" in line)
        seen.add((env["HOSTNAME"], env["PORT"]))
    return seen


def test_scale_up_and_down_without_dropping_requests(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    with request_loop(server, app) as outcomes:
        up = server.run("apps:scale", "--app", app, "cmd", "--container-count", "3")
        assert up.code == 0, up.text
        assert "Scaling" in up.out and "from 1 to 3" in up.out
        containers = show(server, app)["containers"]
        assert sorted(c["index"] for c in containers) == [0, 1, 2]
        assert len({(c["address"], c["port"]) for c in containers}) == 3
        assert len(containers_seen(server, app)) == 3  # the router balances over all three

        down = server.run("apps:scale", "--app", app, "cmd", "--container-count", "1")
        assert down.code == 0, down.text
    assert set(outcomes) == {"200 hello-v1"}, outcomes
    assert [c["index"] for c in show(server, app)["containers"]] == [0]

    # The count is kept: a restart runs as many containers as were asked for.
    assert server.cli("apps:scale", "--app", app, "cmd", "--container-count", "2").code == 0
    assert server.cli("restart", "--app", app).code == 0
    assert len(show(server, app)["containers"]) == 2
    assert len(containers_seen(server, app)) == 2
    printed = server.cli("logs", "--app", app, "--no-follow", "--tail", "5")
    assert printed.code == 0, printed.text
    prefixes = {line.split(" | ")[0] for line in printed.out.splitlines()}
    assert prefixes == {"cmd.1", "cmd.2"}


def test_bad_scale_requests_change_nothing(server: Server, registry: Registry, app: str) -> None:
    never = server.cli("apps:scale", "--app", app, "cmd", "--container-count", "2")
    assert never.code == 6
    assert never.err.strip() == f"Error: app {app!r} has never been deployed: nothing to scale"
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    before = show(server, app)
    operations = len(json.loads(server.cli("operations", "--app", app, "-o", "json").out))

    negative = server.cli("apps:scale", "--app", app, "cmd", "--container-count", "-1")
    assert negative.code == 6
    assert negative.err.strip() == "Error: --container-count must be 0 or more, not -1"
    unknown = server.cli("apps:scale", "--app", app, "worker", "--container-count", "1")
    assert unknown.code == 6
    assert unknown.err.strip() == (f"Error: app {app!r} has no service 'worker'; its services: cmd")
    assert show(server, app)["containers"] == before["containers"]
    after = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    assert len(after) == operations


def test_logs_show_and_follow_the_containers_output(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    port = show(server, app)["containers"][0]["port"]
    printed = server.cli("logs", "--app", app, "--no-follow", "--tail", "5")
    assert printed.code == 0, printed.text
    assert f"cmd.1 | starting on {port}" in printed.out.splitlines()

    assert deploy(server, app, registry.image("ticker:v1")).code == 0
    follower = subprocess.Popen(
        [DOCKYARD, "logs", "--app", app, "--tail", "1"],
        env=server.environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        second = follower.stdout.readline()  # written after the command started
    finally:
        follower.kill()
        follower.wait()
        assert follower.stdout is not None
        follower.stdout.close()
    assert first.startswith("cmd.1 | tick ")
    assert second.startswith("cmd.1 | tick ")
    assert int(second.split()[-1]) == int(first.split()[-1]) + 1


def test_logs_of_several_containers_are_merged_by_their_times(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("ticker:v1"), *credentials(registry)).code == 0
    scaled = server.cli("apps:scale", "--app", app, "cmd", "--container-count", "2")
    assert scaled.code == 0, scaled.text
    time.sleep(1.5)  # both tick a few times
    stamped = server.cli("logs", "--app", app, "--no-follow", "--tail", "4", "--timestamps")
    assert stamped.code == 0, stamped.text
    lines = [line for line in stamped.out.splitlines() if " | tick " in line]
    assert {line.split()[1] for line in lines} == {"cmd.1", "cmd.2"}, stamped.out
    times = [datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")) for line in lines]
    assert times == sorted(times), stamped.out  # one story, in order, not one per container
    assert all(abs((datetime.now(UTC) - t).total_seconds()) < 120 for t in times)
    plain = server.cli("logs", "--app", app, "--no-follow", "--tail", "2")
    assert plain.code == 0 and plain.out.splitlines()
    assert all(line.startswith(("cmd.1 | ", "cmd.2 | ")) for line in plain.out.splitlines())


def test_logs_of_a_never_deployed_app(server: Server, app: str) -> None:
    result = server.cli("logs", "--app", app)
    assert result.code == 6
    assert result.err.strip() == f"Error: app {app!r} has never been deployed: it has no logs"
