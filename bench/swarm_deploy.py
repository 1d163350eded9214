"""Swarm deploy benchmark (issue 5): direct image deploys and scaling on a two-node swarm.

This starts a real ``dockyard server --runtime swarm`` (SQLite in a temporary
data directory, free 127.0.0.1 ports for the API, the router and the router's
admin API, ``DOCKER_HOST`` = the swarm manager) on the test swarm that
``scripts/swarm.sh`` builds on this machine: the manager's engine (node
address 10.203.0.1) and a second engine in a network namespace (10.203.0.2),
both pulling from the test registry at 10.203.0.1:5000.

Each round builds one ``tiny`` image per side on the manager (a
busybox-static root filesystem with a nonce, and the web layer: see
bench/deploy.py), pushes it to 10.203.0.1:5000 with the registry credentials
and removes it from the manager, so every first deploy pulls every layer on
whichever node runs it. Scenarios, run in alternating rounds (the order
rotates every round) and reported as medians:

(a) deploy of a new image to a new app: ``dockyard deploy --app A
    --docker-image 10.203.0.1:5000/... --private-registry-username U
    --private-registry-password P``, from the start of the CLI process until
    the router answers 200 with the new page (``Host: A.dockyard.localhost``)
    and until the CLI exits; against ``docker service create -d
    --with-registry-auth --network host --env PORT=...`` of the same kind of
    image with the ``docker`` CLI (throw-away ``DOCKER_CONFIG`` logged in to
    the registry), from its start until the task's port answers 200 with the
    new page on its node's address;
(b) scale 1 -> 4: ``dockyard apps:scale --app A cmd --container-count 4``
    until the CLI exits; Dockyard exits once all 4 tasks run, answered its
    health check and are behind the router. The baseline is what that
    guarantees without a router: ``docker service scale -d NAME=4`` until
    each of the 4 tasks answers 200 with the page on its own port (``docker
    service scale`` without ``-d`` would add the CLI's 5 s "tasks are stable"
    check, which Dockyard does not make).

Both sides run the same service spec: host network, ``--init``, restart
policy any, spread over ``node.id``, and ``PORT`` from the same template as
Dockyard's (block B, slot N: port B*100+N); the baseline takes a block no
service uses. Before (b), both sides remove the image from every node that
runs no task of the service (Dockyard has also pulled it on the manager for
its Procfile lookup), so both scale out onto one node that must pull.

Run: ``.venv/bin/python bench/deploy.py --runtime swarm [--rounds N]`` or
``.venv/bin/python bench/swarm_deploy.py [--rounds N]``. The engine, registry
and swarm come from the environment that ``scripts/services.sh`` and
``scripts/swarm.sh`` print, or from running them. Only 127.0.0.1 and the
swarm's 10.203.0.x veth addresses are contacted. At the end (also on error)
the server is stopped and the services, apps and images this run made are
removed from both nodes; the registry keeps its blobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import (
    DOCKYARD,
    POLL_SECONDS,
    Image,
    ImageFactory,
    Server,
    Services,
    Watcher,
    body_is,
    clean_environment,
    git_revision,
    load_average,
    log,
    machine,
    median,
    parse_time,
    services,
    settle,
)
from harness import ensure_environment

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROUNDS = 5
MAX_EXTRA_ROUNDS = 3  # rounds run beyond --rounds to replace failed ones
WAIT_TIMEOUT = 120.0  # any single command or wait
SCALE_TO = 4
AIM = 1.3  # Dockyard / baseline
SWARM_NET = "10.203.0."  # the veth pair of scripts/swarm.sh: the only non-loopback addresses
BENCH_LABEL = "dockyard-bench.run"
LABEL_APP = "dockyard.app"  # dockyard.runtime.docker
LABEL_PORT = "dockyard.port"
# Dockyard's PORT template (dockyard.runtime.swarm): slot N of block B listens on B*100+N,
# blocks below Linux's ephemeral ports.
SLOT_PORT = "{{if lt (len .Task.Slot) 2}}0{{end}}{{.Task.Slot}}"
PORT_BLOCKS = range(100, 328)
SIDES = ("dockyard", "baseline")
SCENARIOS = ("deploy", "scale")


# --- the swarm: scripts/swarm.sh ---------------------------------------------------------


@dataclass(frozen=True)
class Swarm:
    manager: str  # unix:// socket of the manager's engine
    node2: str | None  # unix:// socket of the second node's engine, if there is one here
    registry: str  # HOST:PORT every node pulls from
    addresses: tuple[str, ...]  # the nodes' addresses


def swarm_settings() -> Swarm:
    ensure_environment(
        "swarm.sh",
        ("DOCKYARD_SWARM_MANAGER", "DOCKYARD_SWARM_REGISTRY", "DOCKYARD_SWARM_NODE_ADDRESSES"),
    )
    manager = os.environ["DOCKYARD_SWARM_MANAGER"]
    node2 = os.environ.get("DOCKYARD_SWARM_NODE2") or (
        "unix://" + str(Path(manager.removeprefix("unix://")).with_name("node2.sock"))
    )
    if not Path(node2.removeprefix("unix://")).is_socket():
        node2 = ""
    found = Swarm(
        manager=manager,
        node2=node2 or None,
        registry=os.environ["DOCKYARD_SWARM_REGISTRY"],
        addresses=tuple(os.environ["DOCKYARD_SWARM_NODE_ADDRESSES"].split(",")),
    )
    for engine in (found.manager, found.node2 or "unix://"):
        if not engine.startswith("unix://"):
            raise RuntimeError(f"refusing a Docker engine that is not a local socket: {engine}")
    for address in (found.registry.rpartition(":")[0], *found.addresses):
        if not address.startswith(SWARM_NET):
            raise RuntimeError(f"refusing {address}: not on the test swarm's {SWARM_NET}0/24")
    return found


class Engines:
    """The manager's engine (builds, the swarm API) and each node's, by node address."""

    def __init__(self, swarm: Swarm) -> None:
        self.manager = docker.DockerClient(base_url=swarm.manager, version="auto")
        self.clients = [self.manager]
        if swarm.node2:
            self.clients.append(docker.DockerClient(base_url=swarm.node2, version="auto"))
        self.by_address = {str(c.info()["Swarm"]["NodeAddr"]): c for c in self.clients}
        self._node_addresses: dict[str, str] = {}

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def node_address(self, node_id: str) -> str:
        if node_id not in self._node_addresses:
            node = self.manager.api.inspect_node(node_id)
            self._node_addresses[node_id] = str(node["Status"]["Addr"])
        return self._node_addresses[node_id]

    def task_nodes(self, service: str) -> list[str]:
        """The addresses of the nodes that the service's tasks are on (any task state)."""
        tasks = self.manager.api.tasks(filters={"service": service, "desired-state": "running"})
        return sorted(self.node_address(t["NodeID"]) for t in tasks if t.get("NodeID"))

    def drop(self, image: Image, keep: set[str] | None = None) -> None:
        """Remove the image from every node but those in ``keep`` (addresses)."""
        for address, client in self.by_address.items():
            if keep and address in keep:
                continue
            for name in (image.ref, image.pinned):
                with contextlib.suppress(ImageNotFound, NotFound, APIError):
                    client.images.remove(name, force=True)

    def assert_absent(self, image: Image) -> None:
        for address, client in self.by_address.items():
            for name in (image.ref, image.pinned):
                with contextlib.suppress(ImageNotFound):
                    client.images.get(name)
                    raise RuntimeError(f"{name} is on node {address}: its pull would be cached")

    def remove_images(self, prefix: str) -> int:
        """Every image named under ``prefix`` (tag or digest), from every node."""
        removed = 0
        for client in self.clients:
            for found in client.images.list(all=True):
                names = (found.attrs.get("RepoTags") or []) + (found.attrs.get("RepoDigests") or [])
                if any(name.startswith(prefix) for name in names):
                    with contextlib.suppress(ImageNotFound, NotFound, APIError):
                        client.images.remove(str(found.id), force=True)
                        removed += 1
        return removed

    def remove_services(self, wanted: Callable[[dict[str, Any]], bool]) -> int:
        """Remove the services ``wanted`` picks; wait until their tasks are gone."""
        removed = []
        for service in self.manager.api.services():
            if wanted(service):
                with contextlib.suppress(NotFound, APIError):
                    self.manager.api.remove_service(service["ID"])
                    removed.append(service["ID"])
        return self.wait_tasks_gone(removed)

    def wait_tasks_gone(self, removed: list[str]) -> int:
        """Wait until these removed services have no task left; return how many still do."""
        # A removed service's tasks are listed (unfiltered: filtering by a removed service
        # is a 404) until their containers are gone and their ports free, seconds later.
        deadline = time.monotonic() + 30
        while removed and time.monotonic() < deadline:
            with contextlib.suppress(APIError):
                left = {t["ServiceID"] for t in self.manager.api.tasks()}
                removed = [s for s in removed if s in left]
            time.sleep(0.1)
        return len(removed)  # still there


