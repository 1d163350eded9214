"""What an attacker app gets: nothing of the platform answers from inside it.

A non-admin pushes an app whose build step and whose container try every
channel to the platform (the API's loopback listener, the database, the
router's control socket, the Docker socket, the data directory) and to
another app's container, with busybox's ``nc`` and ``wget``, and report what
answered. Each channel is also tried from the server's side, where it must
work: a probe that can never succeed would prove nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path

import httpx

from tests.integration.gitpush import WorkingCopy
from tests.integration.registry import Registry
from tests.integration.servers import Server
from tests.integration.test_deploys import show
from tests.integration.test_git_deploys import _creds, remote, web

ON_SWARM = True

POSTGRES = ("127.0.0.1", 5432)
# The engine's socket as the test set-up starts it, and Docker's usual one.
DOCKER_SOCKETS = [os.environ.get("DOCKER_HOST", "").removeprefix("unix://"), "/var/run/docker.sock"]

# Each probe prints "PROBE <name> open|closed". A connection that nc makes
# and then waits on (the server says nothing) is cut by `timeout`: open too.
PROBE_SH = r"""
probe() {
  if timeout 5 nc -w 2 "$2" "$3" </dev/null >/dev/null 2>&1; then r=open
  else case $? in 1) r=closed;; *) r=open;; esac; fi
  echo "PROBE $1 $r"
}
where=$1
httpd -p 127.0.0.1:8081 -h /probe    # the probe's own control: must answer
gateway=$(ip route | awk '/^default/ {print $3}')
probe self 127.0.0.1 8081
while read -r name host port; do
  [ "$host" = GATEWAY ] && host=$gateway
  [ -n "$host" ] && probe "$name" "$host" "$port"
done < /probe/targets
while read -r name path; do
  if [ -e "$path" ]; then echo "PROBE $name open"; else echo "PROBE $name closed"; fi
done < /probe/paths
if wget -q -T 3 -O /dev/null "http://$(head -n 1 /probe/victim)/" 2>/dev/null; then
  echo "PROBE victim-http open"
else
  echo "PROBE victim-http closed"
fi
echo "PROBE done $where"
"""

ATTACKER_DOCKERFILE = """\
FROM {base}
COPY probe.sh targets paths victim /probe/
RUN sh /probe/probe.sh build
CMD ["sh", "-c", "mkdir -p /www && sh /probe/probe.sh run > /www/index.html; \
exec httpd -f -p $PORT -h /www"]
"""


def probes(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        words = line.replace("remote:", "").split()
        if len(words) == 3 and words[0] == "PROBE":
            found[words[1]] = words[2]
    return found


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_attacker_app_and_build_reach_nothing_of_the_platform(
    server: Server,
    registry: Registry,
    backend: str,
    user_token: Callable[[], tuple[str, str]],
    tmp_path: Path,
) -> None:
    # The victim: another team's app, deployed by the admin.
    victim = "victim-" + os.urandom(4).hex()
    assert server.cli("apps:create", victim).code == 0
    assert server.cli("config:set", "--app", victim, *_creds(registry)).code == 0
    own = WorkingCopy(tmp_path / "victim", remote(server, victim))
    own.commit(web(registry, "victim secrets"))
    assert own.push("main").code == 0
    (container,) = show(server, victim)["containers"]
    victim_at = f"{container['address']}:{container['port']}"

    # The attacker: a non-admin with a grant on an app of their own.
    attacker = "attacker-" + os.urandom(4).hex()
    assert server.cli("apps:create", attacker).code == 0
    name, token = user_token()
    assert server.cli("apps:grant", "--app", attacker, name).code == 0
    assert server.cli("config:set", "--app", attacker, *_creds(registry), token=token).code == 0
    targets = {
        "api-loopback": ("127.0.0.1", server.port),
        "api-gateway": ("GATEWAY", server.port),
        "postgres-loopback": POSTGRES,
        "postgres-gateway": ("GATEWAY", POSTGRES[1]),
        "router-admin-tcp": ("127.0.0.1", 2019),  # where Caddy's admin API used to be
        "router-admin-gateway": ("GATEWAY", 2019),
        "registry-loopback": ("127.0.0.1", 5000),
        "victim-tcp": tuple(victim_at.rsplit(":", 1)),
    }
    sockets = sorted(server.data_dir.rglob("*.sock"))
    paths = {
        "data-dir": str(server.data_dir),
        **{f"docker-socket-{n}": path for n, path in enumerate(DOCKER_SOCKETS) if path},
        **{f"router-socket-{n}": str(path) for n, path in enumerate(sockets)},
    }
    work = WorkingCopy(tmp_path / "attacker", remote(server, attacker, token))
    work.commit(
        {
            "Dockerfile": ATTACKER_DOCKERFILE.format(base=registry.base_image),
            "probe.sh": PROBE_SH,
            "targets": "".join(f"{n} {h} {p}\n" for n, (h, p) in targets.items()),
            "paths": "".join(f"{n} {p}\n" for n, p in paths.items()),
            "victim": victim_at + "\n",
        }
    )
    pushed = work.push("main")
    assert pushed.code == 0, pushed.output

    # On Swarm, app tasks use the host network (see the README): only the
    # build step is isolated there, and tasks listen on the nodes' addresses.
    on_swarm = backend == "swarm"
    expected = {name: "closed" for name in [*targets, *paths, "victim-http"]}
    if on_swarm:
        expected.pop("victim-tcp")
        expected.pop("victim-http")
    from_build = probes(pushed.output)
    assert from_build.pop("self") == "open", pushed.output  # the probe itself works
    assert from_build.pop("done") == "build"
    assert {k: v for k, v in from_build.items() if k in expected} == expected, pushed.output

    if not on_swarm:
        response = server.get(attacker, "/")
        assert response.status_code == 200, response.text
        from_app = probes(response.text)
        assert from_app.pop("self") == "open", response.text
        assert from_app.pop("done") == "run"
        assert from_app == expected, response.text
        # The router reaches the app at its own address, on a network of its own.
        (mine,) = show(server, attacker)["containers"]
        # (scripts/services.sh gives each app's network a /28)
        assert ip_network(f"{mine['address']}/28", strict=False) != ip_network(
            f"{container['address']}/28", strict=False
        )

    # From the server's side every one of those channels works.
    assert connects("127.0.0.1", server.port)
    assert connects(*POSTGRES)
    assert sockets, "the router's control socket is in the data directory"
    for path in sockets:
        with socket.socket(socket.AF_UNIX) as control:
            control.connect(str(path))
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert Path(DOCKER_SOCKETS[0]).is_socket()
    if not on_swarm:
        assert httpx.get(f"http://{victim_at}/", timeout=5).text.strip() == "victim secrets"
