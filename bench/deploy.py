"""Deploy benchmark (issue 3): image deploys, ``config:set`` and ``restart`` against raw Docker.

This starts a real ``dockyard server`` (SQLite in a temporary data directory,
free 127.0.0.1 ports for the API, the router and the router's admin API) on
the test Docker engine, and builds its images on that engine without Docker
Hub, pushing them to the test registry:

- ``tiny``: the busybox web app (a busybox-static root filesystem and a layer
  with the page and a CGI script that prints the environment), about 2 MB;
- ``big``: the same web app over five COPY layers of 20 MiB of
  ``os.urandom`` data each, about 100 MB that no compression shrinks.

Every image of every round is built with a root filesystem of its own (a
nonce file in it) and fresh random data, pushed, then removed from the
engine, so each measured deploy pulls every one of its layers from the
registry: nothing is in the engine's cache, for Dockyard and the baseline
alike. Scenarios, each run in alternating rounds (the order rotates every
round) and reported as medians:

(a) deploy: ``dockyard deploy --app A --docker-image IMG --private-registry-...``
    of a new image to an app that runs the previous one, from the start of the
    CLI process until the router first answers 200 with the new page (and
    until the CLI exits), against the raw baseline on the same engine: pull
    with credentials + run with host networking and ``PORT`` + first 200 on
    that port, once through the Docker SDK and once through the ``docker`` CLI
    (throw-away ``DOCKER_CONFIG``);
(b) ``dockyard config:set`` until the router serves the new value (read from
    the app's ``/cgi-bin/env``) and until the CLI exits, against a raw
    replacement: run a new container with the value + first 200 (+ stop and
    remove the old one);
(c) ``dockyard restart`` until the CLI exits, against the same raw replacement.

For each Dockyard operation the operation's own timestamps and log line
timestamps (``dockyard operation:logs ID --output json``) split the time into
steps. Baseline containers run with ``init`` as Dockyard's do (so a stop takes
no grace period).

Run: ``.venv/bin/python bench/deploy.py`` (``make bench``); with ``--runtime
swarm`` it runs bench/swarm_deploy.py instead (deploys and scaling on the
two-node test swarm, see there), with ``--sources`` bench/source_deploys.py
(a deploy through each registry credential source kind against a static
source, issue 10). The Docker engine
and registry come from the environment that ``scripts/services.sh`` prints, or
from running it when ``DOCKER_HOST`` is unset. Only 127.0.0.1 is contacted.
At the end (also on error) the server is stopped and every container and
image this run made is removed from the engine; the registry keeps its blobs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import BuildError, ImageNotFound, NotFound
from docker.models.containers import Container

from harness import ensure_environment, launch_server, log_tail, stop_router

ROOT = Path(__file__).resolve().parent.parent
DOCKYARD = str(Path(sys.executable).with_name("dockyard"))
LOCALHOST = "127.0.0.1"
DOMAIN = "dockyard.localhost"
LAYER_BYTES = 20 * 1024 * 1024
BIG_LAYERS = 5
POLL_SECONDS = 0.01  # how often a client asks for the page it waits for
OPERATION_TIMEOUT = 600.0  # any single deploy, command or wait
MIN_ROUNDS = 5
MAX_EXTRA_ROUNDS = 4  # rounds run beyond --rounds to replace disturbed ones
BENCH_LABEL = "dockyard-bench.run"
# What Dockyard looks for in an image before running it (dockyard.domain.releases).
PROCFILE_PATHS = ("/.dockyard/Procfile", "/.aptible/Procfile")

DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
{layers}ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /www/cgi-bin && echo "{content}" > /www/index.html && \\
    echo ok > /www/healthcheck && \\
    printf '#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\nenv\\n' > /www/cgi-bin/env && \\
    chmod +x /www/cgi-bin/env
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment for child processes: no proxies, so everything stays on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = f"{LOCALHOST},localhost,.{DOMAIN}"
    env.update(extra)
    return env


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads); 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def dockerd_pid(docker_host: str) -> int | None:
    """The engine's pid, from the pidfile scripts/services.sh keeps beside its socket."""
    with contextlib.suppress(OSError, ValueError):
        pidfile = Path(docker_host.removeprefix("unix://")).parent / "dockerd.pid"
        return int(pidfile.read_text().strip())
    return None


class CpuMeter:
    """CPU seconds the Dockyard server and the Docker engine spend during a block."""

    def __init__(self, server_pid: int | None, engine_pid: int | None) -> None:
        self.pids = {"server": server_pid, "dockerd": engine_pid}
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *_: object) -> None:
        for name, pid in self.pids.items():
            self.used[name] = cpu_seconds(pid) - self._start[name]


# --- the services: engine and registry from scripts/services.sh --------------------------


@dataclass(frozen=True)
class Services:
    docker_host: str
    registry: str
    user: str
    password: str

    @property
    def auth(self) -> dict[str, str]:
        return {"username": self.user, "password": self.password}