# --- measurements ------------------------------------------------------------------------


@dataclass
class Timed:
    """One side of one scenario in one round."""

    first_200: float | None = None  # seconds from the start until the new page is served
    done: float | None = None  # seconds from the start until the command (or the wait) is over
    steps: dict[str, float] = field(default_factory=dict)
    nodes: str = ""  # where the service's tasks ran afterwards


# Steps of a Dockyard operation, each ending at the first or last log line that matches.
LINE_STEPS: list[tuple[str, str, Callable[[str], bool]]] = [
    ("resolve tag to digest (registry)", "first", lambda line: line.startswith("Pulling ")),
    (
        "pull on the manager + Procfile lookup",
        "first",
        lambda line: line.startswith(("Services from", "No Procfile")),
    ),
    (
        "create/grow the service until the new tasks run",
        "last",
        lambda line: line.startswith("Started "),
    ),
    ("health check of every new task", "last", lambda line: " answered HTTP " in line),
    ("router switch (HAProxy)", "first", lambda line: line.startswith("Router:")),
]


def operation_steps(
    operation: dict[str, Any], lines: list[dict[str, Any]], began: float, ended: float
) -> dict[str, float]:
    """Split ``began``..``ended`` by the operation's timestamps and log lines."""
    marks: list[tuple[str, float | None]] = [
        ("CLI start-up, POST, enqueue", parse_time(operation["created_at"])),
        (
            "queue pick-up by a worker",
            parse_time(operation["started_at"]) if operation.get("started_at") else None,
        ),
        ("operation set-up (to its first log line)", parse_time(lines[0]["at"]) if lines else None),
    ]
    for label, which, matches in LINE_STEPS:
        found = [parse_time(x["at"]) for x in lines if matches(x["line"])]
        marks.append((label, (found[0] if which == "first" else found[-1]) if found else None))
    finished = operation.get("finished_at")
    marks.append(("save, finish the operation", parse_time(finished) if finished else None))
    marks.append(("CLI sees the end event and exits", ended))
    steps: dict[str, float] = {}
    previous = began
    for label, at in marks:
        if at is not None:
            steps[label] = at - previous
            previous = at
    return steps


