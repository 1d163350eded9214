"""The HAProxy router, driven directly, in front of real upstream HTTP servers.

No Dockyard server: a real HAProxy (Debian's 2.6) on a free loopback port,
its data directory in the test's temporary directory, and upstreams that are
Python HTTP/1.1 servers on 127.0.0.1 answering with their own name. The
property that matters is isolation: while one app is switched, scaled,
unrouted and joined by new apps, another app's keep-alive clients see no
failed request and no closed connection.
"""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import socket
import stat
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.router.haproxy import HAProxyRouter, stop_router
from tests.integration.servers import DOCKYARD, free_port

DOMAIN = "dockyard.localhost"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as an app behind the router
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms wait
    server: Upstream

    def do_POST(self) -> None:
        self.server.posts += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()

    def do_GET(self) -> None:
        if self.server.dropping:  # a container that dies mid-request
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path == "/ws" and self.headers.get("Upgrade"):
            self._tunnel()
            return
        if self.path.startswith("/slow"):
            time.sleep(2)
        body = f"{self.server.name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _tunnel(self) -> None:
        """A WebSocket's life as the router sees it: 101, then bytes both ways (echoed)."""
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        # RFC 6455's example: the answer to the key the test sends.
        self.send_header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while data := self.connection.recv(4096):
            self.connection.sendall(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Upstream(http.server.ThreadingHTTPServer):
    """A container stand-in: answers every request with its name."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.dropping = False
        self.posts = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks connect and reset: not an error of the test

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def upstreams() -> Iterator[Callable[[str], Upstream]]:
    made: list[Upstream] = []

    def make(name: str) -> Upstream:
        made.append(Upstream(name))
        return made[-1]

    yield make
    for upstream in made:
        upstream.stop()


RouterFactory = Callable[..., HAProxyRouter]


@pytest.fixture
def make_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterFactory]:
    """Routers on a short data directory (socket paths are at most 107 bytes)."""
    made: list[HAProxyRouter] = []
    data_dirs: set[Path] = set()

    def make(
        data_dir: Path | None = None, port: int | None = None, **options: object
    ) -> HAProxyRouter:
        directory = data_dir or tmp_path_factory.mktemp("hx") / "data"
        directory.mkdir(mode=0o700, exist_ok=True)
        router = HAProxyRouter(
            listen=f"127.0.0.1:{port or free_port()}",
            domain=DOMAIN,
            data_dir=directory,
            **options,  # type: ignore[arg-type]
        )
        router.start()
        made.append(router)
        data_dirs.add(directory)
        return router

    yield make
    for router in made:
        router.stop()
    for directory in data_dirs:
        stop_router(directory)
    for router in made:
        # HAProxy outlives its router on purpose; here it was stopped: reap it.
        child = router._supervisor._child if router._supervisor else None
        if child is not None:
            child.wait(5)


def port_of(router: HAProxyRouter) -> int:
    return int(router.listen.rpartition(":")[2])


def get(router: HAProxyRouter, app: str, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port_of(router), timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": f"{app}.{DOMAIN}"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def answers(router: HAProxyRouter, app: str) -> str | None:
    try:
        status, body = get(router, app, timeout=1)
    except (OSError, http.client.HTTPException):  # e.g. a killed worker, mid-answer
        return None
    return body.strip() if status == 200 else None


@dataclass
class Load:
    """Paced keep-alive requests to one app, over a few persistent connections."""

    router: HAProxyRouter
    app: str
    rate: float = 150.0
    connections: int = 4
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    # Connections that ended: announced (a response said Connection: close)
    # or not (the next request on it failed).
    closed: int = 0
    announced: int = 0
    bodies: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for index in range(self.connections):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, index: int) -> None:
        interval = self.connections / self.rate
        connection = http.client.HTTPConnection("127.0.0.1", port_of(self.router), timeout=10)
        due = time.monotonic() + index * interval / self.connections
        while not self._stop.is_set():
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                connection.request("GET", "/", headers={"Host": f"{self.app}.{DOMAIN}"})
                response = connection.getresponse()
                body = response.read().decode().strip()
                with self._lock:
                    if response.status == 200:
                        self.ok += 1
                        self.bodies.add(body)
                    else:
                        self.failed.append(f"{response.status} {body}")
                    if response.will_close:
                        self.closed += 1
                        self.announced += 1
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failed.append(repr(exc))
                    self.closed += 1
                connection.close()
        connection.close()

    def report(self, label: str) -> str:
        return (
            f"{label}: {self.ok} ok, {len(self.failed)} failed, {self.closed} connections "
            f"closed ({self.announced} announced)"
        )


def test_routes_switches_unroutes_and_answers_404_and_503(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router()
    one, two = upstreams("one"), upstreams("two")
    status, body = get(router, "nobody")
    assert (status, body) == (404, "No app is served at this address.\n")

    router.route("web", [one.address])
    assert get(router, "web") == (200, "one\n")
    assert router.routes() == {"web": [one.address]}
    assert router.url("web") == f"http://web.{DOMAIN}:{port_of(router)}/"
    # The Host header as browsers send it: any case, with the port.
    connection = http.client.HTTPConnection("127.0.0.1", port_of(router), timeout=5)
    connection.request("GET", "/", headers={"Host": f"WEB.{DOMAIN.upper()}:{port_of(router)}"})
    assert connection.getresponse().read() == b"one\n"
    connection.close()

    router.route("web", [two.address])
    assert {get(router, "web")[1] for _ in range(6)} == {"two\n"}
    router.route("web", [one.address, two.address])
    assert {get(router, "web")[1] for _ in range(6)} == {"one\n", "two\n"}  # round robin
    assert router.drain([one.address, two.address], 5)

    # Scaled to 0: the app is known, and says it has nothing running.
    router.route("web", [])
    status, body = get(router, "web")
    assert status == 503 and "no container running" in body, body
    assert router.routes() == {"web": []}

    # All its containers down: the same page, after the one refused connection.
    dead = free_port()
    router.route("web", [f"127.0.0.1:{dead}"])
    for _ in range(3):
        status, body = get(router, "web")
        assert status == 503 and "no container running" in body, body

    router.unroute("web")
    assert get(router, "web")[0] == 404
    assert router.routes() == {}


def test_a_dropped_request_is_sent_again_only_if_idempotent(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router()
    dying, good = upstreams("dying"), upstreams("good")
    dying.dropping = True
    router.route("web", [dying.address, good.address])
    # A GET it dropped goes to the other container: every one is answered.
    assert {get(router, "web") for _ in range(6)} == {(200, "good\n")}
    router.route("web", [])
    router.route("web", [dying.address, good.address])  # both up again
    statuses = []
    for _ in range(4):
        connection = http.client.HTTPConnection("127.0.0.1", port_of(router), timeout=10)
        connection.request("POST", "/", body=b"order=1", headers={"Host": f"web.{DOMAIN}"})
        statuses.append(connection.getresponse().status)
        connection.close()
    # A POST is never sent twice: one the dying container took fails.
    assert dying.posts + good.posts == 4, (dying.posts, good.posts, statuses)
    assert dying.posts >= 1 and statuses.count(200) == good.posts


def test_custom_names_and_wildcards_are_map_entries(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router()
    shop, blog = upstreams("shop"), upstreams("blog")
    router.route("shop", [shop.address])
    router.route("blog", [blog.address])
    router.set_names("shop", ["*.shop.example", "shop.example"])
    router.set_names("blog", ["news.shop.example"])  # an exact name wins over a wildcard

    def via(host: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port_of(router), timeout=5)
        try:
            connection.request("GET", "/", headers={"Host": host})
            response = connection.getresponse()
            return response.status, response.read().decode().strip()
        finally:
            connection.close()

    assert via("shop.example") == (200, "shop")
    assert via("a.shop.example") == (200, "shop")
    assert via("news.shop.example") == (200, "blog")
    assert via("a.b.shop.example")[0] == 404  # one label, as a certificate's wildcard
    assert router.names() == {
        "shop": ["*.shop.example", "shop.example"],
        "blog": ["news.shop.example"],
    }
    router.set_names("shop", ["shop.example"])
    assert via("a.shop.example")[0] == 404
    router.unroute("shop")
    assert via("shop.example")[0] == 404
    router.route("shop", [shop.address])  # its names come back with its route
    assert via("shop.example") == (200, "shop")


@pytest.mark.parametrize("crowd", [0, 200])
def test_nothing_that_happens_to_one_app_reaches_another(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream], crowd: int
) -> None:
    """With ``crowd`` other apps routed too (200: past the first pool of 128)."""
    router = make_router()
    b = upstreams("b")
    a = [upstreams(f"a{i}") for i in range(7)]
    router.route("app-b", [b.address])
    router.route("app-a", [a[0].address])
    if crowd:
        others = upstreams("others")
        for index in range(crowd):
            router.route(f"crowd-{index}", [others.address])
        assert answers(router, f"crowd-{crowd - 1}") == "others"
    reloads = router.reloads  # the pool grew, before B's load
    started = time.monotonic()
    with Load(router, "app-b") as load:
        for switch in range(20):  # release switches, each drained
            old, new = a[switch % 2], a[(switch + 1) % 2]
            time.sleep(0.1)  # a deploy's pace, or B's load would be over too soon to judge
            router.route("app-a", [new.address])
            assert answers(router, "app-a") == new.name
            assert router.drain([old.address], 5)
        router.route("app-a", [x.address for x in a[:6]])  # scaled up, past its slots
        assert {answers(router, "app-a") for _ in range(12)} == {x.name for x in a[:6]}
        router.route("app-a", [a[0].address])  # and down
        assert router.drain([x.address for x in a[1:6]], 5)
        router.route("app-a", [])  # to 0
        assert get(router, "app-a")[0] == 503
        router.route("app-a", [a[1].address])
        router.unroute("app-a")
        assert get(router, "app-a")[0] == 404
        router.route("app-a", [a[2].address])
        assert answers(router, "app-a") == "a2"
        for index in range(10):  # new apps
            router.route(f"new-{index}", [a[6].address])
            assert answers(router, f"new-{index}") == "a6"
    elapsed = time.monotonic() - started
    print(load.report(f"app B during A's switches, scales, unroute, new apps ({elapsed:.1f} s)"))
    assert load.ok > 0.8 * load.rate * elapsed
    assert load.failed == []
    assert load.closed == 0
    assert load.bodies == {"b"}
    assert router.reloads == reloads


def test_a_long_request_finishes_across_its_own_apps_switch_and_drain_waits_for_it(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router()
    old, new = upstreams("old"), upstreams("new")
    router.route("web", [old.address])
    outcome: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: outcome.append(get(router, "web", "/slow")))
    started = time.monotonic()
    slow.start()
    time.sleep(0.3)
    router.route("web", [new.address])
    assert answers(router, "web") == "new"
    assert router.drain([old.address], 10) is True
    drained = time.monotonic() - started
    slow.join(5)
    assert outcome == [(200, "old\n")]
    print(f"drain returned {drained:.2f} s after a 2 s request started")
    assert 1.9 < drained < 3
    # A timeout is reported as such.
    router.route("web", [old.address])
    slow = threading.Thread(target=lambda: get(router, "web", "/slow"))
    slow.start()
    time.sleep(0.3)
    router.route("web", [new.address])
    assert router.drain([old.address], 0.5) is False
    slow.join(5)


def switch_cost(
    router: HAProxyRouter, app: str, pair: tuple[Upstream, Upstream], times: int
) -> float:
    """Median time from route() to the first request the new upstream answers."""
    costs = []
    for index in range(times):
        old, new = pair[index % 2], pair[(index + 1) % 2]
        started = time.perf_counter()
        router.route(app, [new.address])
        while answers(router, app) != new.name:
            pass
        costs.append(time.perf_counter() - started)
        router.drain([old.address], 5)
    return statistics.median(costs)


def test_a_switch_costs_the_same_with_200_apps(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    pair = (upstreams("x"), upstreams("y"))
    router = make_router()
    router.route("app-0", [pair[0].address])
    alone = switch_cost(router, "app-0", pair, 30)
    other = upstreams("other")
    started = time.perf_counter()
    for index in range(1, 200):
        router.route(f"app-{index}", [other.address])
    routing = time.perf_counter() - started
    assert answers(router, "app-199") == "other"
    crowded = switch_cost(router, "app-0", pair, 30)
    print(
        f"switch cost: {alone * 1000:.1f} ms with 1 app, {crowded * 1000:.1f} ms with 200 "
        f"({crowded / alone:.2f}x); routing 199 apps took {routing:.2f} s, "
        f"{router.reloads} reload(s)"
    )
    assert crowded < max(2 * alone, alone + 0.005)


def test_a_used_up_pool_grows_in_one_seamless_reload(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router(pool=4)
    b, a, old, new = upstreams("b"), upstreams("a"), upstreams("old"), upstreams("new")
    router.route("app-b", [b.address])
    router.route("app-c", [old.address])
    outcome: list[tuple[int, str]] = []
    with Load(router, "app-b") as load:
        for index in range(2):
            router.route(f"new-{index}", [a.address])
        assert router.reloads == 0
        # A request the old worker is serving through the reload...
        slow = threading.Thread(target=lambda: outcome.append(get(router, "app-c", "/slow")))
        slow.start()
        time.sleep(0.3)
        started = time.monotonic()
        router.route("new-2", [a.address])  # the fifth backend: the pool grows
        grown = time.monotonic() - started
        assert router.reloads == 1
        for index in range(3, 6):  # ... once, for the next ones too (8 in all)
            router.route(f"new-{index}", [a.address])
        assert all(answers(router, f"new-{i}") == "a" for i in range(6))
        # ... is waited for by a drain, though the new worker never saw it.
        router.route("app-c", [new.address])
        assert router.drain([old.address], 10)
        assert time.monotonic() - started > 1.5
        slow.join(5)
        assert outcome == [(200, "old\n")]
        time.sleep(0.5)
    assert router.reloads == 1
    print(load.report(f"app B through a pool growth (reload took {grown * 1000:.0f} ms)"))
    assert load.failed == []
    # The old worker closes each connection only after answering a request on
    # it, with Connection: close: no request lost, at most one close each.
    assert load.closed == load.announced <= load.connections
    assert load.bodies == {"b"}
    assert answers(router, "app-b") == "b"


def test_a_killed_haproxy_is_restarted_with_every_route_and_adopted_by_the_next(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router()
    apps = {f"app-{i}": upstreams(f"u{i}") for i in range(5)}
    for app, upstream in apps.items():
        router.route(app, [upstream.address])
    router.route("scaled-to-0", [])
    recoveries = []
    for _ in range(3):
        pid = router.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # Its worker serves on for a moment; then the new one does.
        while router.pid in (None, pid) or answers(router, "app-0") != "u0":
            assert time.monotonic() - killed < 5, "haproxy did not come back in 5 s"
            time.sleep(0.005)
        recoveries.append(time.monotonic() - killed)
        assert all(answers(router, app) == u.name for app, u in apps.items())
        assert get(router, "scaled-to-0")[0] == 503
        assert router.pid not in (None, pid)
    print(
        "haproxy back after SIGKILL in " + ", ".join(f"{r * 1000:.0f}" for r in recoveries) + " ms"
    )
    assert max(recoveries) < 1.5
    # The restarted one is driven as the first was.
    router.route("app-0", [apps["app-1"].address])
    assert answers(router, "app-0") == "u1"

    # The next router (the next server) adopts it: the same process, routes and all.
    router.stop()
    assert answers(router, "app-0") == "u1"  # nobody supervises it, and it serves
    data_dir = router.directory.parent
    second = make_router(data_dir=data_dir, port=port_of(router))
    assert second.pid == router.pid
    assert second.routes() == router.routes()
    assert answers(second, "app-0") == "u1"
    second.route("app-0", [apps["app-0"].address])
    assert answers(second, "app-0") == "u0"
    pid = second.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # an adopted one is supervised too
    killed = time.monotonic()
    while answers(second, "app-0") != "u0":
        assert time.monotonic() - killed < 5
        time.sleep(0.005)


def test_an_adopting_router_on_another_address_moves_it_seamlessly(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    first = make_router()
    web = upstreams("web")
    first.route("web", [web.address])
    first.stop()
    second = make_router(data_dir=first.directory.parent)
    assert second.pid == first.pid
    assert answers(second, "web") == "web"
    assert answers(first, "web") is None


def test_the_sockets_are_the_server_users_alone(make_router: RouterFactory) -> None:
    router = make_router()
    directory = router.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("haproxy.sock", "master.sock"):
        info = (directory / name).lstat()
        assert stat.S_ISSOCK(info.st_mode), name
        assert stat.S_IMODE(info.st_mode) == 0o600, name
        assert info.st_uid == os.getuid()
    for name in ("haproxy.cfg", "hosts.map", "state.json"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    # No admin port: HAProxy listens on TCP only where the apps are served.
    pids = subprocess.run(
        ["pgrep", "-f", str(directory / "haproxy.cfg")], capture_output=True, text=True
    ).stdout.split()
    listening = subprocess.run(
        ["ss", "-Hltnp"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    mine = [line for line in listening if any(f"pid={pid}," in line for pid in pids)]
    assert mine and all(f"{router.listen} " in line for line in mine), mine
    # A second router on the same address fails, and says why.
    with pytest.raises(Exception, match="address is in use"):
        make_router(port=port_of(router))
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(str(directory / "haproxy.sock"))  # the server's user reaches it


def test_dockyard_server_stop_router_stops_it(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router()
    web = upstreams("web")
    router.route("web", [web.address])
    router.stop()  # as a server that exits: HAProxy serves on
    pid = router.pid
    data_dir = router.directory.parent
    done = subprocess.run(
        [DOCKYARD, "server", "--data-dir", str(data_dir), "--stop-router"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stopped the router of {data_dir} (haproxy, pid {pid})"
    assert answers(router, "web") is None
    assert not (router.directory / "haproxy.pid").exists()


def test_a_websocket_stays_open_through_other_apps_changes_and_a_reload(
    make_router: RouterFactory, upstreams: Callable[[str], Upstream]
) -> None:
    router = make_router(pool=2)
    b, a1, a2 = upstreams("b"), upstreams("a1"), upstreams("a2")
    router.route("app-b", [b.address])
    router.route("app-a", [a1.address])
    with socket.create_connection(("127.0.0.1", port_of(router)), timeout=5) as ws:
        ws.sendall(
            f"GET /ws HTTP/1.1\r\nHost: app-b.{DOMAIN}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += ws.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head

        def echoed(message: bytes) -> bool:
            ws.sendall(message)
            received = b""
            while len(received) < len(message):
                chunk = ws.recv(4096)
                if not chunk:
                    return False
                received += chunk
            return received == message

        for switch in range(10):
            router.route("app-a", [(a1, a2)[switch % 2].address])
            assert echoed(f"ping {switch}".encode())
        router.route("new-app", [a1.address])  # the pool is used up: a reload
        assert router.reloads == 1
        for index in range(10):
            assert echoed(f"after the reload {index}".encode())
            time.sleep(0.05)
        # The worker that a reload replaced still carries it, and would until hard-stop-after.
        assert router._old_workers()
