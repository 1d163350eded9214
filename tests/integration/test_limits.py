"""Limits on what one tenant may send: each has its error and changes nothing.

The abusive requests (100,000 configuration keys, a 1 GiB git-deploy body,
decompression bombs) run while another user's requests are timed: every one
of those must succeed, promptly.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import os
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.gitpush import WorkingCopy
from tests.integration.servers import Server

MIB = 1024 * 1024
GIB = 1024 * MIB
PROMPT = 1.0  # seconds another user's request may take while one abuses the server
Users = Callable[[], tuple[str, str]]


@contextmanager
def others_requests(server: Server, token: str, app: str) -> Iterator[list[tuple[str, int, float]]]:
    """Another user's reads and writes of their own app, timed, until the block ends."""
    timings: list[tuple[str, int, float]] = []
    stop = threading.Event()

    def loop() -> None:
        with server.http(token) as http:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.monotonic()
                what = "config:set" if n % 5 == 0 else "config"
                try:
                    if what == "config:set":
                        status = http.post(
                            f"/apps/{app}/configuration", json={"set": {"N": str(n)}}
                        ).status_code
                    else:
                        status = http.get(f"/apps/{app}/configuration").status_code
                except httpx.HTTPError:
                    status = 0
                timings.append((what, status, time.monotonic() - started))
                time.sleep(0.02)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield timings
    finally:
        # The abuse may be refused faster than ten requests take: keep the
        # other user going until there are enough timings to judge.
        deadline = time.monotonic() + 10
        while len(timings) <= 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join()
    assert len(timings) > 10
    bad = [t for t in timings if t[1] not in (200, 202) or t[2] > PROMPT]
    assert not bad, f"{len(bad)} of {len(timings)} requests failed or were slow: {bad[:10]}"


def operations(server: Server, app: str, token: str | None = None) -> list[dict]:
    with server.http(token) as http:
        found: list[dict] = http.get(f"/apps/{app}/operations").json()
        return found


def configuration(server: Server, app: str, token: str | None = None) -> dict[str, str]:
    with server.http(token) as http:
        values: dict[str, str] = http.get(f"/apps/{app}/configuration").json()["values"]
        return values


def finished(server: Server, operation_id: int, token: str | None = None) -> dict:
    deadline = time.monotonic() + 30
    with server.http(token) as http:
        while time.monotonic() < deadline:
            operation: dict = http.get(f"/operations/{operation_id}").json()
            if operation["status"] not in ("queued", "running"):
                return operation
            time.sleep(0.05)
    raise AssertionError(f"operation {operation_id} did not finish in 30 s")


def tenant(server: Server, user_token: Users) -> tuple[str, str]:
    """A non-admin user with an app of their own: (app, token)."""
    _, token = user_token()
    app = "lim-" + uuid.uuid4().hex[:10]
    created = server.cli("apps:create", app, token=token)
    assert created.code == 0, created.text
    return app, token


def error(response: httpx.Response) -> tuple[int, dict]:
    return response.status_code, response.json()


def test_configuration_of_100000_keys_is_refused_while_others_are_served(
    server: Server, app: str, user_token: Users
) -> None:
    target, token = tenant(server, user_token)
    assert server.cli("config:set", "--app", target, "BASE=1", token=token).code == 0
    before, ops_before = configuration(server, target, token), len(operations(server, target))
    huge = {"set": {f"K{i:06d}": "v" for i in range(100_000)}}
    with others_requests(server, server.token, app), server.http(token) as http:
        for _ in range(3):  # as the attack did: three in a row
            started = time.monotonic()
            answer = http.post(f"/apps/{target}/configuration", json=huge)
            assert time.monotonic() - started < 2
            assert error(answer) == (
                422,
                {
                    "error": "limit_exceeded",
                    "message": "configuration would have 100001 keys; the limit is 1000 per app",
                },
            )
        assert configuration(server, target, token) == before
        assert len(operations(server, target)) == ops_before
        # Up to the limit is accepted, and written in one short transaction.
        full = {f"K{i:06d}": "v" * 100 for i in range(999)}
        accepted = http.post(f"/apps/{target}/configuration", json={"set": full})
        assert accepted.status_code == 202, accepted.text
        assert finished(server, accepted.json()["id"], token)["status"] == "succeeded"
    assert configuration(server, target, token) == {"BASE": "1", **full}
    more = server.cli("config:set", "--app", target, "ONE_MORE=1", token=token)
    assert (more.code, more.err.strip()) == (
        6,
        "Error: configuration would have 1001 keys; the limit is 1000 per app",
    )


