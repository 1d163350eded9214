"""The router is supervised and outlives the server; the data directory is locked and private.

Real servers on the test Docker engine (SQLite): the router (HAProxy) is
killed with SIGKILL and must be back within a second with every route; the
server is killed and the apps keep answering through the router, which the
restarted server adopts; a Caddy an earlier version left hands over; a
second server cannot take the data directory or the router's address; the
data directory and the router's control sockets are the server user's alone.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.registry import Registry, remove_app_containers
from tests.integration.servers import DOCKYARD, Server, free_port
from tests.integration.test_deploys import credentials, deploy, request_loop, served

ServerFactory = Callable[..., Server]


SOCKETS = ("haproxy.sock", "master.sock")  # the runtime API, the master's CLI


def ask(sock: Path) -> str:
    """One request on a router's control socket, as the server makes them."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(5)
        connection.connect(str(sock))
        connection.sendall(b"show info\n" if sock.name == "haproxy.sock" else b"show proc\n")
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Servers of this test (SQLite, Docker), stopped with their routers after it."""
    made: list[Server] = []

    def make(*, data_dir: Path | None = None, **options: object) -> Server:
        directory = data_dir or tmp_path / f"server-{len(made)}" / "data"
        directory.parent.mkdir(parents=True, exist_ok=True)
        made.append(Server(data_dir=directory, database_url=None, **options))  # type: ignore[arg-type]
        return made[-1].start()

    yield make
    installations = {server.installation() for server in made}
    for server in made:
        server.stop()
    remove_app_containers({i for i in installations if i})


def deployed(server: Server, registry: Registry, *tags: str) -> list[str]:
    """One app per image tag, deployed and answering through the router."""
    apps = []
    for tag in tags:
        app = f"sup-{tag.replace(':', '-')}-{os.urandom(3).hex()}"
        assert server.cli("apps:create", app).code == 0
        result = deploy(server, app, registry.image(tag), *credentials(registry))
        assert result.code == 0, result.text
        apps.append(app)
    return apps


def answer(server: Server, app: str) -> str | None:
    try:
        response = server.get(app, timeout=1)
    except httpx.HTTPError:
        return None
    return response.text.strip() if response.status_code == 200 else None


def test_killed_router_is_back_within_a_second_with_every_route(
    make_server: ServerFactory, local_registry: Registry
) -> None:
    registry = local_registry
    server = make_server()
    first, second = deployed(server, registry, "web:v1", "web:v2")
    for _ in range(3):
        pid = server.router_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while answer(server, first) != "hello-v1":
            assert time.monotonic() - killed < 5, "the router did not come back in 5 s"
            time.sleep(0.005)
        recovery = time.monotonic() - killed
        print(f"router back {recovery * 1000:.0f} ms after SIGKILL")
        assert recovery < 1.5
        assert served(server, second) == "hello-v2"
        assert server.router_pid() not in (None, pid)
    # The restarted router is driven as the first was: a route change works.
    result = deploy(server, second, registry.image("web:v1"))
    assert result.code == 0, result.text
    assert served(server, second) == "hello-v1"
    assert "starting it again" in server.log()


def test_apps_answer_while_the_server_is_down_and_it_adopts_the_router(
    make_server: ServerFactory, local_registry: Registry
) -> None:
    registry = local_registry
    server = make_server()
    (app,) = deployed(server, registry, "web:v1")
    router = server.router_pid()
    with request_loop(server, app) as outcomes:
        time.sleep(0.3)
        server.kill()
        time.sleep(2)  # down: nothing supervises the router, and it serves
        assert server.router_pid() == router
        server.start()
        time.sleep(0.5)
    assert set(outcomes) == {"200 hello-v1"}, outcomes
    assert outcomes.total() > 50
    assert server.router_pid() == router, "the restarted server replaced the router"
    assert "adopted the running haproxy" in server.log()
    # The adopted router is driven and supervised as one the server started.
    result = deploy(server, app, registry.image("web:v2"))
    assert result.code == 0, result.text
    assert served(server, app) == "hello-v2"
    assert router is not None
    os.kill(router, signal.SIGKILL)
    killed = time.monotonic()
    while answer(server, app) != "hello-v2":
        assert time.monotonic() - killed < 1.5, "an adopted router was not restarted"
        time.sleep(0.005)
    # A server stopped cleanly leaves the router serving too.
    server.stop(router=False)
    assert served(server, app) == "hello-v2"


def test_the_caddy_an_earlier_version_left_serving_hands_over(
    make_server: ServerFactory, local_registry: Registry, tmp_path: Path
) -> None:
    """A server upgraded over a data directory whose Caddy (the router of
    earlier versions, which outlived its server) still holds the router's
    address: it is stopped, HAProxy takes the address, the routes come back."""
    server = make_server()
    (app,) = deployed(server, local_registry, "web:v1")
    server.stop()  # and its HAProxy: the earlier version's router is there instead
    router = server.data_dir / "router"
    holder = (
        "import socket, sys, time\n"
        "s = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
        "s.listen()\n"
        "time.sleep(600)\n"
    )
    caddy = subprocess.Popen(  # named caddy, as the process it stands in for
        ["caddy", "-c", holder, str(server.router_port), str(router / "caddy.json")],
        executable="/usr/bin/python3",
    )
    try:
        (router / "caddy.pid").write_text(f"{caddy.pid}\n")
        deadline = time.monotonic() + 5
        while not listening(server.router_port):
            assert time.monotonic() < deadline, "the stand-in Caddy does not listen"
            time.sleep(0.05)
        server.start()
        assert caddy.wait(timeout=10) is not None
        assert served(server, app) == "hello-v1"
        assert "stopped the Caddy an earlier version left" in server.log()
        assert not (router / "caddy.pid").exists()
    finally:
        caddy.kill()
        caddy.wait()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_second(
    data_dir: Path, router_port: int
) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [DOCKYARD, "server", "--data-dir", str(data_dir)]
    command += ["--listen", f"127.0.0.1:{free_port()}"]
    command += ["--router-listen", f"127.0.0.1:{router_port}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return done, time.monotonic() - started


def test_a_second_server_cannot_take_the_data_directory_or_the_router(
    make_server: ServerFactory, local_registry: Registry, tmp_path: Path
) -> None:
    registry = local_registry
    server = make_server()
    (app,) = deployed(server, registry, "web:v1")
    router = server.router_pid()
    assert server.process is not None

    # The same data directory, any router address: refused before anything.
    config = (server.data_dir / "router" / "haproxy.cfg").stat().st_mtime_ns
    done, elapsed = start_second(server.data_dir, free_port())
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"dockyard server: data directory {server.data_dir} is in use by another "
        f"Dockyard server (pid {server.process.pid})"
    ]
    assert elapsed < 5
    assert (server.data_dir / "lock").read_text() == f"{server.process.pid}\n"
    assert (server.data_dir / "router" / "haproxy.cfg").stat().st_mtime_ns == config

    # Another data directory, the same router address: the first is untouched.
    other = tmp_path / "other-data"
    done, elapsed = start_second(other, server.router_port)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"dockyard server: the router cannot listen on 127.0.0.1:{server.router_port}: "
        "the address is in use (by another Dockyard server's router?)"
    )
    assert not (other / "router" / "haproxy.pid").exists()

    assert httpx.get(server.url + "/healthz").status_code == 200
    assert server.router_pid() == router
    for _ in range(20):  # every connection still goes to the first server's router
        assert served(server, app) == "hello-v1"
    assert server.cli("apps:show", "--app", app).code == 0


def test_the_data_directory_is_made_private_whatever_existed(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "git" / "old.git").mkdir(parents=True)
    for directory in (data, data / "git", data / "git" / "old.git"):
        directory.chmod(0o755)
    (data / "notes.txt").write_text("left by an operator\n")
    (data / "notes.txt").chmod(0o644)
    (data / "git" / "old.git" / "HEAD").write_text("ref: refs/heads/main\n")
    (data / "git" / "old.git" / "HEAD").chmod(0o664)
    hook = data / "run-me"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)

    server = make_server(data_dir=data)
    assert server.cli("apps:create", "private-" + os.urandom(3).hex()).code == 0
    entries = [data, *data.rglob("*")]
    assert any(p.name == "dockyard.db" for p in entries)
    assert any(p.name == "master.key" for p in entries)
    assert any(p.suffix == ".git" and p.name != "old.git" for p in entries)
    for path in entries:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_ISDIR(mode):
            assert stat.S_IMODE(mode) == 0o700, path
        else:
            assert stat.S_IMODE(mode) & 0o077 == 0, f"{path}: {oct(mode)}"
    assert stat.S_IMODE((data / "notes.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "git" / "old.git" / "HEAD").stat().st_mode) == 0o600
    assert stat.S_IMODE(hook.stat().st_mode) == 0o700  # still runs, for its owner


def test_the_router_control_channel_is_a_socket_only_the_server_user_reaches(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    directory = server.data_dir / "router"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for sock in (directory / name for name in SOCKETS):
        info = sock.lstat()
        assert stat.S_ISSOCK(info.st_mode), sock
        assert stat.S_IMODE(info.st_mode) == 0o600, sock
        assert info.st_uid == directory.stat().st_uid == os.getuid()
        # The server's user reaches it...
        answer = ask(sock)
        assert "2.6" in answer, answer
        # ... no other user does, not even to connect.
        if os.getuid() == 0:
            refused(sock)

    # And the router listens on TCP only where the apps are served (HAProxy's
    # master hands its listeners to its worker).
    router = server.router_pid()
    assert router is not None
    pids = {router, *children(router)}
    listening = subprocess.run(
        ["ss", "-Hltnp"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    mine = [line for line in listening if any(f"pid={pid}," in line for pid in pids)]
    assert mine and all(f"127.0.0.1:{server.router_port} " in line for line in mine), mine


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def refused(sock: Path) -> None:
    """A user other than the server's cannot even connect to ``sock``."""
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(sock)!r})\n"
        "except PermissionError:\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-c", probe], user=65534, group=65534, capture_output=True
    )
    assert done.returncode == 3, done.stderr
