"""Direct image deploys from a private registry, on the Docker engine, behind the router.

The first test follows the reference page's "Direct Docker Image deploy"
sections word for word, with ``dockyard`` for ``aptible``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.registry import Registry, app_objects
from tests.integration.servers import Server

ON_SWARM = True  # every flow here passes on Swarm as on one Docker engine

ServerFactory = Callable[..., Server]


def show(server: Server, app: str) -> dict:
    result = server.cli("apps:show", "--app", app, "-o", "json")
    assert result.code == 0, result.text
    return dict(json.loads(result.out))


def deploy(server: Server, app: str, image: str, *args: str, token: str | None = None):
    return server.run("deploy", "--app", app, "--docker-image", image, *args, token=token)


def credentials(registry: Registry, user: str | None = None, password: str | None = None):
    return [
        "--private-registry-username",
        user or registry.user,
        "--private-registry-password",
        password or registry.password,
    ]


def served(server: Server, app: str, path: str = "/") -> str:
    response = server.get(app, path)
    assert response.status_code == 200, response.text
    return response.text.strip()


def environment_of(server: Server, app: str) -> dict[str, str]:
    lines = served(server, app, "/cgi-bin/env").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


class Outcomes(Counter[str]):
    """How the requests of a loop ended, when each ended, and how many were sent again."""

    def __init__(self) -> None:
        super().__init__()
        self.timeline: list[tuple[float, str]] = []
        self.retried = 0


@contextmanager
def request_loop(server: Server, app: str) -> Iterator[Outcomes]:
    """Requests through the router in a loop until the block ends (60 s at most)."""
    outcomes = Outcomes()
    stop = threading.Event()

    def get() -> str:
        response = httpx.get(
            f"http://127.0.0.1:{server.router_port}/",
            headers={"Host": f"{app}.dockyard.localhost"},
            timeout=30,
        )
        return f"{response.status_code} {response.text.strip()}"

    def loop() -> None:
        deadline = time.monotonic() + 60
        # A new connection per request, as a curl loop makes. A connection
        # reset before any byte of the answer is sent once more, as HTTP lets
        # clients do for idempotent requests (RFC 9112, 9.3.1) and httpx does
        # not; under load, about one loop in a few hundred saw one (Caddy logs
        # nothing about it). Only one is allowed per loop.
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                try:
                    outcome = get()
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    outcomes.retried += 1
                    outcome = get()
            except httpx.HTTPError as exc:
                outcome = f"error {type(exc).__name__}"
            outcomes[outcome] += 1
            outcomes.timeline.append((time.monotonic(), outcome))
            time.sleep(0.01)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        thread.join()
    assert outcomes.retried <= 1, f"{outcomes.retried} connections reset: {outcomes}"


def test_direct_image_deploy_as_on_the_reference_page(
    server: Server, registry: Registry, app: str
) -> None:
    image = registry.image("web:v1")
    # "simply provide the registry credentials the first time you deploy"
    first = server.run(
        "deploy",
        "--app",
        app,
        "--docker-image",
        image,
        "--private-registry-username",
        registry.user,
        "--private-registry-password",
        registry.password,
    )
    assert first.code == 0, first.text
    assert "Release" in first.out and "is live at" in first.out
    assert served(server, app) == "hello-v1"
    shown = show(server, app)
    assert shown["url"] == f"http://{app}.dockyard.localhost:{server.router_port}/"
    assert shown["registry_hosts"] == [registry.host]
    assert shown["release"]["image"].startswith(registry.image("web@sha256:"))

    # "You don't need to provide them again going forward"
    second = server.run("deploy", "--app", app, "--docker-image", registry.image("web:v2"))
    assert second.code == 0, second.text
    assert f"with stored credentials for {registry.host}" in second.out
    assert served(server, app) == "hello-v2"

    # Without --docker-image the current image is pulled and deployed again.
    again = server.run("deploy", "--app", app)
    assert again.code == 0, again.text
    assert served(server, app) == "hello-v2"
    containers = show(server, app)["containers"]
    assert [(c["service"], c["state"]) for c in containers] == [("cmd", "running")]


def test_short_term_credentials_expire_and_are_replaced(
    server: Server, registry: Registry, app: str
) -> None:
    with registry.temporary_user() as (user, password):
        assert (
            deploy(
                server, app, registry.image("web:v1"), *credentials(registry, user, password)
            ).code
            == 0
        )
        fresh = password + "-rotated"
        registry.set_password(user, fresh)  # the old token expires

        expired = deploy(server, app, registry.image("web:v2"))
        assert expired.code == 7
        assert expired.err.splitlines()[-1] == (
            f"Error: operation {_last_operation(server, app)} failed: the registry "
            f"{registry.host} rejected the credentials: they are wrong or expired; deploy "
            "again with --private-registry-username and --private-registry-password"
        )
        assert served(server, app) == "hello-v1"  # the app keeps serving

        # "just provide updated credentials whenever you deploy"
        renewed = deploy(server, app, registry.image("web:v2"), *credentials(registry, user, fresh))
        assert renewed.code == 0, renewed.text
        assert served(server, app) == "hello-v2"
        # ...and the fresh ones replaced the stored ones.
        assert deploy(server, app, registry.image("web:v1")).code == 0
        assert served(server, app) == "hello-v1"
        for text in (expired.text, renewed.text, server.log()):
            assert fresh not in text and password not in text


def _last_operation(server: Server, app: str) -> int:
    operations = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    return int(operations[0]["id"])


def test_configuration_restarts_the_app_without_dropping_requests(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    before = len(json.loads(server.cli("operations", "--app", app, "-o", "json").out))
    with request_loop(server, app) as outcomes:
        time.sleep(0.3)
        changed = server.cli("config:set", "--app", app, "GREETING=bonjour", "DB_PASSWORD=pw-1")
        assert changed.code == 0, changed.text
        assert server.cli("restart", "--app", app).code == 0
        assert deploy(server, app, registry.image("web:v2")).code == 0
        time.sleep(0.3)
    assert set(outcomes) <= {"200 hello-v1", "200 hello-v2"}, outcomes
    assert outcomes["200 hello-v1"] > 0 and outcomes["200 hello-v2"] > 0
    operations = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    assert len(operations) == before + 3  # config:set is one operation, restart included
    env = environment_of(server, app)
    assert env["GREETING"] == "bonjour"
    assert env["DB_PASSWORD"] == "pw-1"
    assert env["PORT"].isdigit()


def test_registry_credentials_never_reach_the_containers(
    server: Server, registry: Registry, app: str, backend: str
) -> None:
    aliases = [
        f"DOCKYARD_PRIVATE_REGISTRY_USERNAME={registry.user}",
        f"DOCKYARD_PRIVATE_REGISTRY_PASSWORD={registry.password}",
        f"APTIBLE_PRIVATE_REGISTRY_USERNAME={registry.user}",
        f"APTIBLE_PRIVATE_REGISTRY_PASSWORD={registry.password}",
    ]
    assert server.cli("config:set", "--app", app, "VISIBLE=yes", *aliases).code == 0
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    env = environment_of(server, app)
    assert env["VISIBLE"] == "yes"
    assert not [k for k in env if "PRIVATE_REGISTRY" in k]
    objects = app_objects(backend, app)
    assert objects != []
    for found in objects:
        assert registry.password not in found.attrs
    operations = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    for operation in operations:
        assert registry.password not in server.cli("operation:logs", str(operation["id"])).out
    assert registry.password.encode() not in server.database_bytes()
    assert registry.password not in server.log()


@pytest.mark.parametrize(
    ("image", "extra", "message"),
    [
        ("{host}/dockyard-test/web:nope", [], "image {host}/dockyard-test/web:nope not found"),
        ("{host}/dockyard-test/absent:v1", [], "image {host}/dockyard-test/absent:v1 not found"),
        (
            "{host}/dockyard-test/web:v2",
            ["--private-registry-username", "dockyard", "--private-registry-password", "wrong"],
            "the registry {host} rejected the credentials",
        ),
        (
            "127.0.0.1:5999/dockyard-test/web:v2",
            [],
            "the registry 127.0.0.1:5999 cannot be reached",
        ),
    ],
)
def test_failed_pulls_leave_the_app_serving(
    server: Server, registry: Registry, app: str, image: str, extra: list[str], message: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    release = show(server, app)["release"]
    result = deploy(server, app, image.format(host=registry.host), *extra, "NEW_KEY=1")
    assert result.code == 7, result.text
    assert message.format(host=registry.host) in result.err
    assert served(server, app) == "hello-v1"
    assert show(server, app)["release"] == release
    assert "NEW_KEY" not in server.cli("config", "--app", app).out


def test_missing_credentials_say_so(server: Server, registry: Registry, app: str) -> None:
    result = deploy(server, app, registry.image("web:v1"))
    assert result.code == 7
    assert result.err.strip().endswith(
        f"the registry {registry.host} requires credentials: pass "
        "--private-registry-username and --private-registry-password"
    )
    assert show(server, app)["release"] is None


def test_the_servers_own_docker_logins_never_serve_an_app(
    fresh_server: ServerFactory, registry: Registry, tmp_path: Path
) -> None:
    """A login in the server user's Docker config is not an app's credential."""
    server = fresh_server(env={"DOCKER_CONFIG": registry.docker_config_with_login(tmp_path)})
    handle = "nologin-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", handle).code == 0
    result = deploy(server, handle, registry.image("web:v1"))
    assert result.code == 7, result.text
    assert result.err.strip().endswith(
        f"the registry {registry.host} requires credentials: pass "
        "--private-registry-username and --private-registry-password"
    )
    assert show(server, handle)["release"] is None


@pytest.mark.parametrize("reference", ["bad image", "UPPER/case:v1", "host:5000/x@sha256:12"])
def test_malformed_reference_is_refused_before_queueing(
    server: Server, app: str, reference: str
) -> None:
    result = deploy(server, app, reference)
    assert result.code == 6
    assert result.err.startswith(f"Error: invalid image reference {reference!r}")
    assert json.loads(server.cli("operations", "--app", app, "-o", "json").out) == []


def test_deploy_without_image_on_a_new_app(server: Server, app: str) -> None:
    result = server.cli("deploy", "--app", app)
    assert result.code == 6
    assert result.err.strip() == (
        f"Error: app {app!r} has never been deployed: pass --docker-image to deploy an image"
    )
    restart = server.cli("restart", "--app", app)
    assert restart.code == 6
    assert "has never been deployed" in restart.err


@pytest.mark.parametrize(
    ("image", "settings", "expected"),
    [
        ("crash:v1", [], ["exited with code 3", "boom: cannot start"]),
        (
            "silent:v1",
            ["RELEASE_HEALTHCHECK_TIMEOUT=2"],
            ["did not answer HTTP", "never listening"],
        ),
        (
            "nohealth:v1",
            ["STRICT_HEALTH_CHECKS=true", "RELEASE_HEALTHCHECK_TIMEOUT=2"],
            ["answered 404 on /healthcheck"],
        ),
    ],
)
def test_failing_release_is_removed_and_the_old_one_serves(
    server: Server,
    registry: Registry,
    app: str,
    image: str,
    settings: list[str],
    expected: list[str],
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    before = show(server, app)
    with request_loop(server, app) as outcomes:
        result = deploy(server, app, registry.image(image), *settings)
    assert result.code == 7, result.text
    assert "the new release failed its health check" in result.err
    for text in expected:
        assert text in result.out
    assert set(outcomes) == {"200 hello-v1"}
    after = show(server, app)
    assert after["release"] == before["release"]
    assert [c["id"] for c in after["containers"]] == [c["id"] for c in before["containers"]]
    assert after["config_version"] == before["config_version"]


NO_CMD = (
    "cmd.1: the image has no CMD or ENTRYPOINT: set one in the Dockerfile, "
    "or give each service its command in a Procfile"
)


def test_an_image_the_engine_will_not_start_is_told_as_the_users_to_fix(
    server: Server, registry: Registry, app: str, backend: str
) -> None:
    if backend == "swarm":
        pytest.skip("Swarm's tasks fail after the service is made: told by the health check")
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    before, engine_had = show(server, app), {o.id for o in app_objects(backend, app)}
    result = deploy(server, app, registry.image("nocmd:v1"))
    assert result.code == 7, result.text
    assert re.fullmatch(
        rf"Error: operation \d+ failed: {re.escape(NO_CMD)}", result.err.splitlines()[-1]
    )
    assert result.text.count(NO_CMD) == 1  # the error, once: not also as the log's last line
    assert "internal error" not in result.text
    after = show(server, app)
    assert after["release"] == before["release"]
    assert [c["id"] for c in after["containers"]] == [c["id"] for c in before["containers"]]
    assert served(server, app) == "hello-v1"
    # The refused container, created before the engine would not start it, went.
    assert {o.id for o in app_objects(backend, app)} == engine_had


def test_strict_health_check_passes_with_healthcheck_route(
    server: Server, registry: Registry, app: str
) -> None:
    result = deploy(
        server, app, registry.image("web:v1"), *credentials(registry), "STRICT_HEALTH_CHECKS=true"
    )
    assert result.code == 0, result.text
    assert "cmd.1 answered HTTP 200" in result.out


def test_procfile_services(server: Server, registry: Registry, app: str) -> None:
    result = deploy(server, app, registry.image("procfile:v1"), *credentials(registry))
    assert result.code == 0, result.text
    assert "Services from /.dockyard/Procfile: web, worker" in result.out
    assert "worker.1 stayed up" in result.out
    assert re.search(r"waiting for worker\.1 to stay up: \d+ s of 10 s", result.out), result.out
    assert served(server, app) == "procfile"
    services = sorted(c["service"] for c in show(server, app)["containers"])
    assert services == ["web", "worker"]

    # On Swarm the first deploy started the image's CMD while reading its
    # Procfile, then the Procfile's services instead: only those remain.
    again = deploy(server, app, registry.image("web:v1"))
    assert again.code == 0, again.text
    assert served(server, app) == "hello-v1"
    assert [c["service"] for c in show(server, app)["containers"]] == ["cmd"]


def test_deprovision_removes_containers_route_and_credentials(
    server: Server, registry: Registry, app: str, backend: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    assert app_objects(backend, app) != []
    assert server.cli("apps:deprovision", "--app", app, "--confirm", app).code == 0
    assert server.get(app).status_code == 404
    assert app_objects(backend, app) == []
    assert server.cli("apps:create", app).code == 0
    # The handle is new again: nothing of the old app's credentials remains.
    assert show(server, app)["registry_hosts"] == []
    assert deploy(server, app, registry.image("web:v1")).code == 7


def test_killed_mid_deploy_keeps_the_old_release(
    fresh_server: ServerFactory, registry: Registry, backend: str
) -> None:
    server = fresh_server()
    handle = "killed-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", handle).code == 0
    assert deploy(server, handle, registry.image("web:v1"), *credentials(registry)).code == 0
    server.stop()
    server.env = {"DOCKYARD_OPERATION_HOLD_SECONDS": "60"}
    server.start()
    operation = server.cli(
        "deploy", "--app", handle, "--docker-image", registry.image("web:v2"), "--detach"
    )
    operation_id = int(operation.out)
    deadline = time.monotonic() + 60
    while "Started cmd.1" not in server.cli("operation:logs", str(operation_id)).out:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server.kill()
    server.env = {}
    server.start()
    follow = server.run("operation:follow", str(operation_id))
    assert follow.code == 7
    assert "interrupted" in follow.err
    assert served(server, handle) == "hello-v1"
    deadline = time.monotonic() + 30
    while True:  # the reconciler removes what the killed deploy started
        objects = app_objects(backend, handle)
        if len(objects) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(objects) == 1
    release = show(server, handle)["release"]["id"]
    assert objects[0].labels["dockyard.release"] == str(release)


def test_deploy_by_digest(server: Server, registry: Registry, app: str) -> None:
    assert deploy(server, app, registry.image("web:v2"), *credentials(registry)).code == 0
    pinned = show(server, app)["release"]["image"]
    assert deploy(server, app, registry.image("web:v1")).code == 0
    by_digest = deploy(server, app, pinned)
    assert by_digest.code == 0, by_digest.text
    assert "Resolving" in by_digest.out
    assert served(server, app) == "hello-v2"
    assert show(server, app)["release"]["image"] == pinned


def test_bad_healthcheck_timeout_is_refused_up_front(server: Server, app: str) -> None:
    for value in ("abc", "901", "-1"):
        result = server.cli("config:set", "--app", app, f"RELEASE_HEALTHCHECK_TIMEOUT={value}")
        assert result.code == 6
        assert result.err.strip() == (
            "Error: RELEASE_HEALTHCHECK_TIMEOUT must be a whole number of seconds "
            f"from 0 to 900, not {value!r}"
        )
    assert server.cli("config", "--app", app).out == ""


def test_no_registry_password_under_the_data_directory(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    secret = registry.password.encode()
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    assert secret not in server.database_bytes()


def test_reconciliation_restarts_a_removed_container(
    fresh_server: ServerFactory, registry: Registry, backend: str
) -> None:
    server = fresh_server(env={"DOCKYARD_RECONCILE_SECONDS": "1"})
    handle = "healing-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", handle).code == 0
    assert deploy(server, handle, registry.image("web:v1"), *credentials(registry)).code == 0
    (removed,) = app_objects(backend, handle)
    removed.remove(backend)  # a container, or on Swarm the whole service
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = app_objects(backend, handle, running=True)
        healed = "restarted missing" in server.log()  # logged once the pass is over
        if running and healed and server.get(handle).status_code == 200:
            break
        time.sleep(0.2)
    assert len(running) == 1 and running[0].id != removed.id
    assert served(server, handle) == "hello-v1"
    assert "restarted missing" in server.log()


def test_a_request_in_flight_during_the_switch_completes(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    answers: list[httpx.Response | Exception] = []

    def slow_request() -> None:
        try:
            answers.append(server.get(app, "/cgi-bin/slow"))
        except httpx.HTTPError as exc:
            answers.append(exc)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)  # the request is in the old container, which takes 2 s to answer
    assert server.cli("restart", "--app", app).code == 0
    thread.join()
    (answer,) = answers
    assert isinstance(answer, httpx.Response), answer
    assert (answer.status_code, answer.text.strip()) == (200, "slow")