def test_key_length_total_size_and_deploy_configuration_are_limited(
    server: Server, app: str
) -> None:
    assert server.cli("config:set", "--app", app, "KEEP=1").code == 0
    before, ops_before = configuration(server, app), len(operations(server, app))

    long_key = server.cli("config:set", "--app", app, "K" * 256 + "=v")
    assert (long_key.code, long_key.err.strip()) == (
        6,
        f"Error: the configuration key {'K' * 32}... is 256 characters long; the limit is 255",
    )
    values = {f"BIG_{i:02d}": "x" * 64_000 for i in range(17)}
    size = sum(len(k) + len(v) for k, v in values.items()) + len("KEEP") + 1
    with server.http() as http:
        assert error(http.post(f"/apps/{app}/configuration", json={"set": values})) == (
            422,
            {
                "error": "limit_exceeded",
                "message": f"configuration would be {size} bytes (keys and values); "
                "the limit is 1048576 bytes (1 MiB) per app",
            },
        )
        unset = {"unset": [f"U{i}" for i in range(1001)]}
        assert error(http.post(f"/apps/{app}/configuration", json=unset))[1]["message"] == (
            "the change unsets 1001 keys; the limit is 1000 per app"
        )
        # A deploy's configuration is held to the same limits.
        deploy = {
            "docker_image": "127.0.0.1:5000/dockyard-test/none:1",
            "set": {f"D{i}": "v" for i in range(1000)},
        }
        assert error(http.post(f"/apps/{app}/deploy", json=deploy))[1]["message"] == (
            "configuration would have 1001 keys; the limit is 1000 per app"
        )
    assert configuration(server, app) == before
    assert len(operations(server, app)) == ops_before


