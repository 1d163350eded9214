"""Registry credential sources: credential helpers, AWS ECR (moto), rotation, bad input.

Helpers are small shell programs the tests write into a directory on the
server's PATH; ECR's API is ``moto_server`` on loopback, and the test
registry's htpasswd holds the user ``AWS`` with the password moto's tokens
carry. Every source here is checked for leaks: database, server log, CLI
output, ``docker inspect``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from dockyard.cli.environment import Environment
from dockyard.cli.main import main
from tests.integration.conftest import ServerFactory
from tests.integration.gitpush import WEB_DOCKERFILE, WorkingCopy
from tests.integration.registry import Registry, app_objects, engine_client
from tests.integration.servers import Result, Server, free_port
from tests.integration.test_deploys import deploy, served, show
from tests.integration.token_registry import TokenRegistry, token_registry

ON_SWARM = True  # sources serve Swarm services too: each node pulls with what they give
MOTO = str(Path(sys.executable).with_name("moto_server"))
REGION = "us-east-1"


def _moto(env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """ECR's (and STS's) API, accepting any keys."""
    yield from _moto()


@pytest.fixture(scope="module")
def moto_checking_keys() -> Iterator[str]:
    """An AWS API that knows no keys: every request is refused."""
    yield from _moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})


@pytest.fixture(scope="module")
def ecr_token(moto: str, local_registry: Registry) -> Iterator[str]:
    """The password of moto's tokens, made the password of the registry's user AWS."""
    client = boto3.client(
        "ecr",
        region_name=REGION,
        endpoint_url=moto,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    local_registry.set_password("AWS", password)
    try:
        yield password
    finally:
        subprocess.run(["htpasswd", "-D", local_registry.htpasswd, "AWS"], capture_output=True)


@pytest.fixture(scope="module")
def helpers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("credential-helpers")


@pytest.fixture(scope="module")
def srv(backend: str, server_factory: ServerFactory, helpers: Path, moto: str) -> Server:
    """A server of its own: its global sources must not reach other tests' apps."""
    env = {
        "PATH": f"{helpers}:{os.environ.get('PATH', '')}",
        "AWS_ENDPOINT_URL_ECR": moto,
        "AWS_ENDPOINT_URL_STS": moto,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return server_factory(backend, env=env)


@pytest.fixture
def app(srv: Server) -> str:
    handle = "app-" + uuid.uuid4().hex[:10]
    assert srv.cli("apps:create", handle).code == 0
    return handle


def write_helper(directory: Path, script: str) -> str:
    """A ``docker-credential-NAME`` program on the server's PATH; returns NAME."""
    name = "t" + uuid.uuid4().hex[:8]
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return name


def answering(directory: Path, answer: Path) -> str:
    """A helper that prints what ``answer`` holds now (the test rewrites it to rotate)."""
    seen = answer.with_suffix(".host")
    return write_helper(directory, f'read host\necho "$host" > {seen}\ncat {answer}\n')


def login(user: str, secret: str) -> str:
    return json.dumps({"ServerURL": "ignored", "Username": user, "Secret": secret})


def cli(server: Server, *args: str, stdin: str = "", token: str | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(
        stdout=out, stderr=err, stdin=io.StringIO(stdin), variables=server.environment(token)
    )
    code = main(list(args), env)
    return Result(int(code), out.getvalue(), err.getvalue())


def operation_log(server: Server, app: str) -> str:
    listed = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    result = server.cli("operation:logs", str(listed[0]["id"]))
    return result.out


def sources(server: Server, app: str | None = None) -> list[dict]:
    args = ["registries", "-o", "json"] + (["--app", app] if app else [])
    result = server.cli(*args)
    assert result.code == 0, result.text
    return list(json.loads(result.out))


def assert_nowhere(server: Server, backend: str, app: str, secrets: list[str], *texts: str) -> None:
    database = server.database_bytes()
    inspected = "".join(o.attrs for o in app_objects(backend, app))
    for secret in secrets:
        assert secret.encode() not in database
        assert secret not in server.log()
        assert secret not in inspected
        for text in texts:
            assert secret not in text


def test_credential_helper_source_serves_deploys_and_rotates(
    srv: Server, backend: str, registry: Registry, helpers: Path, app: str, tmp_path: Path
) -> None:
    answer = tmp_path / "answer.json"
    with registry.temporary_user() as (user, password):
        answer.write_text(login(user, password))
        name = answering(helpers, answer)
        added = srv.cli("registries:add", registry.host, "--app", app, "--credential-helper", name)
        assert added.code == 0, added.text
        assert added.out.splitlines() == [
            f"Added the credential-helper source for {registry.host} ({app})",
            added.out.splitlines()[1],
        ]
        assert added.out.splitlines()[1].startswith(
            f"Credentials for {registry.host} from credential-helper source (app), fetched "
        )
        assert answer.with_suffix(".host").read_text().strip() == registry.host

        [listed] = sources(srv, app)
        assert listed["host"] == registry.host
        assert listed["kind"] == "credential-helper"
        assert (listed["scope"], listed["app"]) == ("app", app)
        assert listed["last_fetched_at"] and not listed["last_error"]
        assert listed["settings"] == {"helper": name, "cache_seconds": "300"}

        first = deploy(srv, app, registry.image("web:v1"))
        assert first.code == 0, first.text
        assert served(srv, app) == "hello-v1"
        log = operation_log(srv, app)
        assert f"credentials for {registry.host} from credential-helper source (app)" in log

        # Rotation: the registry's password and the helper's answer change
        # together; the cached answer is rejected, fetched again, and used.
        rotated = password + "-2"
        registry.set_password(user, rotated)
        answer.write_text(login(user, rotated))
        second = deploy(srv, app, registry.image("web:v2"))
        assert second.code == 0, second.text
        assert served(srv, app) == "hello-v2"
        log = operation_log(srv, app)
        assert (
            f"The registry {registry.host} rejected the credentials from its "
            "credential-helper source (app):"
        ) in log

        # ...and a build with a private FROM on that host, rotated once more.
        again = rotated + "-3"
        registry.set_password(user, again)
        answer.write_text(login(user, again))
        repo = WorkingCopy(
            tmp_path / "work", f"http://anyone:{srv.token}@127.0.0.1:{srv.port}/git/{app}.git"
        )
        repo.commit(
            {"Dockerfile": WEB_DOCKERFILE.format(base=registry.base_image, content="built")}
        )
        pushed = repo.push("main")
        assert pushed.code == 0, pushed.output
        assert served(srv, app) == "built"
        assert f"credentials for {registry.host} from credential-helper source (app)" in (
            pushed.output
        )
        assert_nowhere(
            srv,
            backend,
            app,
            [password, rotated, again],
            added.text,
            first.text,
            second.text,
            pushed.output,
            json.dumps(sources(srv, app)),
        )


@pytest.fixture(scope="module")
def tokens(
    local_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenRegistry]:
    """A token-auth registry holding web:v1 and the base image, pushed with its identity token."""
    with token_registry(tmp_path_factory.mktemp("token-registry")) as found:
        with engine_client("sqlite") as client:
            login = {"username": local_registry.user, "password": local_registry.password}
            for name in ("web:v1", "busybox:latest"):
                image = client.images.pull(local_registry.image(name), auth_config=login)
                image.tag(found.image(f"dockyard-test/{name}"))
                client.images.push(
                    found.image(f"dockyard-test/{name}"),
                    auth_config={"identitytoken": found.identity_token},
                )
                client.images.remove(found.image(f"dockyard-test/{name}"))
        assert "refresh_token" in found.grants, found.grants
        yield found


def test_identity_token_from_a_helper(
    srv: Server, backend: str, tokens: TokenRegistry, helpers: Path, app: str, tmp_path: Path
) -> None:
    if backend == "swarm":
        # The swarm's nodes reach only the test registry's forwarder; the
        # token goes to the engine by the same code for services.
        pytest.skip("the token registry listens on the host's loopback only")
    token = tokens.identity_token
    name = write_helper(helpers, f"cat <<'EOF'\n{login('<token>', token)}\nEOF\n")
    added = srv.cli("registries:add", tokens.host, "--app", app, "--credential-helper", name)
    assert added.code == 0, added.text
    tokens.grants.clear()
    done = deploy(srv, app, tokens.image("dockyard-test/web:v1"))
    assert done.code == 0, done.text
    assert served(srv, app) == "hello-v1"
    # The engine traded the token at the token server; it never went as a password.
    assert tokens.grants and set(tokens.grants) == {"refresh_token"}, tokens.grants

    repo = WorkingCopy(
        tmp_path / "work", f"http://anyone:{srv.token}@127.0.0.1:{srv.port}/git/{app}.git"
    )
    base = tokens.image("dockyard-test/busybox:latest")
    repo.commit({"Dockerfile": WEB_DOCKERFILE.format(base=base, content="token-built")})
    pushed = repo.push("main")
    assert pushed.code == 0, pushed.output
    assert served(srv, app) == "token-built"
    assert_nowhere(srv, backend, app, [token], added.text, done.text, pushed.output)


def test_identity_token_sent_as_a_password_is_refused(
    srv: Server, backend: str, tokens: TokenRegistry, helpers: Path, app: str
) -> None:
    """What the token server does with a token given as a password: the test has teeth."""
    if backend == "swarm":
        pytest.skip("the token registry listens on the host's loopback only")
    name = write_helper(helpers, f"cat <<'EOF'\n{login('someone', tokens.identity_token)}\nEOF\n")
    assert (
        srv.cli("registries:add", tokens.host, "--app", app, "--credential-helper", name).code == 0
    )
    done = deploy(srv, app, tokens.image("dockyard-test/web:v1"))
    assert done.code != 0
    assert f"The registry {tokens.host} rejected the credentials" in done.text
    assert show(srv, app)["release"] is None


def test_helper_without_credentials_means_none(
    srv: Server, registry: Registry, helpers: Path, app: str
) -> None:
    name = write_helper(helpers, 'echo "credentials not found in native keychain"\nexit 1\n')
    added = srv.cli("registries:add", registry.host, "--app", app, "--credential-helper", name)
    assert added.code == 0, added.text
    assert f"No credentials for {registry.host}: its credential-helper source (app) has none" in (
        added.out
    )
    failed = deploy(srv, app, registry.image("web:v1"))
    assert failed.code == 7
    assert failed.err.strip().endswith(
        f"the registry {registry.host} requires credentials: pass --private-registry-username "
        "and --private-registry-password"
    )
    assert (
        f"without credentials for {registry.host}: its credential-helper source (app) has none"
        in operation_log(srv, app)
    )


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("echo 'vault is sealed' >&2\nexit 3\n", "it exited with status 3: vault is sealed"),
        (
            'printf \'{"Username": "u", "Secret": "leaked-s3cret"\'\n',
            'it printed no valid JSON (expected {"ServerURL", "Username", "Secret"})',
        ),
        ("sleep 60\n", "docker-credential-NAME did not answer within 10 s"),
    ],
    ids=["error-exit", "bad-json", "hang"],
)
def test_failing_helpers_are_refused_and_nothing_is_stored(
    srv: Server, registry: Registry, helpers: Path, app: str, script: str, why: str
) -> None:
    name = write_helper(helpers, script)
    result = srv.cli("registries:add", registry.host, "--app", app, "--credential-helper", name)
    assert result.code == 6, result.text
    assert result.err.strip() == (
        f"Error: the credential-helper source (app) for {registry.host} failed: "
        f"{why.replace('NAME', name)}; nothing was stored"
    )
    assert sources(srv, app) == []
    assert "leaked-s3cret" not in srv.log()


