"""Swarm services keep fresh registry auth: a task rescheduled after a rotation pulls.

A credential-helper source answers with a user of the test registry; the
test rotates the registry's password and the helper's answer together (the
old password is gone from htpasswd, so the old auth really fails). Dockyard
notices the new answer by itself and renews the services' auth without
restarting their tasks; draining node2 then moves its task to the manager,
which no longer has the image and must pull it with the fresh credentials.
A restarted server sends the source's answer once more, restarting nothing.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import swarm_options, swarm_settings
from tests.integration.registry import (
    WEB,
    Registry,
    docker_client,
    engine_client,
    remove_swarm_services,
)
from tests.integration.servers import Server
from tests.integration.test_deploys import served, show
from tests.integration.test_registry_sources import answering, login

pytestmark = pytest.mark.swarm
REFRESHED = re.compile(
    r"^(\S+ \S+),\d+ INFO dockyard\.credentials: "
    r"refreshed registry auth of (\d+) services for (\S+)$",
    re.MULTILINE,
)


@pytest.fixture
def server(local_registry: Registry, tmp_path: Path) -> Iterator[Server]:
    """A swarm server of its own (its services only are removed), helpers on its PATH."""
    swarm_settings()
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    server = Server(
        data_dir=tmp_path / "data",
        database_url=None,
        env={
            "PATH": f"{helpers}:{os.environ.get('PATH', '')}",
            "DOCKYARD_RECONCILE_SECONDS": "1",
        },
        **swarm_options(local_registry),  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        installation = server.installation()
        server.stop()
        if installation:
            remove_swarm_services({installation})


def push_fresh_image(registry: Registry, content: str) -> str:
    """An image no engine has pulled yet; returns its repository on the test registry."""
    repository = registry.image(f"fresh-{uuid.uuid4().hex[:8]}")
    dockerfile = WEB.replace("ARG CONTENT", f"ARG CONTENT={content}").format(
        base=registry.base_image
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        archive.addfile(info, io.BytesIO(dockerfile.encode()))
    context.seek(0)
    client = docker_client()
    auth = {"username": registry.user, "password": registry.password}
    try:
        client.images.build(fileobj=context, custom_context=True, tag=f"{repository}:v1", rm=True)
        for line in client.images.push(
            repository, tag="v1", auth_config=auth, stream=True, decode=True
        ):
            assert "error" not in line, line
        client.images.remove(f"{repository}:v1", force=True)
    finally:
        client.close()
    return repository


def refreshes(server: Server) -> list[tuple[datetime, int, str]]:
    return [
        (datetime.strptime(at, "%Y-%m-%d %H:%M:%S"), int(n), host)
        for at, n, host in REFRESHED.findall(server.log())
    ]


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.5)


def running_tasks(client: docker.DockerClient, service_id: str) -> dict[str, str]:
    """Task id -> node id of the service's running tasks."""
    tasks = client.api.tasks(filters={"service": service_id, "desired-state": "running"})
    return {t["ID"]: t["NodeID"] for t in tasks if t["Status"]["State"] == "running"}