def test_json_bodies_over_the_limit_get_413_without_being_read(server: Server, app: str) -> None:
    refused = {
        "error": "too_large",
        "message": "the request body is larger than the limit of 2 MiB",
    }
    ops_before = len(operations(server, app))

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to go by
        yield b'{"set": {"A": "'
        for _ in range(3):
            yield b"x" * MIB
        yield b'"}}'

    with server.http() as http:
        sized = http.post(
            f"/apps/{app}/configuration",
            content=b'{"set": {"A": "' + b"x" * (3 * MIB) + b'"}}',
            headers={"Content-Type": "application/json"},
        )
        assert error(sized) == (413, refused)
        streamed = http.post(
            f"/apps/{app}/configuration",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert error(streamed) == (413, refused)
        # Below the limit, chunked or not, a body is read as before.
        small = http.post(
            f"/apps/{app}/configuration",
            content=iter([b'{"set": {"SMALL": "1"}}']),
            headers={"Content-Type": "application/json"},
        )
        assert small.status_code == 202, small.text
        assert finished(server, small.json()["id"])["status"] == "succeeded"
    assert configuration(server, app) == {"SMALL": "1"}
    assert len(operations(server, app)) == ops_before + 1


def test_queued_operations_per_app_and_the_server_flags(
    backend: str, fresh_server: Callable[..., Server]
) -> None:
    server = fresh_server(
        workers=0,  # nothing runs: what is queued stays queued
        extra_args=["--max-config-keys", "3", "--max-request-body", "1KiB"],
    )
    app, other = "queued", "other"
    for handle in (app, other):
        assert server.cli("apps:create", handle).code == 0
    with server.http() as http:
        for n in range(100):
            answer = http.post(f"/apps/{app}/configuration", json={"set": {"N": str(n)}})
            assert answer.status_code == 202, answer.text
        full = http.post(f"/apps/{app}/configuration", json={"set": {"N": "101"}})
        message = (
            f"app {app} has 100 operations queued; the limit is 100: "
            "wait for some to finish, or cancel some"
        )
        assert error(full) == (409, {"error": "limit_exceeded", "message": message})
        assert len(operations(server, app)) == 100
        refused = server.cli("config:set", "--app", app, "N=102")
        assert (refused.code, refused.err.strip()) == (5, f"Error: {message}")
        # The limit is per app; a cancelled operation frees its place.
        assert http.post(f"/apps/{other}/configuration", json={"set": {"A": "1"}}).is_success
        first = operations(server, app)[-1]["id"]
        assert http.post(f"/operations/{first}/cancel").is_success
        assert http.post(f"/apps/{app}/configuration", json={"set": {"N": "103"}}).is_success
        assert error(http.post(f"/apps/{app}/configuration", json={"set": {"N": "104"}}))[0] == 409

        # --max-config-keys and --max-request-body
        four = {"set": {"A": "1", "B": "2", "C": "3", "D": "4"}}
        assert error(http.post(f"/apps/{other}/configuration", json=four))[1]["message"] == (
            "configuration would have 4 keys; the limit is 3 per app"
        )
        large = http.post(f"/apps/{other}/configuration", json={"set": {"A": "x" * 2000}})
        assert error(large) == (
            413,
            {"error": "too_large", "message": "the request body is larger than the limit of 1 KiB"},
        )


def test_changes_queued_together_are_checked_when_they_run(
    backend: str, fresh_server: Callable[..., Server]
) -> None:
    server = fresh_server(
        env={"DOCKYARD_OPERATION_HOLD_SECONDS": "1"}, extra_args=["--max-config-keys", "3"]
    )
    assert server.cli("apps:create", "together").code == 0
    with server.http() as http:
        first = http.post("/apps/together/configuration", json={"set": {"A": "1", "B": "2"}})
        second = http.post("/apps/together/configuration", json={"set": {"C": "3", "D": "4"}})
        assert first.status_code == second.status_code == 202
    assert finished(server, first.json()["id"])["status"] == "succeeded"
    failed = finished(server, second.json()["id"])
    assert (failed["status"], failed["message"]) == (
        "failed",
        "configuration would have 4 keys; the limit is 3 per app",
    )
    assert configuration(server, "together") == {"A": "1", "B": "2"}


# git-deploy archives and git paths: on one SQLite server of their own (the
# body goes to the data directory whatever the database).


@pytest.fixture(scope="module")
def git_server(server_factory: Callable[..., Server]) -> Server:
    return server_factory("sqlite")


def gzip_zeros(mebibytes: int) -> bytes:
    """``mebibytes`` MiB of zeros, gzip-compressed (concatenated members, as gzip reads)."""
    return gzip.compress(bytes(MIB)) * mebibytes


def header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    peak = [rss_bytes(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss_bytes(pid))

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def test_git_deploy_bodies_are_streamed_checked_and_bounded(git_server: Server) -> None:
    server = git_server
    victim = "victim-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", victim).code == 0
    _, token = user_token_on(server)
    target = "lim-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", target, token=token).code == 0
    url = f"/apps/{target}/git-deploys"
    query = {"commit": "a" * 40, "branch": "main"}
    builds = server.data_dir / "builds"

    def post(body: bytes | Iterator[bytes]) -> tuple[int, dict, float]:
        started = time.monotonic()
        with server.http(token) as http:
            answer = http.post(url, params=query, content=body, timeout=120)
        return answer.status_code, answer.json(), time.monotonic() - started

    def one_gib_and_more() -> Iterator[bytes]:
        chunk = bytes(MIB)
        for _ in range(1025):
            yield chunk

    entries = io.BytesIO()
    with gzip.GzipFile(fileobj=entries, mode="wb", compresslevel=1) as packed:
        packed.writelines(header(f"f{i}", 0) for i in range(100_001))

    assert server.process is not None
    with others_requests(server, server.token, victim), peak_rss(server.process.pid) as peak:
        status, body, _ = post(b"this is not a tar file")
        assert (status, body) == (
            422,
            {"error": "invalid_archive", "message": "the git-deploy body is not a tar archive"},
        )
        # 1 GiB of zeros, gzip-compressed: about 1 MiB to send.
        status, body, took = post(gzip_zeros(1024))
        assert (status, body["message"]) == (
            422,
            "the git-deploy body is an empty tar archive: it has no files",
        )
        assert took < 2
        # A member that claims 64 GiB, then gigabytes of zeros to inflate.
        status, body, took = post(gzip.compress(header("Dockerfile", 64 * GIB)) + gzip_zeros(512))
        assert (status, body) == (
            413,
            {
                "error": "too_large",
                "message": "the git-deploy body unpacks to more than the limit of 4 GiB",
            },
        )
        assert took < 2
        status, body, took = post(entries.getvalue())
        assert (status, body["message"]) == (
            413,
            "the git-deploy body has more entries than the limit of 100000",
        )
        # Streamed, never held: refused at the first byte beyond 1 GiB.
        status, body, took = post(one_gib_and_more())
        assert (status, body) == (
            413,
            {
                "error": "too_large",
                "message": "the git-deploy body is larger than the limit of 1 GiB",
            },
        )
    assert peak[0] < 300 * MIB, f"the server's RSS reached {peak[0] // MIB} MiB"
    assert operations(server, target) == []
    assert not list(builds.glob("upload-*"))  # every refused body was removed