class Bench:
    def __init__(
        self, swarm: Swarm, svc: Services, server: Server, engines: Engines, run_id: str
    ) -> None:
        self.swarm = swarm
        self.svc = svc
        self.server = server
        self.engines = engines
        self.run_id = run_id
        self.cli_env = server.cli_environment()
        self.http = httpx.Client(timeout=1.0, trust_env=False)
        docker_cli = shutil.which("docker", path="/usr/bin") or shutil.which("docker")
        if docker_cli is None:
            raise RuntimeError("the docker CLI is missing (Debian package docker.io)")
        self.docker_cli = docker_cli
        self.docker_config = server.data_dir.parent / "docker-config"
        self.docker_env = clean_environment(
            DOCKER_HOST=swarm.manager, DOCKER_CONFIG=str(self.docker_config)
        )
        self.block = 0

    def close(self) -> None:
        self.http.close()

    def app(self, n: int) -> str:
        return f"sw-{self.run_id}-{n}"

    def baseline_service(self, n: int) -> str:
        return f"bench-{self.run_id}-{n}"

    # Dockyard

    def _dockyard(self, args: list[str]) -> tuple[dict[str, Any], float]:
        done = subprocess.run(
            [DOCKYARD, *args, "--output", "json"],
            env=self.cli_env,
            capture_output=True,
            text=True,
            timeout=WAIT_TIMEOUT,
        )
        ended = time.time()
        if done.returncode != 0:
            raise RuntimeError(
                f"dockyard {args[0]} exited {done.returncode}: {done.stderr.strip()}\n"
                f"{done.stdout[-2000:]}\nserver log:\n{self.server.log_tail()}"
            )
        return json.loads(done.stdout), ended

    def _steps(self, operation: dict[str, Any], began: float, ended: float) -> dict[str, float]:
        lines = self.server.cli_json("operation:logs", str(operation["id"]))
        return operation_steps(operation, lines, began, ended)

    def _app_service(self, app: str) -> str:
        found = self.engines.manager.api.services(filters={"label": f"{LABEL_APP}={app}"})
        if len(found) != 1:
            raise RuntimeError(f"{app} has {len(found)} services on the swarm, not 1")
        return str(found[0]["ID"])

    def dockyard(self, n: int, image: Image) -> dict[str, Timed]:
        """(a) deploy to a new app, (b) scale it 1 -> 4; then deprovision it."""
        app = self.app(n)
        self.server.cli_json("apps:create", app)
        service = ""
        try:
            auth = ["--private-registry-username", self.svc.user]
            auth += ["--private-registry-password", self.svc.password]
            url = self.server.router_url + "/"
            with Watcher(url, body_is(image.content), self.server.app_headers(app)) as watcher:
                began = time.time()
                operation, ended = self._dockyard(
                    ["deploy", "--app", app, "--docker-image", image.ref, *auth]
                )
            if watcher.seen is None:
                raise RuntimeError(f"the router never served the new page of {app}")
            steps = self._steps(operation, began, ended)
            deploy = Timed(watcher.seen - began, ended - began, steps)
            deploy.steps["(router serves the new page, from CLI start)"] = watcher.seen - began
            service = self._app_service(app)
            deploy.nodes = ",".join(self.engines.task_nodes(service))
            self.engines.drop(image, keep=set(self.engines.task_nodes(service)))
            time.sleep(0.5)

            began = time.time()
            operation, ended = self._dockyard(
                ["apps:scale", "--app", app, "cmd", "--container-count", str(SCALE_TO)]
            )
            scale = Timed(None, ended - began, self._steps(operation, began, ended))
            shown = self.server.cli_json("apps:show", "--app", app)
            running = [c for c in shown["containers"] if c["state"] == "running"]
            if len(running) != SCALE_TO:
                raise RuntimeError(f"{app} runs {len(running)} containers after the scale")
            scale.nodes = ",".join(self.engines.task_nodes(service))
            return {"deploy": deploy, "scale": scale}
        finally:
            try:
                self.server.cli_json("apps:deprovision", "--app", app, "--confirm", app)
                # As for the baseline: the next side starts once the tasks are gone.
                self.engines.wait_tasks_gone([service] if service else [])
            except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                log(f"warning: deprovisioning {app} failed ({exc}); removed at the end")

    # the baseline: the docker CLI on the manager

    def docker_login(self) -> None:
        self.docker_config.mkdir(mode=0o700, exist_ok=True)
        self._docker("login", "-u", self.svc.user, "--password-stdin", self.swarm.registry)

    def _docker(self, *args: str) -> str:
        done = subprocess.run(
            [self.docker_cli, *args],
            input=self.svc.password if args[0] == "login" else None,
            env=self.docker_env,
            capture_output=True,
            text=True,
            timeout=WAIT_TIMEOUT,
        )
        if done.returncode != 0:
            what = " ".join(args[:2])
            raise RuntimeError(f"docker {what} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def _port_closed(self, port: int) -> bool:
        for address in self.swarm.addresses:
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((address, port)) == 0:
                    return False
        return True

    def _free_block(self) -> int:
        """A port block no service uses and whose ports nothing listens on."""
        used = {
            int(service["Spec"].get("Labels", {}).get(LABEL_PORT, "0") or 0)
            for service in self.engines.manager.api.services()
        }
        if self.block and self.block not in used:
            candidates = [self.block]
        else:
            candidates = random.sample([b for b in PORT_BLOCKS if b not in used], 20)
        for block in candidates:
            if all(self._port_closed(block * 100 + slot) for slot in range(1, SCALE_TO + 1)):
                self.block = block
                return block
        raise RuntimeError("no free port block for the baseline service")

    def _wait_ports(self, ports: list[int], content: str) -> float:
        """Poll each port on every node until all answer 200 with ``content``; return when."""
        check = body_is(content)
        waiting = set(ports)
        deadline = time.monotonic() + WAIT_TIMEOUT
        while waiting and time.monotonic() < deadline:
            for port in sorted(waiting):
                for address in self.swarm.addresses:
                    with contextlib.suppress(httpx.HTTPError):
                        response = self.http.get(f"http://{address}:{port}/")
                        if response.status_code == 200 and check(response.text):
                            waiting.discard(port)
                            break
            if waiting:
                time.sleep(POLL_SECONDS)
        if waiting:
            raise RuntimeError(f"the baseline's ports {sorted(waiting)} never served {content!r}")
        return time.time()

    def baseline(self, n: int, image: Image) -> dict[str, Timed]:
        """(a) ``docker service create -d`` + first 200; (b) ``docker service scale -d`` + 200s."""
        name = self.baseline_service(n)
        block = self._free_block()
        ports = [block * 100 + slot for slot in range(1, SCALE_TO + 1)]
        create = ["service", "create", "-d", "-q", "--with-registry-auth", "--name", name]
        create += ["--network", "host", "--init", "--env", f"PORT={block}{SLOT_PORT}"]
        create += ["--placement-pref", "spread=node.id", "--restart-condition", "any"]
        create += ["--restart-delay", "1s", "--stop-grace-period", "10s"]
        create += ["--label", f"{BENCH_LABEL}={self.run_id}", image.ref]
        try:
            began = time.time()
            self._docker(*create)
            created = time.time()
            seen = self._wait_ports(ports[:1], image.content)
            deploy = Timed(seen - began, seen - began)
            deploy.steps = {
                "docker service create -d (CLI exits)": created - began,
                "first 200 on the task's port": seen - created,
            }
            deploy.nodes = ",".join(self.engines.task_nodes(name))
            self.engines.drop(image, keep=set(self.engines.task_nodes(name)))
            time.sleep(0.5)

            began = time.time()
            self._docker("service", "scale", "-d", f"{name}={SCALE_TO}")
            scaled = time.time()
            seen = self._wait_ports(ports, image.content)
            scale = Timed(None, seen - began)
            scale.steps = {
                "docker service scale -d (CLI exits)": scaled - began,
                "all 4 tasks answer 200 on their ports": seen - scaled,
            }
            scale.nodes = ",".join(self.engines.task_nodes(name))
            return {"deploy": deploy, "scale": scale}
        finally:
            self.engines.remove_services(lambda s: s["Spec"]["Name"] == name)


# --- the run -----------------------------------------------------------------------------


@dataclass
class Results:
    # scenario -> side -> one Timed per complete round
    timed: dict[str, dict[str, list[Timed]]] = field(
        default_factory=lambda: {s: {side: [] for side in SIDES} for s in SCENARIOS}
    )
    failures: list[str] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.timed["deploy"]["dockyard"])