def test_unknown_helper(srv: Server, registry: Registry, app: str) -> None:
    result = srv.cli("registries:add", registry.host, "--app", app, "--credential-helper", "nope")
    assert result.code == 6
    assert result.err.strip() == (
        "Error: unknown credential helper 'nope': there is no docker-credential-nope "
        "on the server's PATH"
    )
    assert sources(srv, app) == []


def test_ecr_source_for_every_app(
    srv: Server, backend: str, registry: Registry, ecr_token: str, tmp_path: Path
) -> None:
    handle = "app-" + uuid.uuid4().hex[:10]
    assert srv.cli("apps:create", handle).code == 0
    added = srv.cli("registries:add", registry.host, "--aws-ecr", "--aws-region", REGION)
    assert added.code == 0, added.text
    try:
        assert added.out.splitlines()[0] == (
            f"Added the aws-ecr source for {registry.host} (every app)"
        )
        [listed] = sources(srv)
        assert (listed["kind"], listed["scope"], listed["app"]) == ("aws-ecr", "global", None)
        assert listed["settings"] == {"region": REGION, "aws_credentials": "the server's own"}
        assert sources(srv, handle) == [listed]  # the global sources that serve the app

        # An image deploy with no credentials given: the global source serves it.
        done = deploy(srv, handle, registry.image("web:v1"))
        assert done.code == 0, done.text
        assert served(srv, handle) == "hello-v1"
        log = operation_log(srv, handle)
        assert f"credentials for {registry.host} from aws-ecr source (global), fetched " in log

        # A git push whose FROM is private on that host.
        pushed_app = "app-" + uuid.uuid4().hex[:10]
        assert srv.cli("apps:create", pushed_app).code == 0
        repo = WorkingCopy(
            tmp_path / "work",
            f"http://anyone:{srv.token}@127.0.0.1:{srv.port}/git/{pushed_app}.git",
        )
        repo.commit({"Dockerfile": WEB_DOCKERFILE.format(base=registry.base_image, content="ecr")})
        pushed = repo.push("main")
        assert pushed.code == 0, pushed.output
        assert served(srv, pushed_app) == "ecr"

        tested = srv.cli("registries:test", registry.host)
        assert tested.code == 0, tested.text
        assert tested.out.splitlines()[-1] == (
            f"The registry {registry.host} accepts the credentials"
        )
        by_image = srv.cli(
            "registries:test", registry.host, "--app", handle, "--image", registry.image("web:v1")
        )
        assert by_image.code == 0, by_image.text
        assert f"{registry.image('web:v1')} resolves to sha256:" in by_image.out

        token = base64.b64encode(f"AWS:{ecr_token}".encode()).decode()
        assert_nowhere(
            srv,
            backend,
            handle,
            [ecr_token, token],
            added.text,
            done.text,
            pushed.output,
            tested.text,
            json.dumps(sources(srv)),
        )
    finally:
        removed = srv.cli("registries:remove", registry.host)
    assert removed.code == 0, removed.text
    assert removed.out.strip() == f"Removed the aws-ecr source for {registry.host} (every app)"
    # Apps of earlier tests may pull from the host without a source of their own
    # (and on Swarm the pushed app's build is in the --image-registry on that host).
    users, _, rest = removed.err.strip().removeprefix("Current releases of ").partition(" pull ")
    assert handle in users.split(", ")
    assert (pushed_app in users.split(", ")) == (backend == "swarm")
    assert rest == f"from {registry.host}: their next pulls get no credentials from this source"
    assert sources(srv) == []