def user_token_on(server: Server) -> tuple[str, str]:
    name = "user-" + uuid.uuid4().hex[:8]
    result = server.cli("users:create", name, "--output", "json")
    assert result.code == 0, result.text
    return name, json.loads(result.out)["token"]


@pytest.mark.parametrize(
    "path",
    [
        "/git/{app}.git/../../../etc/passwd",
        "/git/{app}.git/%2e%2e/%2e%2e/etc/passwd",
        "/git/{app}.git/%2E%2E%2F%2E%2E%2Fadmin-token",
        "/git/{app}.git//info/refs",
        "/git/{app}.git/./info/refs",
        "/git/{app}.git/info/refs/../../HEAD",
        "/git/..%2f{app}.git/info/refs",
        "/git/%2e%2e/{app}.git/info/refs",
        "/git//{app}.git/info/refs",
        "/git/{app}.git/config",
        "/git/{app}/info/refs",
    ],
)
def test_git_paths_that_are_not_canonical_answer_404(git_server: Server, path: str) -> None:
    app = "paths"
    git_server.cli("apps:create", app)
    connection = http.client.HTTPConnection("127.0.0.1", git_server.port, timeout=10)
    try:
        basic = "Basic " + base64.b64encode(f"x:{git_server.token}".encode()).decode()
        connection.request("GET", path.format(app=app), headers={"Authorization": basic})
        answer = connection.getresponse()
        text = answer.read().decode()
    finally:
        connection.close()
    assert answer.status == 404, text
    assert text.startswith(("not a git path", "not a Dockyard git repository", '{"error"')), text
    # The canonical path works.
    with httpx.Client(auth=("x", git_server.token)) as client:
        refs = client.get(f"{git_server.url}/git/{app}.git/info/refs?service=git-upload-pack")
    assert refs.status_code == 200


def test_pushes_are_bounded_as_sent_and_as_deployed(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(
        "sqlite", extra_args=["--max-archive-size", "1MiB", "--max-archive-entries", "10"]
    )
    assert server.cli("apps:create", "pushed").code == 0
    remote = f"http://anyone:{server.token}@127.0.0.1:{server.port}/git/pushed.git"
    repo = WorkingCopy(tmp_path / "work", remote)

    small = repo.commit({"README": "small\n"})
    assert repo.push("main:small").code == 0  # a branch that does not deploy: stored
    assert repo.remote_head("small") == small

    (repo.path / "noise.bin").write_bytes(os.urandom(2 * MIB))  # incompressible
    repo.commit({})
    big = repo.push("HEAD:big")
    assert big.code != 0
    assert "413" in big.output, big.output
    assert repo.remote_head("big") is None

    # A small pack of a large tree: the hook's archive is refused, and says why.
    repo.git("checkout", "-q", "-b", "zeros", small)
    (repo.path / "zeros").write_bytes(bytes(3 * MIB))
    repo.commit({"Dockerfile": "FROM scratch\n"})
    zeros = repo.push("HEAD:main")
    assert zeros.code != 0
    assert (
        "remote: Dockyard: the git-deploy body is larger than the limit of 1 MiB" in zeros.output
    ), zeros.output
    assert repo.remote_head("main") is None

    repo.git("checkout", "-q", "-b", "deploy", small)
    files = {"Dockerfile": "FROM scratch\n", **{f"file{i}": f"{i}\n" for i in range(10)}}
    repo.commit(files)
    deployed = repo.push("HEAD:main", "--force")
    assert deployed.code != 0
    assert (
        "remote: Dockyard: the git-deploy body has more entries than the limit of 10"
        in deployed.output
    ), deployed.output
    assert repo.remote_head("main") is None
    assert [o["type"] for o in operations(server, "pushed")] == []
