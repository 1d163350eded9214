"""Each app on a Docker network of its own, made and removed by the runtime."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import docker

from tests.integration.gitpush import WorkingCopy
from tests.integration.registry import Registry
from tests.integration.servers import Server
from tests.integration.test_deploys import show
from tests.integration.test_git_deploys import _creds, remote, web


def test_apps_get_networks_of_their_own_under_the_test_pool(
    server: Server, registry: Registry, tmp_path: Path
) -> None:
    """Each app's network is made by the runtime, on the test engine's pools, and goes with it."""
    handles = ["net-a-" + os.urandom(3).hex(), "net-b-" + os.urandom(3).hex()]
    for handle in handles:
        assert server.cli("apps:create", handle).code == 0
        assert server.cli("config:set", "--app", handle, *_creds(registry)).code == 0
        work = WorkingCopy(tmp_path / handle, remote(server, handle))
        work.commit(web(registry, handle))
        assert work.push("main").code == 0
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        installation = server.installation()
        subnets = {}
        for handle in handles:
            (network,) = client.api.networks(names=[f"dy-{installation}-{handle}"])
            (config,) = network["IPAM"]["Config"]
            subnets[handle] = config["Subnet"]
            assert config["Subnet"].startswith("10.203."), config
            (container,) = show(server, handle)["containers"]
            assert container["address"].startswith(config["Subnet"].rsplit(".", 1)[0])
        assert len(set(subnets.values())) == 2
        gone = server.run("apps:deprovision", "--app", handles[0], "--confirm", handles[0])
        assert gone.code == 0, gone.text
        assert client.api.networks(names=[f"dy-{installation}-{handles[0]}"]) == []
        assert client.api.networks(names=[f"dy-{installation}-{handles[1]}"]) != []
        built = client.images.list(name=f"dockyard/{installation}/{handles[0]}")
        assert built == []
    finally:
        client.close()
    assert json.loads(server.cli("apps", "-o", "json").out)  # the other app stays


def test_no_5xx_and_no_failure_while_another_app_scales(
    server: Server, registry: Registry, tmp_path: Path
) -> None:
    """Containers that another operation removes mid-listing fail nothing."""
    scaling, restarting = ("scaling-" + os.urandom(3).hex(), "restarting-" + os.urandom(3).hex())
    for handle in (scaling, restarting):
        assert server.cli("apps:create", handle).code == 0
        assert server.cli("config:set", "--app", handle, *_creds(registry)).code == 0
        work = WorkingCopy(tmp_path / handle, remote(server, handle))
        work.commit(web(registry, handle))
        assert work.push("main").code == 0
    statuses: list[int] = []
    done = threading.Event()

    def read() -> None:
        with server.http() as http:
            while not done.is_set():
                for handle in (scaling, restarting):
                    statuses.append(http.get(f"/apps/{handle}").status_code)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        restarts = []

        def restart() -> None:
            for _ in range(4):
                restarts.append(server.run("restart", "--app", restarting))

        restarter = threading.Thread(target=restart)
        restarter.start()
        for count in ("3", "1", "3", "1"):
            scaled = server.run("apps:scale", "--app", scaling, "cmd", "--container-count", count)
            assert scaled.code == 0, scaled.text
        restarter.join()
    finally:
        done.set()
        reader.join()
    assert [r.code for r in restarts] == [0] * 4, [r.text for r in restarts if r.code]
    assert len(statuses) > 20
    assert set(statuses) == {200}, sorted(set(statuses))