def test_ecr_source_with_keys_and_a_role(
    srv: Server, registry: Registry, ecr_token: str, app: str
) -> None:
    secret = "wJalrXUtnFEMI-" + uuid.uuid4().hex
    added = cli(
        srv,
        "registries:add",
        registry.host,
        "--app",
        app,
        "--aws-ecr",
        "--aws-region",
        REGION,
        "--aws-access-key-id",
        "AKIAIOSFODNN7EXAMPLE",
        "--aws-secret-access-key-stdin",
        "--aws-role-arn",
        "arn:aws:iam::123456789012:role/pull",
        stdin=secret + "\n",
    )
    assert added.code == 0, added.text
    [listed] = sources(srv, app)
    assert listed["settings"]["role_arn"] == "arn:aws:iam::123456789012:role/pull"
    assert listed["settings"]["aws_credentials"] == "given keys"
    done = deploy(srv, app, registry.image("web:v1"))
    assert done.code == 0, done.text
    for sealed in (secret, "AKIAIOSFODNN7EXAMPLE"):
        assert sealed.encode() not in srv.database_bytes()
        assert sealed not in srv.log() and sealed not in json.dumps(sources(srv, app))


def test_refused_aws_keys(
    srv: Server, registry: Registry, moto_checking_keys: str, app: str
) -> None:
    secret = "refused-" + uuid.uuid4().hex
    result = cli(
        srv,
        "registries:add",
        registry.host,
        "--app",
        app,
        "--aws-ecr",
        "--aws-region",
        REGION,
        "--aws-endpoint-url",
        moto_checking_keys,
        "--aws-access-key-id",
        "AKIAIOSFODNN7EXAMPLE",
        "--aws-secret-access-key-stdin",
        stdin=secret,
    )
    assert result.code == 6, result.text
    assert result.err.strip() == (
        f"Error: the aws-ecr source (app) for {registry.host} failed: InvalidClientTokenId: "
        "The security token included in the request is invalid.; nothing was stored"
    )
    assert sources(srv, app) == []
    assert secret not in srv.log()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["https://r.example.com", "--aws-ecr", "--aws-region", REGION],
            "invalid registry host 'https://r.example.com': give a host name with an optional "
            "port, e.g. registry.example.com or 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (
            ["r.example.com", "--aws-ecr", "--aws-region", "mars"],
            "invalid --aws-region 'mars': expected e.g. us-east-1 or eu-west-3",
        ),
        (
            ["r.example.com", "--aws-ecr", "--aws-region", REGION, "--aws-role-arn", "pull"],
            "invalid --aws-role-arn 'pull': expected arn:aws:iam::ACCOUNT:role/NAME",
        ),
        (
            ["r.example.com", "--aws-ecr"],
            "cannot tell the AWS region of r.example.com: pass --aws-region "
            "(or name the registry ACCOUNT.dkr.ecr.REGION.amazonaws.com)",
        ),
    ],
    ids=["host", "region", "role-arn", "no-region"],
)
def test_malformed_input_is_refused(srv: Server, app: str, args: list[str], message: str) -> None:
    result = srv.cli("registries:add", *args, "--app", app)
    assert result.code == 6, result.text
    assert result.err.strip() == f"Error: {message}"
    assert sources(srv, app) == []