def test_rotated_source_is_renewed_in_place_and_a_drained_task_pulls_with_it(
    server: Server, local_registry: Registry, tmp_path: Path
) -> None:
    swarm = swarm_settings()
    host = swarm["DOCKYARD_SWARM_REGISTRY"]
    manager_address, node2_address = swarm["DOCKYARD_SWARM_NODE_ADDRESSES"].split(",")
    content = "fresh-" + uuid.uuid4().hex[:6]
    repository = push_fresh_image(local_registry, content).replace(local_registry.host, host, 1)
    app = "renew-" + uuid.uuid4().hex[:6]
    answer = tmp_path / "answer.json"
    helpers = Path(server.env["PATH"].split(":")[0])
    with (
        local_registry.temporary_user() as (user, old),
        engine_client("swarm") as client,
    ):
        new = old + "-rotated"
        answer.write_text(login(user, old))
        name = answering(helpers, answer)
        assert server.cli("apps:create", app).code == 0
        added = server.cli(
            "registries:add",
            host,
            "--app",
            app,
            "--credential-helper",
            name,
            "--cache-seconds",
            "2",
        )
        assert added.code == 0, added.text
        nodes = {n.attrs["Status"]["Addr"]: n for n in client.nodes.list()}
        manager, node2 = nodes[manager_address], nodes[node2_address]
        # The task must run on node2: a release started while the previous one
        # still runs on the manager lands there (Swarm prefers the node with
        # fewer tasks). Changing the service's constraints instead would leave
        # its task differing from it, and the next update would replace it.
        for _ in range(4):
            deployed = server.run("deploy", "--app", app, "--docker-image", f"{repository}:v1")
            assert deployed.code == 0, deployed.text
            assert "from credential-helper source (app)" in deployed.out + deployed.err
            [service] = client.services.list(filters={"label": f"dockyard.app={app}"})
            if list(running_tasks(client, service.id).values()) == [node2.id]:
                break
        assert list(running_tasks(client, service.id).values()) == [node2.id]
        pinned = show(server, app)["release"]["image"]

        # The manager forgets the image: the task drained to it must pull.
        def forgotten() -> bool:
            try:
                client.images.remove(client.images.get(pinned).id, force=True)
            except docker.errors.ImageNotFound:
                return True
            except docker.errors.APIError:  # a stopping task still uses it
                return False
            return False

        wait_for(forgotten)

        # Whatever Dockyard renewed after the deploy has settled.
        deadline = time.monotonic() + 30
        while True:
            seen = len(refreshes(server))
            time.sleep(3)
            if len(refreshes(server)) == seen or time.monotonic() > deadline:
                break
        before = running_tasks(client, service.id)
        assert list(before.values()) == [node2.id]
        spec_before = client.api.inspect_service(service.id)

        # Rotate: the registry drops the old password, the helper answers the new one.
        local_registry.set_password(user, new)
        rotated_at = datetime.now().replace(microsecond=0)
        answer.write_text(login(user, new))
        deadline = time.monotonic() + 30
        while not [r for r in refreshes(server) if r[0] >= rotated_at]:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # a pass that fetched just before the rotation is followed by another
        after = [r for r in refreshes(server) if r[0] >= rotated_at]
        assert after[-1][1:] == (1, host)

        # No task was restarted by the renewal; the spec is the same.
        assert running_tasks(client, service.id) == before
        spec_after = client.api.inspect_service(service.id)
        assert spec_after["Spec"] == spec_before["Spec"]
        assert spec_after["Spec"]["TaskTemplate"].get("ForceUpdate", 0) == (
            spec_before["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
        )
        assert spec_after["Version"]["Index"] > spec_before["Version"]["Index"]

        drained_at = int(time.time()) - 1
        try:
            node2.update({**node2.attrs["Spec"], "Availability": "drain"})
            deadline = time.monotonic() + 90
            while True:
                containers = show(server, app)["containers"]
                if [(c["address"], c["state"]) for c in containers] == [
                    (manager_address, "running")
                ]:
                    break
                assert time.monotonic() < deadline, (
                    containers,
                    client.api.tasks(filters={"service": service.id}),
                )
                time.sleep(0.5)
        finally:
            node2.reload()
            node2.update({**node2.attrs["Spec"], "Availability": "active"})
        moved = running_tasks(client, service.id)
        assert list(moved.values()) == [manager.id] and set(moved) != set(before)
        # The manager pulled the image: only the new password could let it.
        pulls = client.api.events(
            since=drained_at,
            until=int(time.time()) + 1,
            filters={"type": "image", "event": "pull"},
            decode=True,
        )
        assert pinned in [event.get("id") for event in pulls]
        time.sleep(2)  # the router follows the move
        assert served(server, app) == content

        # A restarted server knows nothing of what the services hold: it sends
        # the source's answer once, at start, and no task restarts.
        running = running_tasks(client, service.id)
        count = len(refreshes(server))
        server.stop(router=False)
        server.start()
        wait_for(lambda: len(refreshes(server)) > count, timeout=30)
        assert refreshes(server)[-1][1:] == (1, host)
        assert running_tasks(client, service.id) == running

        # A scale sends the source's answer of that moment, and says so.
        scaled = server.run("apps:scale", "--app", app, "cmd", "--container-count", "2")
        assert scaled.code == 0, scaled.text
        assert f"Pulling with credentials for {host} from credential-helper source (app)" in (
            scaled.out + scaled.err
        )

        # Swarm keeps the auth out of what it shows; Dockyard's log has no secret.
        inspected = json.dumps(client.api.inspect_service(service.id)) + json.dumps(
            client.api.tasks(filters={"service": service.id})
        )
        for secret in (old, new):
            assert secret not in inspected
            assert secret not in server.log()

        # Removing the source takes its credentials back from the services
        # (nothing else serves the host: they get none), restarting nothing.
        wait_for(lambda: len(running_tasks(client, service.id)) == 2)
        running = running_tasks(client, service.id)
        version = client.api.inspect_service(service.id)["Version"]["Index"]
        count = len(refreshes(server))
        removed = server.cli("registries:remove", host, "--app", app)
        assert removed.code == 0, removed.text
        assert f"Current releases of {app} pull from {host}" in removed.err
        # Now, or (if the reconciler held the app at that moment) at its next pass.
        wait_for(lambda: len(refreshes(server)) > count, timeout=30)
        assert [r[1:] for r in refreshes(server)[count:]] == [(1, host)]
        assert client.api.inspect_service(service.id)["Version"]["Index"] > version
        assert running_tasks(client, service.id) == running


def test_a_scale_with_stale_cached_credentials_fetches_them_again(
    server: Server, local_registry: Registry, tmp_path: Path
) -> None:
    """Nodes pull where Dockyard cannot see it fail: rejected credentials are caught first."""
    host = swarm_settings()["DOCKYARD_SWARM_REGISTRY"]
    content = "stale-" + uuid.uuid4().hex[:6]
    repository = push_fresh_image(local_registry, content).replace(local_registry.host, host, 1)
    app = "stale-" + uuid.uuid4().hex[:6]
    answer = tmp_path / "answer.json"
    helpers = Path(server.env["PATH"].split(":")[0])
    with local_registry.temporary_user() as (user, old), engine_client("swarm") as client:
        answer.write_text(login(user, old))
        name = answering(helpers, answer)
        assert server.cli("apps:create", app).code == 0
        added = server.cli(
            "registries:add", host, "--app", app, "--credential-helper", name,
            "--cache-seconds", "3600",
        )  # fmt: skip
        assert added.code == 0, added.text
        deployed = server.run("deploy", "--app", app, "--docker-image", f"{repository}:v1")
        assert deployed.code == 0, deployed.text

        # The registry and the helper move on; Dockyard's cache still holds the old answer.
        new = old + "-rotated"
        local_registry.set_password(user, new)
        answer.write_text(login(user, new))
        scaled = server.run("apps:scale", "--app", app, "cmd", "--container-count", "2")
        assert scaled.code == 0, scaled.text
        said = scaled.out + scaled.err
        assert (
            f"The registry {host} rejected the credentials from its credential-helper source (app):"
        ) in said
        assert f"Pulling with credentials for {host} from credential-helper source (app)" in said
        [service] = client.services.list(filters={"label": f"dockyard.app={app}"})
        wait_for(lambda: len(running_tasks(client, service.id)) == 2)
        assert served(server, app) == content
        for secret in (old, new):
            assert secret not in said and secret not in server.log()
