"""The edge: what one app's changes do to another app's traffic through the real router.

App B takes a paced keep-alive load over a few persistent connections, and a
WebSocket to app W stays open, while app A is deployed again and again,
reconfigured, and scaled up and down. Nothing of that may reach B or W: no
failed request, no connection closed, no WebSocket closed. A slow request to
A across A's own deploy completes.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.integration.registry import Registry
from tests.integration.servers import Server
from tests.integration.test_deploys import credentials, deploy, served
from tests.integration.websocket import WebSocket

ON_SWARM = True
# The router's behaviour does not depend on the database: SQLite and the swarm.
BACKENDS = ["sqlite"]
CONNECTIONS = 4
PACE = 0.02  # seconds between one connection's requests: about 200/s in all


@dataclass
class Load:
    outcomes: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0


@contextmanager
def keep_alive_load(server: Server, app: str) -> Iterator[Load]:
    """CONNECTIONS persistent connections to the app, each sending GET / in a loop."""
    load = Load()
    stop = threading.Event()
    lock = threading.Lock()

    def loop() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.router_port, timeout=30)
        connection.connect()
        while not stop.is_set():
            try:
                connection.request("GET", "/", headers={"Host": f"{app}.dockyard.localhost"})
                response = connection.getresponse()
                body = response.read().decode().strip()
                outcome = f"{response.status} {body}"
                closed = response.will_close
            except (OSError, http.client.HTTPException) as exc:
                outcome, closed = f"error {type(exc).__name__}", True
            with lock:
                load.outcomes[outcome] += 1
                if closed:
                    load.reconnects += 1
            if closed:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.router_port, timeout=30)
            time.sleep(PACE)
        connection.close()

    threads = [threading.Thread(target=loop) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def new_app(server: Server, registry: Registry, image: str) -> str:
    app = "edge-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", app).code == 0
    done = deploy(server, app, registry.image(image), *credentials(registry))
    assert done.code == 0, done.text
    return app


def test_one_apps_changes_reach_no_other_app(
    server: Server, registry: Registry, backend: str
) -> None:
    a = new_app(server, registry, "web:v1")
    b = new_app(server, registry, "web:v2")
    w = new_app(server, registry, "ws:v1")
    socket = WebSocket(server.router_port, f"{w}.dockyard.localhost")
    socket.send("before")
    assert socket.receive() == "before"
    deploys = 20 if backend != "swarm" else 6  # a Swarm deploy takes seconds
    slow: dict[str, str] = {}

    def slow_request() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.router_port, timeout=30)
        connection.request("GET", "/cgi-bin/slow", headers={"Host": f"{a}.dockyard.localhost"})
        response = connection.getresponse()
        slow["answer"] = f"{response.status} {response.read().decode().strip()}"

    with keep_alive_load(server, b) as load:
        for n in range(deploys):
            image = registry.image("web:v2" if n % 2 else "web:v1")
            if n == 1:  # a 2 s request across A's own deploy
                across = threading.Thread(target=slow_request)
                across.start()
                time.sleep(0.3)
            done = deploy(server, a, image, *credentials(registry))
            assert done.code == 0, done.text
            if n == 1:
                across.join()
        assert server.cli("config:set", "--app", a, f"ROUND={deploys}").code == 0
        for count in ("3", "1"):
            scaled = server.run("apps:scale", "--app", a, "cmd", "--container-count", count)
            assert scaled.code == 0, scaled.text
        for _ in range(3):  # new apps routed meanwhile
            new_app(server, registry, "web:v1")
        socket.send("after")
        assert socket.receive() == "after"  # the same WebSocket, open all along
    socket.close()

    assert slow == {"answer": "200 slow"}
    assert set(load.outcomes) == {"200 hello-v2"}, load.outcomes
    assert load.outcomes["200 hello-v2"] > 200
    assert load.reconnects == 0, f"{load.reconnects} connections to B were closed"
    assert served(server, a) == "hello-v2"  # the last deploy's (n odd)


def test_an_app_with_nothing_running_answers_503_and_an_unknown_host_404(
    server: Server, registry: Registry
) -> None:
    app = new_app(server, registry, "web:v1")
    scaled = server.run("apps:scale", "--app", app, "cmd", "--container-count", "0")
    assert scaled.code == 0, scaled.text
    down = server.get(app)
    assert (down.status_code, down.text) == (
        503,
        "This app has no container running: it is scaled to 0, or its containers are down.\n",
    )
    unknown = server.get("no-such-app-" + uuid.uuid4().hex[:6])
    assert (unknown.status_code, unknown.text) == (404, "No app is served at this address.\n")
    assert server.run("apps:scale", "--app", app, "cmd", "--container-count", "1").code == 0
    assert served(server, app) == "hello-v1"