def test_only_admins_add_global_sources_and_only_for_granted_apps(
    srv: Server, registry: Registry, app: str, helpers: Path
) -> None:
    made = srv.cli("users:create", "user-" + uuid.uuid4().hex[:8], "-o", "json")
    user = json.loads(made.out)
    token = user["token"]
    name = write_helper(helpers, "echo 'credentials not found'\nexit 1\n")
    global_ = srv.cli("registries:add", registry.host, "--credential-helper", name, token=token)
    assert global_.code == 3
    assert global_.err.strip() == (
        "Error: registry sources for every app (no --app) need an admin token: "
        "pass --app for one of your apps"
    )
    other = srv.cli(
        "registries:add", registry.host, "--app", app, "--credential-helper", name, token=token
    )
    assert other.code == 4
    assert other.err.strip() == f"Error: app {app!r} not found"
    assert sources(srv) == [] and sources(srv, app) == []

    assert srv.cli("apps:grant", "--app", app, user["name"]).code == 0
    # The server's own AWS identity is not lent to non-admins.
    server_aws = srv.cli(
        "registries:add",
        registry.host,
        "--app",
        app,
        "--aws-ecr",
        "--aws-region",
        REGION,
        token=token,
    )
    assert server_aws.code == 3
    assert server_aws.err.strip() == (
        "Error: an aws-ecr source without --aws-access-key-id uses the server's own AWS "
        "credentials: that needs an admin token; give the keys of your own AWS user"
    )
    assert sources(srv, app) == []
    # Nor are the server's own helpers (and whatever they hold: its keychain,
    # its cloud identity) lent to non-admins.
    helper = srv.cli(
        "registries:add", registry.host, "--app", app, "--credential-helper", name, token=token
    )
    assert helper.code == 3
    assert helper.err.strip() == (
        "Error: a credential-helper source runs a program on the server, with the server's own "
        "credentials: that needs an admin token; give a username and password instead"
    )
    assert sources(srv, app) == []
    mine = cli(
        srv,
        "registries:add",
        registry.host,
        "--app",
        app,
        "--username",
        registry.user,
        "--password-stdin",
        stdin=registry.password + "\n",
        token=token,
    )
    assert mine.code == 0, mine.text
    listed = srv.cli("registries", "--app", app, "-o", "json", token=token)
    assert [s["kind"] for s in json.loads(listed.out)] == ["static"]