def run_rounds(bench: Bench, factory: ImageFactory, rounds: int, results: Results) -> None:
    n = 0
    while results.rounds < rounds and n < rounds + MAX_EXTRA_ROUNDS:
        began = time.monotonic()
        images = {
            side: factory.build("tiny", f"r{n}-{side}", f"{bench.run_id} r{n} {side}")
            for side in SIDES
        }
        settle()
        log(f"round {n + 1}: images built and pushed in {time.monotonic() - began:.1f} s")
        order = SIDES[n % 2 :] + SIDES[: n % 2]
        outcome: dict[str, dict[str, Timed]] = {}
        try:
            for side in order:
                bench.engines.assert_absent(images[side])
                began = time.monotonic()
                if side == "dockyard":
                    outcome[side] = bench.dockyard(n, images[side])
                else:
                    outcome[side] = bench.baseline(n, images[side])
                log(
                    f"round {n + 1}: {side} side with its clean-up {time.monotonic() - began:.1f} s"
                )
                time.sleep(0.5)
        except (RuntimeError, subprocess.SubprocessError, DockerException, ValueError) as exc:
            results.failures.append(f"round {n + 1}: {str(exc).strip()[:1500]}")
            log(f"round {n + 1} failed, not counted: {str(exc).strip()[:1500]}")
        else:
            for scenario in SCENARIOS:
                for side in SIDES:
                    results.timed[scenario][side].append(outcome[side][scenario])
            d, b = outcome["dockyard"], outcome["baseline"]
            log(
                f"round {n + 1} ({' then '.join(order)}): deploy first 200 "
                f"{d['deploy'].first_200:.2f} (CLI exit {d['deploy'].done:.2f}) vs "
                f"{b['deploy'].first_200:.2f} s; scale {d['scale'].done:.2f} vs "
                f"{b['scale'].done:.2f} s"
            )
        finally:
            for image in images.values():
                bench.engines.drop(image)
        n += 1


