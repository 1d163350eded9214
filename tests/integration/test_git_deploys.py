"""Dockerfile deploys by git push, private base images, synchronized deploys.

The tests follow the reference page's "Dockerfile deploy" sections, with
``dockyard``/``DOCKYARD_`` and again with the ``APTIBLE_`` spellings.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.integration.gitpush import WEB_DOCKERFILE, Push, WorkingCopy
from tests.integration.registry import Registry, app_objects, engine_client
from tests.integration.servers import Server, free_port
from tests.integration.test_deploys import credentials, deploy, request_loop, served, show

ON_SWARM = True  # on Swarm, builds are pushed to --image-registry and deployed by digest


def remote(server: Server, app: str, token: str | None = None) -> str:
    return f"http://anyone:{token or server.token}@127.0.0.1:{server.port}/git/{app}.git"


@pytest.fixture
def repo(server: Server, app: str, tmp_path: Path) -> WorkingCopy:
    return WorkingCopy(tmp_path / "work", remote(server, app))


def web(registry: Registry, content: str) -> dict[str, str]:
    return {"Dockerfile": WEB_DOCKERFILE.format(base=registry.base_image, content=content)}


def operations(server: Server, app: str) -> list[dict]:
    return list(json.loads(server.cli("operations", "--app", app, "-o", "json").out))


def releases_of(server: Server, app: str) -> int:
    with server.http() as http:
        return len(http.get(f"/apps/{app}/operations").json())


@pytest.mark.parametrize("prefix", ["DOCKYARD", "APTIBLE"])
def test_long_term_credentials_then_push(
    server: Server, registry: Registry, app: str, repo: WorkingCopy, prefix: str
) -> None:
    # "set them using the CLI's config:set before updating your FROM declaration"
    result = server.run(
        "config:set",
        "--app",
        app,
        f"{prefix}_PRIVATE_REGISTRY_USERNAME={registry.user}",
        f"{prefix}_PRIVATE_REGISTRY_PASSWORD={registry.password}",
    )
    assert result.code == 0, result.text
    commit = repo.commit(web(registry, "from git"))
    pushed = repo.push("main")
    assert pushed.code == 0, pushed.output
    assert f"remote: Dockyard: deploying main ({commit[:7]})" in pushed.output
    assert "remote:   Step 1/" in pushed.output  # the build log, live
    assert f"is live at http://{app}.dockyard.localhost:{server.router_port}/" in pushed.output
    assert served(server, app) == "from git"
    assert repo.remote_head("main") == commit
    env = dict(
        line.split("=", 1)
        for line in served(server, app, "/cgi-bin/env").splitlines()
        if "=" in line
    )
    assert not [k for k in env if "PRIVATE_REGISTRY" in k]
    assert registry.password not in pushed.output
    assert show(server, app)["release"]["source"] == f"git:{commit}"


def test_master_deploys_too_and_other_branches_only_store(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo.commit(web(registry, "master"))
    assert repo.push("HEAD:master").code == 0
    assert served(server, app) == "master"
    count = len(operations(server, app))

    commit = repo.commit(web(registry, "feature"))
    stored = repo.push("HEAD:feature-x")
    assert stored.code == 0, stored.output
    assert (
        f"remote: Dockyard: stored feature-x ({commit[:7]}) without deploying it" in stored.output
    )
    assert f"dockyard deploy --app {app} --git-commitish feature-x" in stored.output
    assert len(operations(server, app)) == count
    assert served(server, app) == "master"
    assert repo.remote_head("feature-x") == commit


def _creds(registry: Registry, password: str | None = None, user: str | None = None) -> list[str]:
    return [
        f"DOCKYARD_PRIVATE_REGISTRY_USERNAME={user or registry.user}",
        f"DOCKYARD_PRIVATE_REGISTRY_PASSWORD={password or registry.password}",
    ]


def test_a_failed_first_push_says_nothing_is_serving_and_each_error_once(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    broken = web(registry, "broken")
    broken["Dockerfile"] += "RUN printf '\\033[31mred\\033[0m build output\\n' && false\n"
    repo.commit(broken)
    pushed = repo.push("main")
    assert pushed.code != 0
    assert f"main was not updated; {app} has no release yet" in pushed.output
    assert "previous release" not in pushed.output
    assert pushed.output.count("the build failed") == 1, pushed.output
    assert "remote:   red build output" in pushed.output  # without its escapes
    assert "\x1b" not in pushed.output


def test_failed_build_rejects_the_push_and_keeps_serving(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    good = repo.commit(web(registry, "good"))
    assert repo.push("main").code == 0
    broken = web(registry, "broken")
    broken["Dockerfile"] += "RUN echo compiling && false\n"
    repo.commit(broken)
    with request_loop(server, app) as outcomes:
        pushed = repo.push("main")
    assert pushed.code != 0
    assert "remote: ERROR: the build failed" in pushed.output
    assert "main was not updated; the previous release keeps serving" in pushed.output
    assert "! [remote rejected] main -> main (pre-receive hook declined)" in pushed.output
    assert repo.remote_head("main") == good
    assert set(outcomes) == {"200 good"}
    fixed = repo.commit(web(registry, "fixed"))
    assert repo.push("main").code == 0
    assert served(server, app) == "fixed"
    assert repo.remote_head("main") == fixed


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"README": "no Dockerfile here\n"}, "has no Dockerfile at the root of the repository"),
        (
            {"Dockerfile": "FROM {host}/dockyard-test/absent:v1\n"},
            "image {host}/dockyard-test/absent:v1 not found",
        ),
        (
            {"Dockerfile": "FROM {host}/dockyard-test/busybox AS a\nFROM 127.0.0.1:5999/x/y\n"},
            "set DOCKYARD_PRIVATE_REGISTRY_HOST",
        ),
    ],
)
def test_bad_repositories_fail_clearly(
    server: Server,
    registry: Registry,
    app: str,
    repo: WorkingCopy,
    files: dict[str, str],
    message: str,
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo.commit({k: v.format(host=registry.host) for k, v in files.items()})
    pushed = repo.push("main")
    assert pushed.code != 0
    assert message.format(host=registry.host) in pushed.output
    assert repo.remote_head("main") is None
    assert show(server, app)["release"] is None


def test_the_servers_own_docker_logins_never_serve_a_build(
    fresh_server: Callable[..., Server], registry: Registry, tmp_path: Path
) -> None:
    server = fresh_server(env={"DOCKER_CONFIG": registry.docker_config_with_login(tmp_path)})
    app = "nologin-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", app).code == 0
    repo = WorkingCopy(tmp_path / "work", remote(server, app))
    repo.commit(web(registry, "x"))
    pushed = repo.push("main")
    assert pushed.code != 0
    assert f"the registry {registry.host} requires credentials" in pushed.output
    assert show(server, app)["release"] is None


@pytest.mark.parametrize("case", ["none", "wrong"])
def test_private_base_without_good_credentials(
    server: Server, registry: Registry, app: str, repo: WorkingCopy, case: str
) -> None:
    if case == "wrong":
        assert server.cli("config:set", "--app", app, *_creds(registry, "wrong-pw")).code == 0
    repo.commit(web(registry, "x"))
    pushed = repo.push("main")
    assert pushed.code != 0
    how = (
        "set DOCKYARD_PRIVATE_REGISTRY_USERNAME and DOCKYARD_PRIVATE_REGISTRY_PASSWORD with "
        "`dockyard config:set` (or add a source with `dockyard registries:add`) and push again"
    )
    if case == "wrong":
        said = f"the registry {registry.host} rejected the credentials: they are wrong or expired;"
    else:
        said = f"the registry {registry.host} requires credentials:"
    assert f"remote: ERROR: {said} {how}" in pushed.output, pushed.output
    assert "--private-registry" not in pushed.output  # the deploy command's flags
    assert "wrong-pw" not in pushed.output


def test_short_term_credentials_two_step_synchronized_deploy(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    with registry.temporary_user() as (user, password):
        assert server.cli("config:set", "--app", app, *_creds(registry, password, user)).code == 0
        repo.commit(web(registry, "first"))
        assert repo.push("main").code == 0
        expired_password = password
        fresh = password + "-fresh"
        registry.set_password(user, fresh)  # the short-term credentials expire

        # Step 1: push the code without deploying it.
        commit = repo.commit(web(registry, "second"))
        assert repo.push("main:deploy-123").code == 0
        before = operations(server, app)
        containers = show(server, app)["containers"]

        # A deploy with the stale password fails and changes nothing.
        stale = server.run("deploy", "--app", app, "--git-commitish", "deploy-123")
        assert stale.code == 7
        assert f"the registry {registry.host} rejected the credentials" in stale.err
        assert served(server, app) == "first"

        # Step 2: deploy it while setting the new configuration: one operation.
        done = server.run(
            "deploy",
            "--app",
            app,
            "--git-commitish",
            "deploy-123",
            f"DOCKYARD_PRIVATE_REGISTRY_PASSWORD={fresh}",
        )
        assert done.code == 0, done.text
        after = operations(server, app)
        assert len(after) == len(before) + 2  # the stale attempt and this one
        assert after[0]["type"] == "deploy" and after[0]["status"] == "succeeded"
        assert served(server, app) == "second"
        assert show(server, app)["release"]["source"] == f"git:{commit}"
        # One restart: the one container of the old release was replaced once.
        new_containers = show(server, app)["containers"]
        assert len(new_containers) == 1 and new_containers[0]["id"] != containers[0]["id"]
        revealed = server.cli(
            "config:get", "--app", app, "DOCKYARD_PRIVATE_REGISTRY_PASSWORD", "--reveal"
        )
        assert revealed.out.strip() == fresh
        for text in (done.text, stale.text, server.log()):
            assert fresh not in text and expired_password not in text


def test_short_term_credentials_config_set_then_push(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    with registry.temporary_user() as (user, password):
        assert server.cli("config:set", "--app", app, *_creds(registry, password, user)).code == 0
        repo.commit(web(registry, "one"))
        assert repo.push("main").code == 0
        registry.set_password(user, password + "-2")
        repo.commit(web(registry, "two"))
        assert repo.push("main").code != 0  # expired
        # The slower alternative: config:set (one restart), then push.
        assert (
            server.cli("config:set", "--app", app, *_creds(registry, password + "-2", user)).code
            == 0
        )
        pushed = repo.push("main")
        assert pushed.code == 0, pushed.output
        assert served(server, app) == "two"


def test_failed_synchronized_deploy_keeps_the_old_configuration(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry), "MODE=old").code == 0
    repo.commit(web(registry, "ok"))
    assert repo.push("main").code == 0
    broken = web(registry, "broken")
    broken["Dockerfile"] += "RUN false\n"
    repo.commit(broken)
    assert repo.push("main:broken").code == 0
    result = server.run("deploy", "--app", app, "--git-commitish", "broken", "MODE=new")
    assert result.code == 7
    assert server.cli("config:get", "--app", app, "MODE").out.strip() == "old"
    assert served(server, app) == "ok"


def test_unknown_commitish(server: Server, app: str, repo: WorkingCopy, registry: Registry) -> None:
    repo.commit(web(registry, "x"))
    assert repo.push("main:somewhere").code == 0
    for commitish, message in (
        ("nope", f"'nope' names no commit pushed to {app}"),
        ("a..b", "invalid --git-commitish 'a..b'"),
    ):
        result = server.cli("deploy", "--app", app, "--git-commitish", commitish)
        assert result.code == 6
        assert message in result.err
    assert operations(server, app) == []


def test_switching_between_git_and_image_deploys(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    assert served(server, app) == "hello-v1"
    repo.commit(web(registry, "built"))
    # Credentials stored by the image deploy serve the FROM on the same host.
    assert repo.push("main").code == 0
    assert served(server, app) == "built"
    assert deploy(server, app, registry.image("web:v2")).code == 0
    assert served(server, app) == "hello-v2"
    assert server.cli("deploy", "--app", app, "--git-commitish", "main").code == 0
    assert served(server, app) == "built"
    assert server.cli("deploy", "--app", app).code == 0  # the current build again
    assert served(server, app) == "built"


def test_procfile_at_the_repository_root(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    files = web(registry, "procfile")
    files["Procfile"] = "web: exec httpd -f -p $PORT -h /www\nworker: exec sleep 3600\n"
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo.commit(files)
    pushed = repo.push("main")
    assert pushed.code == 0, pushed.output
    assert "Services from the repository's Procfile: web, worker" in pushed.output
    assert sorted(c["service"] for c in show(server, app)["containers"]) == ["web", "worker"]


def test_push_and_fetch_need_a_member_token(
    server: Server,
    registry: Registry,
    app: str,
    repo: WorkingCopy,
    tmp_path: Path,
    user_token: Callable[[], tuple[str, str]],
) -> None:
    repo.commit(web(registry, "x"))
    assert repo.push("main:stored").code == 0
    wrong = WorkingCopy(tmp_path / "wrong", remote(server, app, "dky_wrong"))
    wrong.commit({"a": "b"})
    pushed = wrong.push("main:other")
    assert pushed.code != 0
    assert "Authentication failed" in pushed.output
    name, token = user_token()
    outsider = WorkingCopy(tmp_path / "outsider", remote(server, app, token))
    outsider.commit({"a": "b"})
    assert outsider.push("main:other").code != 0
    fetched = outsider.git("fetch", "dockyard", check=False)
    assert fetched.returncode != 0
    assert "not found" in fetched.stderr
    assert server.cli("apps:grant", "--app", app, name).code == 0
    assert outsider.git("fetch", "dockyard", check=False).returncode == 0
    assert outsider.remote_head("stored") == repo.remote_head("stored")


def test_non_fast_forward_push_is_refused(
    server: Server, registry: Registry, app: str, repo: WorkingCopy, tmp_path: Path
) -> None:
    first = repo.commit(web(registry, "a"))
    assert repo.push("main:topic").code == 0
    other = WorkingCopy(tmp_path / "other", remote(server, app))
    other.commit({"unrelated": "history"})
    pushed = other.push("main:topic")
    assert pushed.code != 0
    assert "non-fast-forward" in pushed.output or "fetch first" in pushed.output
    assert repo.remote_head("topic") == first


def test_two_apps_push_at_once(server: Server, registry: Registry, tmp_path: Path) -> None:
    handles = [f"pair-{uuid.uuid4().hex[:6]}-{n}" for n in range(2)]
    copies = []
    for handle in handles:
        assert server.cli("apps:create", handle).code == 0
        assert server.cli("config:set", "--app", handle, *_creds(registry)).code == 0
        copy = WorkingCopy(tmp_path / handle, remote(server, handle))
        copy.commit(web(registry, handle))
        copies.append(copy)
    results: list[Push] = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.push("main"))) for c in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.code for r in results] == [0, 0], [r.output for r in results]
    for handle in handles:
        assert served(server, handle) == handle


class _RecordingRegistry(BaseHTTPRequestHandler):
    """A 'public' registry in front of the private one: records what it is sent."""

    seen: ClassVar[list[str | None]] = []
    upstream: ClassVar[str] = ""
    auth: ClassVar[tuple[str, str]] = ("", "")

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
        response = httpx.request(
            self.command, f"http://{self.upstream}{self.path}", headers=headers, auth=self.auth
        )
        self.send_response(response.status_code)
        for name in ("Content-Type", "Docker-Content-Digest", "Content-Length"):
            if name in response.headers:
                self.send_header(name, response.headers[name])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.content)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def public_registry(registry: Registry) -> Iterator[str]:
    port = free_port()
    _RecordingRegistry.seen = []
    _RecordingRegistry.upstream = registry.host
    _RecordingRegistry.auth = (registry.user, registry.password)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _RecordingRegistry)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_other_registry_in_from_never_gets_the_credentials(
    server: Server, registry: Registry, app: str, repo: WorkingCopy, public_registry: str
) -> None:
    config = [*_creds(registry), f"DOCKYARD_PRIVATE_REGISTRY_HOST={registry.host}"]
    assert server.cli("config:set", "--app", app, *config).code == 0
    dockerfile = (
        f"FROM {public_registry}/dockyard-test/busybox:latest AS tools\n"
        + WEB_DOCKERFILE.format(base=registry.base_image, content="two registries")
    )
    repo.commit({"Dockerfile": dockerfile})
    pushed = repo.push("main")
    assert pushed.code == 0, pushed.output
    assert served(server, app) == "two registries"
    assert _RecordingRegistry.seen, "the public registry was never asked"
    assert set(_RecordingRegistry.seen) == {None}


def test_no_password_in_docker_inspect_of_builds(
    server: Server, registry: Registry, app: str, repo: WorkingCopy, backend: str
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo.commit(web(registry, "inspect"))
    pushed = repo.push("main")
    assert pushed.code == 0
    objects = app_objects(backend, app)
    assert objects != []
    for found in objects:
        assert registry.password not in found.attrs
    release = show(server, app)["release"]["id"]
    with engine_client(backend) as client:  # the engine that built it
        built = client.images.get(f"dockyard/{server.installation()}/{app}:{release}")
        assert registry.password not in json.dumps(built.attrs)
        assert registry.password not in json.dumps(built.history())
    for operation in operations(server, app):
        assert registry.password not in server.cli("operation:logs", str(operation["id"])).out
    assert registry.password not in server.log()


def test_git_commitish_with_registry_credential_flags(
    server: Server, registry: Registry, app: str, repo: WorkingCopy
) -> None:
    with registry.temporary_user() as (user, password):
        repo.commit(web(registry, "flagged"))
        assert repo.push("main:deploy-7").code == 0
        result = server.run(
            "deploy",
            "--app",
            app,
            "--git-commitish",
            "deploy-7",
            "--private-registry-username",
            user,
            "--private-registry-password",
            password,
        )
        assert result.code == 0, result.text
        assert served(server, app) == "flagged"
        # Kept for the FROM registry's host, not put into the app's configuration.
        assert show(server, app)["registry_hosts"] == [registry.host]
        assert "PRIVATE_REGISTRY" not in server.cli("config", "--app", app).out
        assert password not in result.text
        repo.commit(web(registry, "again"))
        assert repo.push("main").code == 0  # the kept credentials serve the next build
        assert served(server, app) == "again"


def test_builds_are_tagged_per_release_and_pruned(
    server: Server, registry: Registry, app: str, repo: WorkingCopy, backend: str
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    for n in range(7):
        repo.commit(web(registry, f"build {n}"))
        assert repo.push("main").code == 0
    release = show(server, app)["release"]["id"]
    repository = f"dockyard/{server.installation()}/{app}"
    with engine_client(backend) as client:
        tags = sorted(
            tag
            for image in client.images.list(name=repository)
            for tag in image.tags
            if tag.startswith(f"{repository}:")  # an image may serve other apps too
        )
    assert f"{repository}:{release}" in tags
    # Fewer builds than the ten kept for rollbacks: every one stays (which tags
    # go beyond ten is unit-tested: tests/unit/domain/test_release_history.py).
    assert len(tags) == 7, tags


def test_build_timeout(
    fresh_server: Callable[..., Server], registry: Registry, tmp_path: Path, backend: str
) -> None:
    server = fresh_server(extra_args=["--build-timeout", "10"])
    app = "slow-build"
    assert server.cli("apps:create", app).code == 0
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo = WorkingCopy(tmp_path / "work", remote(server, app))
    files = web(registry, "never")
    # A step of its own (no layer cache from an earlier run), silent for 60 s.
    marker = uuid.uuid4().hex
    files["Dockerfile"] += f"RUN echo {marker} && sleep 60\n"
    repo.commit(files)
    started = time.monotonic()
    pushed = repo.push("main")
    took = time.monotonic() - started
    assert pushed.code != 0
    assert "the build took longer than 10 s" in pushed.output
    # The push ends at the timeout, not when the step would have, and the
    # step's container was stopped with it.
    assert took < 30, f"the push took {took:.0f} s"
    deadline = time.monotonic() + 20  # the engine removes it once it has stopped it
    with engine_client(backend) as client:
        while True:
            # One listing (no inspection of each: others come and go meanwhile).
            listed = client.api.containers(all=True)
            left = [c["State"] for c in listed if marker in str(c.get("Command", ""))]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert left == []
    assert show(server, app)["release"] is None