def test_static_source_and_deploy_stored_credentials(
    srv: Server, registry: Registry, app: str
) -> None:
    added = cli(
        srv,
        "registries:add",
        registry.host,
        "--app",
        app,
        "--username",
        registry.user,
        "--password-stdin",
        stdin=registry.password + "\n",
    )
    assert added.code == 0, added.text
    done = deploy(srv, app, registry.image("web:v1"))
    assert done.code == 0, done.text
    assert f"credentials for {registry.host} from static source (app)" in operation_log(srv, app)

    # Credentials given with a deploy replace the app's source for that host,
    # and are listed as a static source stored by a deploy.
    given = deploy(
        srv,
        app,
        registry.image("web:v2"),
        "--private-registry-username",
        registry.user,
        "--private-registry-password",
        registry.password,
    )
    assert given.code == 0, given.text
    [listed] = sources(srv, app)
    assert (listed["kind"], listed["stored_by_deploy"]) == ("static", True)
    assert listed["settings"] == {"username": registry.user}
    removed = srv.cli("registries:remove", registry.host, "--app", app)
    assert removed.code == 0, removed.text
    assert app in removed.err
    assert sources(srv, app) == []
    assert registry.password.encode() not in srv.database_bytes()


def test_refresh_and_fetch_errors_are_shown(
    srv: Server, registry: Registry, helpers: Path, app: str, tmp_path: Path
) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(login("someone", "pw-" + uuid.uuid4().hex))
    name = answering(helpers, answer)
    added = srv.cli("registries:add", registry.host, "--app", app, "--credential-helper", name)
    assert added.code == 0, added.text
    refreshed = srv.cli("registries:refresh", registry.host, "--app", app)
    assert refreshed.code == 0, refreshed.text
    assert refreshed.out.startswith(
        f"Credentials for {registry.host} from credential-helper source (app), fetched "
    )

    answer.write_text("not JSON")
    why = 'it printed no valid JSON (expected {"ServerURL", "Username", "Secret"})'
    failed = srv.cli("registries:refresh", "--app", app)
    assert failed.code == 7
    assert failed.out.strip() == (
        f"{registry.host}: the credential-helper source (app) for {registry.host} failed: {why}"
    )
    [listed] = sources(srv, app)
    assert listed["last_error"] == why
    table = srv.cli("registries", "--app", app)
    assert table.out.splitlines()[0].split() == [
        "HOST",
        "KIND",
        "SCOPE",
        "LAST",
        "FETCHED",
        "EXPIRES",
        "LAST",
        "ERROR",
    ]
    assert table.out.splitlines()[1].endswith(why)
    tested = srv.cli("registries:test", registry.host, "--app", app)
    assert tested.code == 1
    assert tested.err.strip() == (
        f"Error: the credential-helper source (app) for {registry.host} failed: {why}"
    )
