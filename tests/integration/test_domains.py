"""Custom domains: an app answers on names of its own, one app per name.

Through the real router: a request with the custom name as its Host reaches
the app; wildcards cover one label; an exact name beats another app's
wildcard; each bad input has its error and changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.integration.registry import Registry
from tests.integration.servers import Server
from tests.integration.test_deploys import credentials, deploy, served

ON_SWARM = True


def ask(server: Server, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.router_port}/", headers={"Host": host}, timeout=30)


def answers(server: Server, host: str) -> str:
    response = ask(server, host)
    assert response.status_code == 200, (host, response.status_code, response.text)
    return response.text.strip()


def listed(server: Server, app: str) -> dict:
    shown = server.cli("domains", "--app", app, "-o", "json")
    assert shown.code == 0, shown.text
    found: dict = json.loads(shown.out)
    return found


@pytest.fixture
def two_apps(server: Server, registry: Registry) -> tuple[str, str]:
    apps = []
    for image in ("web:v1", "web:v2"):
        app = "dom-" + uuid.uuid4().hex[:8]
        assert server.cli("apps:create", app).code == 0
        done = deploy(server, app, registry.image(image), *credentials(registry))
        assert done.code == 0, done.text
        apps.append(app)
    return apps[0], apps[1]


def test_custom_domains_route_to_their_app(server: Server, two_apps: tuple[str, str]) -> None:
    one, two = two_apps
    suffix = uuid.uuid4().hex[:6]
    www, shop = f"www.{suffix}.example", f"*.shop-{suffix}.example"
    added = server.cli("domains:add", "--app", one, www, shop.upper())
    assert added.code == 0, added.text
    assert added.out.strip() == f"Added {shop}, {www} to {one}"
    assert answers(server, www) == "hello-v1"
    assert answers(server, f"{www}:8080") == "hello-v1"  # a port in Host is not the name
    assert answers(server, f"cart.shop-{suffix}.example") == "hello-v1"
    assert ask(server, f"a.b.shop-{suffix}.example").status_code == 404  # one label only
    assert served(server, one) == "hello-v1"  # the default name keeps working
    assert listed(server, one) == {
        "app": one,
        "default": f"{one}.dockyard.localhost",
        "hosts": [shop, www],
        "added": [],
    }
    again = server.cli("domains:add", "--app", one, www)
    assert again.code == 0 and again.out.strip() == f"{one} already answers on {www}"

    # An exact name another app holds wins over the wildcard.
    exact = f"cart.shop-{suffix}.example"
    assert server.cli("domains:add", "--app", two, exact).code == 0
    assert answers(server, exact) == "hello-v2"
    assert answers(server, f"other.shop-{suffix}.example") == "hello-v1"

    # A name belongs to one app at a time: a conflict, and nothing changes.
    taken = server.cli("domains:add", "--app", two, f"new.{suffix}.example", www)
    assert taken.code == 5, taken.text
    assert taken.err.strip() == (
        f"Error: the domain {www} belongs to app {one!r}: remove it there first"
    )
    assert listed(server, two)["hosts"] == [exact]  # the other name was not added either
    assert answers(server, www) == "hello-v1"

    removed = server.cli("domains:remove", "--app", one, www)
    assert removed.code == 0 and removed.out.strip() == f"Removed {www} from {one}"
    assert ask(server, www).status_code == 404
    assert server.cli("domains:add", "--app", two, www).code == 0  # free for another app now
    assert answers(server, www) == "hello-v2"

    missing = server.cli("domains:remove", "--app", one, www)
    assert missing.code == 4
    assert missing.err.strip() == f"Error: app {one!r} has no domain {www}"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("localhost", "it needs at least two labels (example.com)"),
        ("-bad.example", "the label '-bad' must be 1-63 letters, digits or '-', not at an end"),
        ("a.*.example", "a wildcard is allowed only as the whole first label (*.example.com)"),
        ("10.0.0.1", "it is an IP address, not a host name"),
        (
            "x.dockyard.localhost",
            "names under the platform's own domain dockyard.localhost are given to apps "
            "by their handle",
        ),
        ("a" * 64 + ".example", f"the label {'a' * 64!r} must be 1-63 letters, digits or '-', "
         "not at an end"),
    ],
)  # fmt: skip
def test_bad_domains_are_refused_and_nothing_is_added(
    server: Server, app: str, name: str, why: str
) -> None:
    fine = "ok-" + uuid.uuid4().hex[:6] + ".example"
    refused = server.cli("domains:add", "--app", app, "--", fine, name)
    assert refused.code == 6, refused.text
    assert refused.err.strip() == f"Error: {name!r} is not a domain an app can have: {why}"
    assert listed(server, app)["hosts"] == []


def test_domains_come_back_after_a_server_and_router_restart(
    fresh_server: Callable[..., Server], registry: Registry
) -> None:
    """Names are in the database: a server started with no router state serves them."""
    server = fresh_server()
    app = "dom-restart"
    assert server.cli("apps:create", app).code == 0
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    name = f"restart-{uuid.uuid4().hex[:6]}.example"
    assert server.cli("domains:add", "--app", app, name).code == 0
    server.stop(router=True)
    for saved in (server.data_dir / "router").glob("*.json"):
        saved.unlink()  # what the router kept: gone
    server.start()
    deadline = time.monotonic() + 30  # the reconciler's first pass, at start
    while ask(server, name).status_code != 200:
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.2)
    assert answers(server, name) == "hello-v1"
