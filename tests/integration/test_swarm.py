"""The Swarm runtime on a real two-node swarm built on this machine.

``scripts/swarm.sh`` makes a second Docker host in a network namespace (a
veth pair, 10.203.0.1 <-> 10.203.0.2) joined to a swarm whose manager is an
engine of its own; the test registry is reachable from both at
10.203.0.1:5000. Traffic stays on loopback and that veth pair.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import swarm_options, swarm_settings
from tests.integration.gitpush import WEB_DOCKERFILE, WorkingCopy
from tests.integration.registry import (
    Registry,
    app_objects,
    engine_client,
    remove_swarm_services,
)
from tests.integration.servers import Server
from tests.integration.test_deploys import credentials, request_loop, served, show

pytestmark = pytest.mark.swarm

# The installations this module's servers ran: their services go at its end
# (another test session may be using the swarm too).
INSTALLATIONS: set[str] = set()


@pytest.fixture(scope="module")
def swarm(local_registry: Registry) -> Iterator[dict[str, str]]:
    yield swarm_settings()
    remove_swarm_services(INSTALLATIONS)


@pytest.fixture
def registry(local_registry: Registry) -> Registry:
    return local_registry


def swarm_server(registry: Registry, tmp_path: Path, *, image_registry: bool = True) -> Server:
    options = swarm_options(registry, image_registry=image_registry)
    server = Server(
        data_dir=tmp_path / "swarm-data",
        database_url=None,
        env={"DOCKYARD_RECONCILE_SECONDS": "1"},
        **options,  # type: ignore[arg-type]
    )
    server.start()
    INSTALLATIONS.add(server.installation() or "")
    return server


@pytest.fixture
def on_swarm(swarm: dict[str, str], registry: Registry, tmp_path: Path) -> Iterator[Server]:
    server = swarm_server(registry, tmp_path)
    yield server
    server.stop()


def image(swarm: dict[str, str], name: str) -> str:
    return f"{swarm['DOCKYARD_SWARM_REGISTRY']}/dockyard-test/{name}"


def addresses(server: Server, app: str) -> list[str]:
    return sorted(c["address"] for c in show(server, app)["containers"] if c["state"] == "running")


def on_both_nodes(server: Server, swarm: dict[str, str], registry: Registry, prefix: str) -> str:
    """A new app running web:v1 with 2 containers, one on each node."""
    app = prefix + uuid.uuid4().hex[:6]
    assert server.cli("apps:create", app).code == 0
    deployed = server.run(
        "deploy", "--app", app, "--docker-image", image(swarm, "web:v1"), *credentials(registry)
    )
    assert deployed.code == 0, deployed.text
    assert server.cli("apps:scale", "--app", app, "cmd", "--container-count", "2").code == 0
    return app


def test_direct_deploy_scaled_over_both_nodes(
    on_swarm: Server, swarm: dict[str, str], registry: Registry
) -> None:
    server, app = on_swarm, "web-" + uuid.uuid4().hex[:6]
    assert server.cli("apps:create", app).code == 0
    first = server.run(
        "deploy", "--app", app, "--docker-image", image(swarm, "web:v1"), *credentials(registry)
    )
    assert first.code == 0, first.text
    assert served(server, app) == "hello-v1"
    assert show(server, app)["release"]["image"].startswith(image(swarm, "web@sha256:"))

    scaled = server.run("apps:scale", "--app", app, "cmd", "--container-count", "2")
    assert scaled.code == 0, scaled.text
    nodes = swarm["DOCKYARD_SWARM_NODE_ADDRESSES"].split(",")
    assert addresses(server, app) == sorted(nodes)  # one task on each node
    seen = set()
    for _ in range(20):
        response = server.get(app, "/cgi-bin/env")
        assert response.status_code == 200
        seen |= {line for line in response.text.splitlines() if line.startswith("PORT=")}
    assert len(seen) == 2  # the router balances over both nodes
    # Each task shown with its own id, the one `docker service ps` shows.
    shown = [c["id"] for c in show(server, app)["containers"]]
    with engine_client("swarm") as client:
        tasks = {
            str(t["ID"])[:12]
            for service in app_objects("swarm", app)
            for t in client.api.tasks(filters={"service": service.id})
        }
    assert len(set(shown)) == 2 and set(shown) <= tasks, (shown, tasks)

    listed = json.loads(server.cli("nodes", "-o", "json").out)
    assert sorted(n["address"] for n in listed) == sorted(nodes)
    for node in listed:
        assert node["state"] == "ready"
        assert [t for t in node["tasks"] if t.startswith(app)] != []

    # No registry credential in any service's environment.
    services = app_objects("swarm", app)
    assert services != []
    for service in services:
        assert registry.password not in service.attrs
        assert service.labels["dockyard.release"].isdigit()

    # config:set restarts the app on the swarm, without a failed request.
    with request_loop(server, app) as outcomes:
        assert server.cli("config:set", "--app", app, "GREETING=swarm").code == 0
    assert set(outcomes) == {"200 hello-v1"}, outcomes
    assert "GREETING=swarm" in server.get(app, "/cgi-bin/env").text

    assert server.cli("apps:deprovision", "--app", app, "--confirm", app).code == 0
    assert server.get(app).status_code == 404


def test_rotated_password_fails_clearly_and_fresh_one_works(
    on_swarm: Server, swarm: dict[str, str], registry: Registry
) -> None:
    server, app = on_swarm, "rot-" + uuid.uuid4().hex[:6]
    assert server.cli("apps:create", app).code == 0
    with registry.temporary_user() as (user, password):
        first = server.run(
            "deploy",
            "--app",
            app,
            "--docker-image",
            image(swarm, "web:v1"),
            *credentials(registry, user, password),
        )
        assert first.code == 0, first.text
        registry.set_password(user, password + "-new")
        expired = server.run("deploy", "--app", app, "--docker-image", image(swarm, "web:v2"))
        assert expired.code == 7
        assert f"the registry {swarm['DOCKYARD_SWARM_REGISTRY']} rejected the credentials" in (
            expired.err
        )
        assert served(server, app) == "hello-v1"
        fresh = server.run(
            "deploy",
            "--app",
            app,
            "--docker-image",
            image(swarm, "web:v2"),
            *credentials(registry, user, password + "-new"),
        )
        assert fresh.code == 0, fresh.text
        assert served(server, app) == "hello-v2"


def test_draining_a_node_moves_its_task_without_failed_requests(
    on_swarm: Server, swarm: dict[str, str], registry: Registry
) -> None:
    server = on_swarm
    app = on_both_nodes(server, swarm, registry, "drain-")
    with engine_client("swarm") as client:
        (node2,) = [n for n in client.nodes.list() if n.attrs["Status"]["Addr"].endswith(".2")]
        try:
            with request_loop(server, app) as outcomes:
                node2.update({**node2.attrs["Spec"], "Availability": "drain"})
                deadline = time.monotonic() + 60
                manager = swarm["DOCKYARD_SWARM_REGISTRY"].split(":")[0]
                while addresses(server, app) != [manager] * 2:
                    assert time.monotonic() < deadline, show(server, app)["containers"]
                    time.sleep(0.5)
                time.sleep(2)  # the router follows the move
            assert set(outcomes) == {"200 hello-v1"}, outcomes
        finally:
            node2.reload()
            node2.update({**node2.attrs["Spec"], "Availability": "active"})


def test_git_push_reaches_every_node_through_the_image_registry(
    on_swarm: Server, swarm: dict[str, str], registry: Registry, tmp_path: Path
) -> None:
    server, app = on_swarm, "git-" + uuid.uuid4().hex[:6]
    assert server.cli("apps:create", app).code == 0
    config = [
        f"DOCKYARD_PRIVATE_REGISTRY_USERNAME={registry.user}",
        f"DOCKYARD_PRIVATE_REGISTRY_PASSWORD={registry.password}",
    ]
    assert server.cli("config:set", "--app", app, *config).code == 0
    base = f"{swarm['DOCKYARD_SWARM_REGISTRY']}/dockyard-test/busybox:latest"
    remote = f"http://x:{server.token}@127.0.0.1:{server.port}/git/{app}.git"
    repo = WorkingCopy(tmp_path / "work", remote)
    repo.commit({"Dockerfile": WEB_DOCKERFILE.format(base=base, content="swarm build")})
    pushed = repo.push("main")
    assert pushed.code == 0, pushed.output
    repository = f"10.203.0.1:5000/dockyard-builds/{server.installation()}/{app}"
    assert f"Pushing {repository}:" in pushed.output
    assert server.cli("apps:scale", "--app", app, "cmd", "--container-count", "2").code == 0
    assert len(set(addresses(server, app))) == 2
    assert served(server, app) == "swarm build"
    # The server's image-registry credentials serve no other app: another
    # team cannot deploy this app's build (what its Dockerfile baked in).
    built = show(server, app)["release"]["image"]
    assert built.startswith(repository + "@sha256:")
    other = "other-" + uuid.uuid4().hex[:6]
    assert server.cli("apps:create", other).code == 0
    stolen = server.run("deploy", "--app", other, "--docker-image", built)
    assert stolen.code == 7, stolen.text
    assert stolen.err.strip().endswith(
        "the registry 10.203.0.1:5000 requires credentials: pass --private-registry-username "
        "and --private-registry-password"
    ), stolen.err
    assert show(server, other)["release"] is None
    # The app itself may deploy its own build again, by its name.
    again = server.run("deploy", "--app", app, "--docker-image", built)
    assert again.code == 0, again.text


def test_git_push_without_image_registry_says_to_set_it(
    swarm: dict[str, str], registry: Registry, tmp_path: Path
) -> None:
    server = swarm_server(registry, tmp_path, image_registry=False)
    try:
        app = "noreg-" + uuid.uuid4().hex[:6]
        assert server.cli("apps:create", app).code == 0
        remote = f"http://x:{server.token}@127.0.0.1:{server.port}/git/{app}.git"
        repo = WorkingCopy(tmp_path / "work", remote)
        repo.commit({"Dockerfile": "FROM scratch\n"})
        pushed = repo.push("main")
        assert pushed.code != 0
        assert "start the server with --image-registry HOST/PREFIX" in pushed.output
    finally:
        server.stop()


def test_a_lost_node_has_its_task_replaced_and_requests_keep_succeeding(
    on_swarm: Server, swarm: dict[str, str], registry: Registry
) -> None:
    """Node2's engine stops (its containers with it): Swarm replaces the task."""
    server = on_swarm
    app = on_both_nodes(server, swarm, registry, "lost-")
    manager = swarm["DOCKYARD_SWARM_REGISTRY"].split(":")[0]
    assert len(set(addresses(server, app))) == 2
    pid = int(Path("/run/dockyard-test/node2.pid").read_text())
    try:
        with request_loop(server, app) as outcomes:
            time.sleep(1)
            lost_at = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 90
            while addresses(server, app) != [manager, manager]:
                assert time.monotonic() < deadline, show(server, app)["containers"]
                time.sleep(0.5)
            time.sleep(2)  # the router follows the move
        # A request that a task on the lost node was answering at that moment
        # is lost with it; every other request succeeds.
        timeline = outcomes.timeline
        failed = [(at - lost_at, what) for at, what in timeline if what != "200 hello-v1"]
        assert len(failed) <= 1 and all(0 <= at < 1 for at, _ in failed), failed
        assert len(timeline) - len(failed) > 100
        listed = json.loads(server.cli("nodes", "-o", "json").out)
        states = {n["address"]: n["state"] for n in listed}
        assert states[swarm["DOCKYARD_SWARM_NODE_ADDRESSES"].split(",")[1]] == "down"
    finally:
        swarm_settings.cache_clear()
        swarm_settings()  # scripts/swarm.sh starts node2 again and checks it is ready