def services() -> Services:
    ensure_environment("services.sh", ("DOCKER_HOST", "DOCKYARD_TEST_REGISTRY"))
    found = Services(
        docker_host=os.environ["DOCKER_HOST"],
        registry=os.environ["DOCKYARD_TEST_REGISTRY"],
        user=os.environ["DOCKYARD_TEST_REGISTRY_USER"],
        password=os.environ["DOCKYARD_TEST_REGISTRY_PASSWORD"],
    )
    if not found.docker_host.startswith("unix://"):
        raise RuntimeError(f"refusing a Docker engine that is not a local socket: {found}")
    if not found.registry.startswith(LOCALHOST + ":"):
        raise RuntimeError(f"refusing a registry that is not on {LOCALHOST}: {found.registry}")
    return found


# --- images --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    ref: str  # repository:tag, as pushed
    digest: str
    content: str  # the page it serves at /

    @property
    def repository(self) -> str:
        return self.ref.rpartition(":")[0]

    @property
    def tag(self) -> str:
        return self.ref.rpartition(":")[2]

    @property
    def pinned(self) -> str:
        return f"{self.repository}@{self.digest}"


class ImageFactory:
    """Builds bench images on the engine, pushes them, and leaves the engine without them."""

    def __init__(self, client: docker.DockerClient, svc: Services, run_id: str, work: Path):
        self.client = client
        self.svc = svc
        self.prefix = f"{svc.registry}/dockyard-bench/{run_id}-"
        self.work = work
        listing = subprocess.run(
            ["/bin/busybox", "--list-full"], capture_output=True, text=True, check=True
        )
        self.applets = sorted({a.strip() for a in listing.stdout.split() if a.strip()})
        self.busybox = Path("/bin/busybox").read_bytes()

    def _rootfs(self, archive: tarfile.TarFile) -> None:
        """A busybox-static root filesystem with a nonce, so its layer is new to the engine."""

        def directory(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(f"rootfs/{name}")
            info.type, info.mode = tarfile.DIRTYPE, mode
            archive.addfile(info)

        def regular(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(f"rootfs/{name}")
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))

        directory("")
        for name in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "www", "root"):
            directory(name)
        for name in ("proc", "sys", "dev"):
            directory(name)
        directory("tmp", 0o1777)
        regular("bin/busybox", self.busybox, 0o755)
        for applet in self.applets:
            name = applet.lstrip("/")
            if name == "bin/busybox":
                continue
            info = tarfile.TarInfo(f"rootfs/{name}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            archive.addfile(info)
        regular("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        regular("etc/group", b"root:x:0:\n")
        regular("etc/bench-nonce", uuid.uuid4().hex.encode() + b"\n")

    def build(self, size: str, tag: str, content: str) -> Image:
        ref = f"{self.prefix}{size}:{tag}"
        layers = ""
        context_path = self.work / f"context-{size}-{tag}.tar"
        with tarfile.open(context_path, mode="w") as archive:
            self._rootfs(archive)
            if size == "big":
                for n in range(1, BIG_LAYERS + 1):
                    info = tarfile.TarInfo(f"layer{n}.bin")
                    info.size = LAYER_BYTES
                    archive.addfile(info, io.BytesIO(os.urandom(LAYER_BYTES)))
                    layers += f"COPY layer{n}.bin /data/layer{n}.bin\n"
            dockerfile = DOCKERFILE.format(layers=layers, content=content).encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            archive.addfile(info, io.BytesIO(dockerfile))
        try:
            for attempt in (1, 2):
                try:
                    with context_path.open("rb") as context:
                        self.client.images.build(
                            fileobj=context,
                            custom_context=True,
                            tag=ref,
                            rm=True,
                            forcerm=True,
                            nocache=True,
                        )
                    break
                except BuildError as exc:
                    # Another client of the shared engine may remove images mid-build.
                    if attempt == 2:
                        raise
                    log(f"building {ref} failed ({exc.msg}); trying once more")
        finally:
            context_path.unlink(missing_ok=True)
        digest = ""
        repository, _, version = ref.rpartition(":")
        for line in self.client.images.push(
            repository, tag=version, auth_config=self.svc.auth, stream=True, decode=True
        ):
            if "error" in line:
                raise RuntimeError(f"pushing {ref}: {line['error']}")
            digest = line.get("aux", {}).get("Digest", digest)
        if not digest:
            raise RuntimeError(f"pushing {ref}: the engine reported no digest")
        self.client.images.remove(ref, force=True)
        image = Image(ref, digest, content)
        self.assert_absent(image)
        return image

    def assert_absent(self, image: Image) -> None:
        for name in (image.ref, image.pinned):
            with contextlib.suppress(ImageNotFound):
                self.client.images.get(name)
                raise RuntimeError(f"{name} is still in the engine: its pull would be cached")

    def remove(self, image: Image) -> None:
        for name in (image.ref, image.pinned):
            with contextlib.suppress(ImageNotFound, NotFound):
                self.client.images.remove(name, force=True)

    def remove_all(self) -> int:
        """Every image this run put on the engine (tags or digests under our prefix)."""
        removed = 0
        for found in self.client.images.list(all=True):
            names = (found.attrs.get("RepoTags") or []) + (found.attrs.get("RepoDigests") or [])
            if any(name.startswith(self.prefix) for name in names):
                with contextlib.suppress(ImageNotFound, NotFound):
                    self.client.images.remove(found.id, force=True)
                    removed += 1
        return removed


# --- waiting for a page --------------------------------------------------------------------


def wait_for(
    http: httpx.Client,
    url: str,
    check: Callable[[str], bool],
    headers: dict[str, str] | None = None,
    timeout: float = OPERATION_TIMEOUT,
    stop: threading.Event | None = None,
) -> float | None:
    """Poll ``url`` until it answers 200 with a body that passes ``check``; return when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        with contextlib.suppress(httpx.HTTPError):
            response = http.get(url, headers=headers)
            if response.status_code == 200 and check(response.text):
                return time.time()
        time.sleep(POLL_SECONDS)
    return None


class Watcher:
    """A thread that polls a page while a command runs and notes when it first passes."""

    def __init__(
        self,
        url: str,
        check: Callable[[str], bool],
        headers: dict[str, str],
        wait_on_exit: bool = True,
    ) -> None:
        self.seen: float | None = None
        self.wait_on_exit = wait_on_exit
        self._stop = threading.Event()
        self._args = (url, check, headers)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url, check, headers = self._args
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            self.seen = wait_for(http, url, check, headers, stop=self._stop)

    def __enter__(self) -> Watcher:
        self._thread.start()
        time.sleep(0.05)  # polling before the command starts
        return self

    def __exit__(self, *_: object) -> None:
        if self.wait_on_exit:  # the page should be there by the time a command ends
            self._thread.join(timeout=30)
        self._stop.set()
        self._thread.join(timeout=5)


def background_load(server: Server, app: str, page: str) -> Watcher:
    """The same polling as a measured Dockyard side, for a baseline side: equal load."""
    url = server.router_url + page
    return Watcher(url, lambda _: False, server.app_headers(app), wait_on_exit=False)


def body_is(content: str) -> Callable[[str], bool]:
    return lambda body: body.strip() == content


def env_has(key: str, value: str) -> Callable[[str], bool]:
    return lambda body: f"{key}={value}" in body.splitlines()


# --- the Dockyard server and CLI -----------------------------------------------------------


class Server:
    def __init__(
        self,
        data_dir: Path,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.extra_args = list(extra_args)  # more ``dockyard server`` options
        self.extra_env = dict(extra_env or {})  # e.g. DOCKER_HOST of another engine
        self.port, self.router_port = free_port(), free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.router_url = f"http://{LOCALHOST}:{self.router_port}"
        self.log_path = data_dir.parent / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.cli_home = data_dir.parent / "cli-home"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def start(self) -> float:
        command = [DOCKYARD, "server", "--data-dir", str(self.data_dir)]
        command += ["--listen", f"{LOCALHOST}:{self.port}"]
        command += ["--router-listen", f"{LOCALHOST}:{self.router_port}"]
        command += self.extra_args
        env = clean_environment(**self.extra_env)
        env.pop("DOCKYARD_DATABASE_URL", None)
        began = time.monotonic()
        self.process = launch_server(command, env, self.log_path, self.url, self.data_dir)
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        stop_router(self.data_dir)  # it outlives the server on purpose

    def log_tail(self) -> str:
        return log_tail(self.log_path)

    def cli_environment(self) -> dict[str, str]:
        self.cli_home.mkdir(exist_ok=True)
        return clean_environment(
            HOME=str(self.cli_home),
            DOCKYARD_CONFIG_DIR=str(self.cli_home / "config"),
            DOCKYARD_URL=self.url,
            DOCKYARD_TOKEN=self.token,
            NO_COLOR="1",
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKYARD, *args],
            env=self.cli_environment(),
            capture_output=True,
            text=True,
            timeout=OPERATION_TIMEOUT,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--output", "json")
        if done.returncode != 0:
            raise RuntimeError(
                f"dockyard {shlex.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return json.loads(done.stdout)

    def app_headers(self, app: str) -> dict[str, str]:
        return {"Host": f"{app}.{DOMAIN}"}


# --- measurements --------------------------------------------------------------------------


@dataclass
class Timed:
    """One measured round of one side."""

    first_200: float | None = None  # seconds from the start until the new page is served
    done: float | None = None  # seconds from the start until the command/sequence is over
    steps: dict[str, float] = field(default_factory=dict)
    # Someone else removed the app's containers during the round (another test run's
    # clean-up on the shared engine): there was no old container to drain. Not counted.
    disturbed: bool = False


# Markers of an operation, in order: (key, the step that ends at this marker).
STEPS = [
    ("accepted", "CLI start-up, POST, enqueue"),
    ("claimed", "queue pick-up by a worker"),
    ("first_log", "operation set-up (to its first log line)"),
    ("pulling", "resolve tag to digest (registry)"),
    ("services", "pull + Procfile lookup"),
    ("started", "create release + start container"),
    ("healthy", "health check (probe every 0.1 s)"),
    ("routed", "router switch (HAProxy runtime API)"),
    ("stopped", "drain (sleep 1 s) + stop old container"),
    ("finished", "activate release, finish operation"),
    ("cli_done", "CLI sees the end event and exits"),
]
LINE_MARKERS = {
    "pulling": lambda line: line.startswith("Pulling "),
    "services": lambda line: line.startswith(("Services from", "No Procfile")),
    "started": lambda line: line.startswith("Started "),
    "healthy": lambda line: " answered HTTP " in line,
    "routed": lambda line: line.startswith("Router:"),
    "stopped": lambda line: line.startswith("Stopped "),
}


def operation_steps(
    operation: dict[str, Any], lines: list[dict[str, Any]], began: float, ended: float
) -> dict[str, float]:
    """Split ``began``..``ended`` by the operation's timestamps and log lines."""
    marks: dict[str, float | None] = {
        "accepted": parse_time(operation["created_at"]),
        "claimed": parse_time(operation["started_at"]) if operation.get("started_at") else None,
        "first_log": parse_time(lines[0]["at"]) if lines else None,
        "finished": parse_time(operation["finished_at"]) if operation.get("finished_at") else None,
        "cli_done": ended,
    }
    for key, matches in LINE_MARKERS.items():
        marks[key] = next((parse_time(x["at"]) for x in lines if matches(x["line"])), None)
    steps: dict[str, float] = {}
    previous = began
    for key, label in STEPS:
        at = marks.get(key)
        if at is None:
            continue
        steps[label] = at - previous
        previous = at
    steps["total (CLI start to exit)"] = ended - began
    return steps


class Bench:
    def __init__(self, svc: Services, server: Server, client: docker.DockerClient, run_id: str):
        self.svc = svc
        self.server = server
        self.client = client
        self.run_id = run_id
        self.http = httpx.Client(timeout=2.0, trust_env=False)
        self.docker_cli = shutil.which("docker", path="/usr/bin") or shutil.which("docker")
        self.docker_config = server.data_dir.parent / "docker-config"
        self.disturbed = 0
        self.engine_pid = dockerd_pid(svc.docker_host)

    def cpu(self) -> CpuMeter:
        process = self.server.process
        return CpuMeter(process.pid if process else None, self.engine_pid)

    def close(self) -> None:
        self.http.close()

    # Dockyard

    def _operation(self, args: list[str]) -> tuple[dict[str, Any], float]:
        env = self.server.cli_environment()
        done = subprocess.run(
            [DOCKYARD, *args, "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=OPERATION_TIMEOUT,
        )
        ended = time.time()
        if done.returncode != 0:
            raise RuntimeError(
                f"dockyard {args[0]} exited {done.returncode}: {done.stderr.strip()}\n"
                f"{done.stdout[-2000:]}\nserver log:\n{self.server.log_tail()}"
            )
        return json.loads(done.stdout), ended

    def dockyard(
        self, args: list[str], app: str, page: str | None, check: Callable[[str], bool] | None
    ) -> Timed:
        self.ensure_running(app)
        watcher = None
        if page is not None and check is not None:
            watcher = Watcher(self.server.router_url + page, check, self.server.app_headers(app))
        with watcher or contextlib.nullcontext(), self.cpu() as cpu:
            began = time.time()
            operation, ended = self._operation(args)
        lines = self.server.cli_json("operation:logs", str(operation["id"]))
        timed = Timed(done=ended - began, steps=operation_steps(operation, lines, began, ended))
        if not any(line["line"].startswith("Stopped ") for line in lines):
            timed.disturbed = True
            log(f"warning: {args[0]} of {app} found no old container to stop; not counted")
        if watcher is not None:
            if watcher.seen is None:
                raise RuntimeError(f"the router never served the expected page for {app}")
            timed.first_200 = watcher.seen - began
            timed.steps["(router serves the new page, from CLI start)"] = timed.first_200
        timed.steps["(CPU s of the server process during the command)"] = cpu.used["server"]
        timed.steps["(CPU s of dockerd during the command)"] = cpu.used["dockerd"]
        return timed

    def ensure_running(self, app: str) -> None:
        """Someone else's test clean-up may remove app containers on the shared engine."""
        running = self.client.containers.list(filters={"label": f"dockyard.app={app}"})
        if not running:
            self.disturbed += 1
            log(f"warning: the containers of {app} were removed from outside; restarting it")
            self.server.cli_json("restart", "--app", app)

    def app_image(self, app: str) -> str:
        shown = self.server.cli_json("apps:show", "--app", app)
        return str(shown["release"]["image"])

    # baselines

    def _run(self, image: str, port: int, **environment: str) -> Container:
        return self.client.containers.run(
            image,
            detach=True,
            network_mode="host",
            init=True,
            environment={"PORT": str(port), **environment},
            labels={BENCH_LABEL: self.run_id},
        )

    def baseline_sdk(self, image: Image) -> Timed:
        """Docker SDK: pull with credentials, run with host networking and PORT, first 200."""
        port = free_port()
        with self.cpu() as cpu:
            began = time.time()
            self.client.api.pull(image.repository, tag=image.tag, auth_config=self.svc.auth)
            pulled = time.time()
            container = self._run(image.ref, port)
            started = time.time()
            seen = wait_for(self.http, f"http://{LOCALHOST}:{port}/", body_is(image.content))
        if seen is None:
            raise RuntimeError(f"the baseline container of {image.ref} never served its page")
        container.remove(force=True)
        steps = {"pull": pulled - began, "run": started - pulled, "first 200": seen - started}
        steps["CPU s of dockerd"] = cpu.used["dockerd"]
        steps["CPU s of the (idle) Dockyard server"] = cpu.used["server"]
        return Timed(first_200=seen - began, done=seen - began, steps=steps)

    def docker_cli_login(self) -> None:
        if self.docker_cli is None:
            return
        self.docker_config.mkdir(mode=0o700, exist_ok=True)
        subprocess.run(
            [self.docker_cli, "login", "-u", self.svc.user, "--password-stdin", self.svc.registry],
            input=self.svc.password,
            env=self._docker_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )

    def _docker_env(self) -> dict[str, str]:
        return clean_environment(
            DOCKER_HOST=self.svc.docker_host, DOCKER_CONFIG=str(self.docker_config)
        )

    def baseline_cli(self, image: Image) -> Timed:
        """The docker CLI: ``docker pull``, ``docker run -d --network host -e PORT``, first 200."""
        assert self.docker_cli is not None
        port = free_port()
        env = self._docker_env()
        began = time.time()
        subprocess.run(
            [self.docker_cli, "pull", "-q", image.ref],
            env=env,
            capture_output=True,
            check=True,
            timeout=OPERATION_TIMEOUT,
        )
        pulled = time.time()
        run = [self.docker_cli, "run", "-d", "--init", "--network", "host", "-e", f"PORT={port}"]
        run += ["--label", f"{BENCH_LABEL}={self.run_id}", image.ref]
        done = subprocess.run(
            run, env=env, capture_output=True, text=True, check=True, timeout=OPERATION_TIMEOUT
        )
        started = time.time()
        seen = wait_for(self.http, f"http://{LOCALHOST}:{port}/", body_is(image.content))
        if seen is None:
            raise RuntimeError(f"the docker CLI container of {image.ref} never served its page")
        self.client.containers.get(done.stdout.strip()).remove(force=True)
        return Timed(
            first_200=seen - began,
            done=seen - began,
            steps={"pull": pulled - began, "run": started - pulled, "first 200": seen - started},
        )

    def baseline_replace(self, image: str, old: Container, value: str) -> tuple[Timed, Container]:
        """Run a new container with a new value, wait for it, then stop and remove the old."""
        port = free_port()
        began = time.time()
        new = self._run(image, port, BENCH_VALUE=value)
        started = time.time()
        seen = wait_for(
            self.http, f"http://{LOCALHOST}:{port}/cgi-bin/env", env_has("BENCH_VALUE", value)
        )
        if seen is None:
            raise RuntimeError("the replacement baseline container never served its value")
        old.stop(timeout=10)
        old.remove(force=True)
        ended = time.time()
        steps = {"run": started - began, "first 200": seen - started, "stop old": ended - seen}
        return Timed(first_200=seen - began, done=ended - began, steps=steps), new

    def procfile_lookup(self, image: Image, repeat: int = 5) -> tuple[float, float]:
        """What Dockyard's Procfile lookup costs: its calls, replayed with the SDK.

        Returns the first lookup right after a pull of the image (the engine's first
        container on it), then the median of ``repeat`` more.
        """
        self.client.api.pull(image.repository, tag=image.digest, auth_config=self.svc.auth)
        times = []
        for _ in range(1 + repeat):
            began = time.perf_counter()
            for path in PROCFILE_PATHS:
                container = self.client.containers.create(
                    image.pinned,
                    entrypoint=["/"],
                    network_mode="none",
                    labels={BENCH_LABEL: self.run_id},
                )
                try:
                    stream, _ = container.get_archive(path)
                    b"".join(stream)
                except NotFound:
                    pass
                finally:
                    container.remove(force=True)
            times.append(time.perf_counter() - began)
        return times[0], median(times[1:])


def command_seconds(command: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)
        times.append(time.perf_counter() - began)
    return median(times)


# --- the run -------------------------------------------------------------------------------


@dataclass
class Series:
    """The rounds of one scenario for one image."""

    scenario: str
    image: str
    sides: dict[str, list[Timed]] = field(default_factory=dict)

    def add(self, side: str, timed: Timed) -> None:
        self.sides.setdefault(side, []).append(timed)

    def clean(self, side: str = "dockyard") -> list[Timed]:
        return [t for t in self.sides.get(side, []) if not t.disturbed]


def settle() -> None:
    """Let the disk catch up with the builds and pushes before measuring."""
    os.sync()
    time.sleep(1.0)


class Run:
    def __init__(self, args: argparse.Namespace, bench: Bench, factory: ImageFactory) -> None:
        self.args = args
        self.bench = bench
        self.factory = factory
        self.series: dict[tuple[str, str], Series] = {}
        self.started = time.monotonic()
        self.procfile: dict[str, tuple[float, float]] = {}

    def series_for(self, scenario: str, image: str) -> Series:
        return self.series.setdefault((scenario, image), Series(scenario, image))

    def rounds(self, series: Series) -> Iterator[int]:
        """Rounds until ``--rounds`` undisturbed ones (at least MIN_ROUNDS past the budget)."""
        n = 0
        while n < self.args.rounds + MAX_EXTRA_ROUNDS:
            clean = len(series.clean())
            if clean >= self.args.rounds:
                return
            if clean >= min(MIN_ROUNDS, self.args.rounds) and self.over_budget():
                log(f"time budget used up: {series.scenario} {series.image} stops at {clean}")
                return
            yield n
            n += 1
        log(f"warning: {series.scenario} {series.image}: too many disturbed rounds")

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.args.budget

    def size(self, size: str) -> None:
        bench, factory, server = self.bench, self.factory, self.bench.server
        app = f"bench-{size}-{bench.run_id}"
        server.cli_json("apps:create", app)
        log(f"{size}: building and pushing the first image, deploying it to {app}")
        current = factory.build(size, "warmup", f"{bench.run_id} {size} warm-up")
        auth = ["--private-registry-username", bench.svc.user]
        auth += ["--private-registry-password", bench.svc.password]
        server.cli_json("deploy", "--app", app, "--docker-image", current.ref, *auth)
        sides = ["dockyard", "sdk"] + (["cli"] if bench.docker_cli else [])
        deploy = self.series_for("deploy", size)
        for n in self.rounds(deploy):
            images = {
                side: factory.build(size, f"r{n}-{side}", f"{bench.run_id} {size} r{n} {side}")
                for side in sides
            }
            settle()
            order = sides[n % len(sides) :] + sides[: n % len(sides)]
            for side in order:
                image = images[side]
                factory.assert_absent(image)
                if side == "dockyard":
                    args = ["deploy", "--app", app, "--docker-image", image.ref, *auth]
                    timed = bench.dockyard(args, app, "/", body_is(image.content))
                    factory.remove(current)  # the previous release's, now stopped
                    current = image
                else:
                    with background_load(server, app, "/"):
                        if side == "sdk":
                            timed = bench.baseline_sdk(image)
                        else:
                            timed = bench.baseline_cli(image)
                    factory.remove(image)
                deploy.add(side, timed)
                time.sleep(0.5)
            log(f"{size} deploy round {n + 1}: " + self._summary(deploy, n))

        probe = factory.build(size, "procfile", f"{bench.run_id} {size} procfile")
        settle()
        self.procfile[size] = bench.procfile_lookup(probe)
        factory.remove(probe)
        self.replacements(size, app, bench.app_image(app))

    def replacements(self, size: str, app: str, image: str) -> None:
        """(b) config:set and (c) restart, each against a raw replacement of the container."""
        bench = self.bench
        old = bench._run(image, free_port(), BENCH_VALUE="initial")
        try:
            for scenario in ("config:set", "restart"):
                series = self.series_for(scenario, size)
                for n in self.rounds(series):
                    value = f"{scenario.replace(':', '-')}-{n}-{uuid.uuid4().hex[:8]}"
                    order = ["dockyard", "raw"] if n % 2 == 0 else ["raw", "dockyard"]
                    for side in order:
                        if side == "raw":
                            load = background_load(bench.server, app, "/cgi-bin/env")
                            with load if scenario == "config:set" else contextlib.nullcontext():
                                timed, old = bench.baseline_replace(image, old, value)
                        elif scenario == "config:set":
                            args = ["config:set", "--app", app, f"BENCH_VALUE={value}"]
                            timed = bench.dockyard(
                                args, app, "/cgi-bin/env", env_has("BENCH_VALUE", value)
                            )
                        else:
                            timed = bench.dockyard(["restart", "--app", app], app, None, None)
                        series.add(side, timed)
                        time.sleep(0.5)
                    log(f"{size} {scenario} round {n + 1}: " + self._summary(series, n))
        finally:
            with contextlib.suppress(NotFound):
                old.remove(force=True)

    @staticmethod
    def _summary(series: Series, n: int) -> str:
        parts = []
        for side, timed in series.sides.items():
            if len(timed) > n:
                t = timed[n]
                first = f"{t.first_200:.2f}/" if t.first_200 is not None else ""
                parts.append(f"{side} {first}{t.done:.2f} s")
        return ", ".join(parts)


# --- the report ----------------------------------------------------------------------------


def _values(timed: list[Timed], what: str) -> list[float]:
    return [v for t in timed if not t.disturbed and (v := getattr(t, what)) is not None]


def results_table(run: Run) -> str:
    rows = [
        "| scenario | image | Dockyard median s | baseline median s | ratio | overhead s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    plan = [
        ("deploy", "first_200", "sdk", "deploy → first 200 via router vs SDK pull+run+200"),
        ("deploy", "first_200", "cli", "deploy → first 200 via router vs docker CLI pull+run+200"),
        ("deploy", "done", "sdk", "deploy → CLI exits vs SDK pull+run+200"),
        ("config:set", "first_200", "raw", "config:set → new value served vs run new+200"),
        ("config:set", "done", "raw", "config:set → CLI exits vs run new+200+stop old"),
        ("restart", "done", "raw", "restart → CLI exits vs run new+200+stop old"),
    ]
    for size in run.args.sizes:
        for scenario, what, side, label in plan:
            series = run.series.get((scenario, size))
            if series is None or side not in series.sides:
                continue
            ours = median(_values(series.sides["dockyard"], what))
            base = median(_values(series.sides[side], what))
            rows.append(
                f"| {label} | {size} | {ours:.2f} | {base:.2f} | {ours / base:.2f}x "
                f"| {ours - base:+.2f} |"
            )
    return "\n".join(rows)


def breakdown_table(run: Run) -> str:
    columns = [
        (scenario, size)
        for scenario in ("deploy", "config:set", "restart")
        for size in run.args.sizes
        if (scenario, size) in run.series
    ]
    labels = [label for _, label in STEPS]
    labels += [
        "total (CLI start to exit)",
        "(router serves the new page, from CLI start)",
        "(CPU s of the server process during the command)",
        "(CPU s of dockerd during the command)",
    ]
    head = " | ".join(f"{scenario} {size}" for scenario, size in columns)
    rows = [f"| step (Dockyard, median s) | {head} |", "|---" + "|---:" * len(columns) + "|"]
    for label in labels:
        cells = []
        for key in columns:
            timed = run.series[key].clean()
            values = [t.steps[label] for t in timed if label in t.steps]
            cells.append(f"{median(values):.3f}" if values else "-")
        if any(c != "-" for c in cells):
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rows += ["", "| baseline step (median s) | " + head + " |"]
    rows.append("|---" + "|---:" * len(columns) + "|")
    for side, step in [
        ("sdk", "pull"),
        ("sdk", "run"),
        ("sdk", "first 200"),
        ("sdk", "CPU s of dockerd"),
        ("sdk", "CPU s of the (idle) Dockyard server"),
        ("cli", "pull"),
        ("cli", "run"),
        ("cli", "first 200"),
        ("raw", "run"),
        ("raw", "first 200"),
        ("raw", "stop old"),
    ]:
        cells = []
        for key in columns:
            timed = run.series[key].clean(side)
            values = [t.steps[step] for t in timed if step in t.steps]
            cells.append(f"{median(values):.3f}" if values else "-")
        if any(c != "-" for c in cells):
            name = {"sdk": "SDK", "cli": "docker CLI", "raw": "raw replace"}[side]
            rows.append(f"| {name}: {step} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def raw_rounds(run: Run) -> str:
    """Every round's values; a star marks a disturbed round (not in the medians)."""

    def show(t: Timed, value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}" + ("*" if t.disturbed else "")

    lines = []
    for (scenario, size), series in run.series.items():
        for side, timed in series.sides.items():
            parts = []
            if any(t.first_200 is not None for t in timed):
                parts.append("first 200: " + " ".join(show(t, t.first_200) for t in timed))
            if scenario != "deploy" or side == "dockyard":
                parts.append("done: " + " ".join(show(t, t.done) for t in timed))
            lines.append(f"- {scenario} {size} {side}: " + "; ".join(parts))
    return "\n".join(lines)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    cores = len(os.sched_getaffinity(0))
    return f"{cores} cores ({model or 'unknown CPU'}), Linux {platform.release()}"


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout.strip() or "unknown"
    return "unknown"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds per scenario and image (default 7)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=1500.0,
        help=f"seconds; past it every group stops after {MIN_ROUNDS} rounds (default 1500)",
    )
    parser.add_argument(
        "--sizes", help="comma-separated: tiny, big (default tiny,big; docker runtime only)"
    )
    parser.add_argument(
        "--runtime",
        choices=["docker", "swarm"],
        default="docker",
        help="docker: this benchmark on one engine (default); swarm: bench/swarm_deploy.py "
        "(direct deploys and scaling on the two-node test swarm, tiny image, --rounds only)",
    )
    parser.add_argument(
        "--sources",
        action="store_true",
        help="bench/source_deploys.py instead: deploys through each registry credential "
        "source kind against a static source (tiny image, --rounds only)",
    )
    args = parser.parse_args()
    if args.sources and (args.runtime == "swarm" or args.sizes is not None):
        parser.error("--sources takes --rounds only")
    if args.runtime == "swarm" and args.sizes is not None:
        parser.error("--sizes is for --runtime docker: the swarm benchmark deploys tiny images")
    args.sizes = [s.strip() for s in (args.sizes or "tiny,big").split(",") if s.strip()]
    if set(args.sizes) - {"tiny", "big"} or not args.sizes:
        parser.error("--sizes takes tiny and/or big")
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be in 1..50")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks


def main() -> int:
    args = parse_args()
    if args.runtime == "swarm":
        import swarm_deploy  # beside this file, on sys.path when run as a script

        return swarm_deploy.main(rounds=args.rounds)
    if args.sources:
        import source_deploys  # beside this file, on sys.path when run as a script

        return source_deploys.main(rounds=args.rounds)
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(sys.orig_argv)
    started = datetime.now(UTC)
    load_before = load_average()
    svc = services()
    run_id = uuid.uuid4().hex[:6]
    client = docker.DockerClient(base_url=svc.docker_host, version="auto")
    client.login(registry=svc.registry, **svc.auth)  # kept in memory, not in a file
    handles = [f"bench-{size}-{run_id}" for size in args.sizes]
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-deploy-") as tmp:
        work = Path(tmp)
        server = Server(work / "data")
        factory = ImageFactory(client, svc, run_id, work)
        bench: Bench | None = None
        run: Run | None = None
        startup = 0.0
        cli_times: dict[str, float] = {}
        try:
            log(f"run {run_id}: starting a Dockyard server (SQLite) on {svc.docker_host}")
            startup = server.start()
            bench = Bench(svc, server, client, run_id)
            bench.docker_cli_login()
            cli_env = server.cli_environment()
            python = [sys.executable, "-c", "pass"]
            cli_times = {
                "python -c pass": command_seconds(python, cli_env, 10),
                "python -c 'import dockyard.entry'": command_seconds(
                    [sys.executable, "-c", "import dockyard.entry"], cli_env, 10
                ),
                "python -c 'import dockyard.entry, httpx; httpx.Client()'": command_seconds(
                    [sys.executable, "-c", "import dockyard.entry, httpx; httpx.Client()"],
                    cli_env,
                    10,
                ),
                "dockyard --version": command_seconds([DOCKYARD, "--version"], cli_env, 10),
                "dockyard apps --output json": command_seconds(
                    [DOCKYARD, "apps", "--output", "json"], cli_env, 10
                ),
            }
            run = Run(args, bench, factory)
            for size in args.sizes:
                run.size(size)
        except BaseException:
            print(f"server log:\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            log("cleaning up: server, containers, images")
            if bench is not None:
                bench.close()
            server.stop()
            for handle in handles:
                for c in client.containers.list(
                    all=True, filters={"label": f"dockyard.app={handle}"}
                ):
                    with contextlib.suppress(NotFound):
                        c.remove(force=True)
            for c in client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={run_id}"}):
                with contextlib.suppress(NotFound):
                    c.remove(force=True)
            log(f"removed {factory.remove_all()} bench image(s) from the engine")
            client.close()
    assert run is not None
    elapsed = (datetime.now(UTC) - started).total_seconds()
    rounds = {k: len(v.clean()) for k, v in run.series.items()}
    disturbed = sum(len(v.sides.get("dockyard", [])) - len(v.clean()) for v in run.series.values())
    print(f"### Run of {started:%Y-%m-%d %H:%M} UTC\n")
    print(f"- command: `{command}` (in {Path.cwd()})")
    print(f"- machine: {machine()}; load average before {load_before}, after {load_average()}")
    print(
        f"- revision: {git_revision()}; whole run {elapsed:.0f} s; server start-up {startup:.2f} s"
    )
    print(
        "- undisturbed Dockyard rounds (each with its baseline rounds): "
        + ", ".join(f"{s} {i}: {n}" for (s, i), n in rounds.items())
        + "; sides alternate, the order rotating every round"
    )
    print(
        "- images: tiny "
        "= busybox-static rootfs + web layer (~2 MB); big = the same + 5 COPY layers of 20 MiB "
        "from os.urandom (~107 MB); every round's image has its own rootfs and data, so "
        "nothing is in the engine's cache before a deploy"
    )
    print(
        "- times are seconds from the start of the command (CLI process, SDK call) to the "
        f"first 200 with the expected body (polled every {POLL_SECONDS * 1000:.0f} ms) or "
        "to the command's exit; baseline containers run with --init like Dockyard's; while "
        "a baseline runs, the router is polled as during the Dockyard side (equal load)"
    )
    if disturbed or (bench is not None and bench.disturbed):
        print(
            "- another test run's clean-up removed this run's app containers on the shared "
            f"engine: {bench.disturbed if bench else 0} time(s) between rounds (app restarted "
            f"before measuring), {disturbed} round(s) without an old container to drain (run "
            "again, not in the medians; starred below)"
        )
    print()
    print(results_table(run))
    print(
        "\nCLI start-up (median of 10): "
        + ", ".join(f"`{k}` {v:.3f} s" for k, v in cli_times.items())
    )
    print(
        "\nProcfile lookup replayed with the SDK (2x create, get_archive, remove) on a freshly "
        "pulled image, first time / then (median of 5): "
        + ", ".join(f"{size} {a:.3f} / {b:.3f} s" for size, (a, b) in run.procfile.items())
    )
    print("\nWhere the time goes (steps end at the named event; medians of each step):\n")
    print(breakdown_table(run))
    print("\n<details><summary>every round (s)</summary>\n")
    print(raw_rounds(run))
    print("\n</details>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