# --- the report --------------------------------------------------------------------------


def _values(timed: list[Timed], what: str) -> list[float]:
    return [v for t in timed if (v := getattr(t, what)) is not None]


ROWS = [
    (
        "deploy",
        "first_200",
        "(a) deploy of a new image to a new app → first 200 (Dockyard via the router) vs "
        "`docker service create -d` → first 200 on the task's port",
    ),
    ("deploy", "done", "(a) deploy → Dockyard's CLI exits vs the same baseline"),
    (
        "scale",
        "done",
        f"(b) scale 1 → {SCALE_TO} → Dockyard's CLI exits (all healthy and routed) vs "
        f"`docker service scale -d` → all {SCALE_TO} tasks answer 200",
    ),
]


def results_table(results: Results) -> str:
    rows = [
        "| scenario | Dockyard median s | baseline median s | ratio | overhead s | aim ≤ 1.3x |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for scenario, what, label in ROWS:
        ours = median(_values(results.timed[scenario]["dockyard"], what))
        base = median(_values(results.timed[scenario]["baseline"], "done"))
        ratio = ours / base
        met = "met" if ratio <= AIM else "missed"
        rows.append(
            f"| {label} | {ours:.2f} | {base:.2f} | {ratio:.2f}x | {ours - base:+.2f} | {met} |"
        )
    return "\n".join(rows)


def breakdown_table(results: Results) -> str:
    lines = []
    for side, title in (("dockyard", "Dockyard"), ("baseline", "baseline")):
        labels: list[str] = []
        for scenario in SCENARIOS:
            for timed in results.timed[scenario][side]:
                labels += [label for label in timed.steps if label not in labels]
        lines += [
            f"| {title} step (median s) | (a) deploy | (b) scale 1 → {SCALE_TO} |",
            "|---|---:|---:|",
        ]
        for label in labels:
            cells = []
            for scenario in SCENARIOS:
                values = [t.steps[label] for t in results.timed[scenario][side] if label in t.steps]
                cells.append(f"{median(values):.3f}" if values else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def placements(results: Results) -> str:
    parts = []
    for scenario in SCENARIOS:
        for side in SIDES:
            counts = Counter(t.nodes for t in results.timed[scenario][side])
            shown = ", ".join(f"{nodes or '?'} x{count}" for nodes, count in counts.most_common())
            parts.append(f"{scenario} {side}: {shown}")
    return "; ".join(parts)


def raw_rounds(results: Results) -> str:
    lines = []
    for scenario in SCENARIOS:
        for side in SIDES:
            timed = results.timed[scenario][side]
            parts = []
            if any(t.first_200 is not None for t in timed):
                parts.append("first 200: " + " ".join(f"{t.first_200:.2f}" for t in timed))
            parts.append("done: " + " ".join(f"{t.done:.2f}" for t in timed))
            lines.append(f"- {scenario} {side}: " + "; ".join(parts))
    return "\n".join(lines)


def short_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout.strip() or "unknown"
    return "unknown"


def report(results: Results, command: str, started: datetime, load_before: str) -> None:
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(f"### Swarm run of {started:%Y-%m-%d %H:%M} UTC\n")
    print(f"- command: `{command}` (in {Path.cwd()})")
    print(f"- machine: {machine()}; load average before {load_before}, after {load_average()}")
    print(
        f"- revision: {short_revision()} (`git describe`: {git_revision()}); whole run "
        f"{elapsed:.0f} s; {results.rounds} complete rounds, {len(results.failures)} failed"
    )
    print(
        "- each round: a new tiny image per side (own rootfs, pushed, removed from both nodes); "
        "sides alternate, the order rotating every round; pages polled every "
        f"{POLL_SECONDS * 1000:.0f} ms"
    )
    print(f"- nodes running the tasks after each step: {placements(results)}")
    print()
    print(results_table(results))
    print("\nWhere the time goes (steps end at the named event; medians of each step):\n")
    print(breakdown_table(results))
    print("\n<details><summary>every round (s)</summary>\n")
    print(raw_rounds(results))
    print("\n</details>")
    if results.failures:
        print("\nFailed rounds (not in the medians):\n")
        for failure in results.failures:
            print(f"- {failure.splitlines()[0]}")


# --- main --------------------------------------------------------------------------------


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks


@contextlib.contextmanager
def swarm_server(work: Path, swarm: Swarm) -> Iterator[Server]:
    server = Server(
        work / "data", extra_args=["--runtime", "swarm"], extra_env={"DOCKER_HOST": swarm.manager}
    )
    try:
        yield server
    finally:
        server.stop()


def main(rounds: int = DEFAULT_ROUNDS) -> int:
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if rounds < DEFAULT_ROUNDS:
        log(f"warning: {rounds} rounds; the medians want at least {DEFAULT_ROUNDS}")
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(sys.orig_argv)
    started = datetime.now(UTC)
    load_before = load_average()
    local = services()  # the registry on 127.0.0.1:5000, which swarm.sh forwards
    swarm = swarm_settings()
    svc = Services(swarm.manager, swarm.registry, local.user, local.password)
    run_id = uuid.uuid4().hex[:6]
    engines = Engines(swarm)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-swarm-") as tmp:
        work = Path(tmp)
        factory = ImageFactory(engines.manager, svc, run_id, work)
        bench: Bench | None = None
        try:
            with swarm_server(work, swarm) as server:
                try:
                    log(f"run {run_id}: starting a Dockyard server (SQLite) on {swarm.manager}")
                    server.start()
                    bench = Bench(swarm, svc, server, engines, run_id)
                    bench.docker_login()
                    run_rounds(bench, factory, rounds, results)
                except BaseException:
                    print(f"server log:\n{server.log_tail()}", file=sys.stderr)
                    raise
        finally:
            log("cleaning up: server, services, images")
            if bench is not None:
                bench.close()
            left = engines.remove_services(
                lambda s: (
                    s["Spec"].get("Labels", {}).get(BENCH_LABEL) == run_id
                    or s["Spec"].get("Labels", {}).get(LABEL_APP, "").startswith(f"sw-{run_id}-")
                )
            )
            if left:
                log(f"warning: {left} service(s) still had tasks after 30 s")
            removed = engines.remove_images(factory.prefix)
            log(f"removed {removed} bench image(s) from the nodes")
            engines.close()
    report(results, command, started, load_before)
    if results.failures or results.rounds < rounds:
        log(f"{len(results.failures)} round(s) failed; {results.rounds} of {rounds} complete")
        return 1
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})"
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be in 1..50")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args().rounds))
