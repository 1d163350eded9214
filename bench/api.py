"""API benchmark (issue 2): ``GET /apps`` and the ``config:set`` round trip.

For each backend (SQLite, then PostgreSQL) this starts a real ``dockyard
server`` on a free 127.0.0.1 port with a fresh data directory (and a fresh
PostgreSQL database), creates the apps, then runs four bounded scenarios:

- ``GET /apps`` (100 apps in the answer) at concurrency 1 and 32;
- ``config:set`` at concurrency 1 (one app) and 32 (32 different apps): POST
  the change, then follow the operation's log stream until its ``end`` event,
  as ``dockyard config:set`` does.

The load comes from separate processes (``multiprocessing``, fork), each with
threads that own one ``httpx.Client`` each, so the server's process and the
load generator do not share a GIL. The CPU time of the server, of the load
generator and of everything else on the machine is reported so a reader can
see which one saturates; a last pair of scenarios runs the same load against a
stub that answers with the bytes of ``GET /apps`` at no cost: the most this
load generator can measure here. At the end of each backend the server's peak
RSS (``VmHWM``) is read, then the server (and the HAProxy it starts, on free
ports) is stopped and its data dropped.

Run: ``.venv/bin/python bench/api.py`` (``make bench``). PostgreSQL comes from
``DOCKYARD_TEST_POSTGRES``, or from ``scripts/services.sh`` when it is unset.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import queue
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import psycopg

from harness import die_with_parent, launch_server, log_tail

ROOT = Path(__file__).resolve().parent.parent
DOCKYARD = str(Path(sys.executable).with_name("dockyard"))
LOCALHOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0
# Each scenario stops after its duration or after this many requests in all.
MAX_REQUESTS_PER_SCENARIO = 200_000
# Unmeasured requests per client thread first: connect, warm the server's caches.
WARMUP = {"list": 3, "config": 1, "stub": 3}
# The stub scenarios (the load generator's ceiling) run at most this long.
STUB_SECONDS = 3.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the load generator (runs in child processes) -----------------------------------------


def _child_signals() -> None:
    """A forked child: plain SIGTERM (not the parent's handler), and die with the parent."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and stops us
    die_with_parent()


@dataclass
class ThreadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    ended: float = 0.0


def _client(url: str, token: str) -> httpx.Client:
    # trust_env=False: no proxy from the environment, every request goes to 127.0.0.1.
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT,
        trust_env=False,
    )


def list_apps_once(client: httpx.Client, _handle: str, _n: int) -> str | None:
    """One ``GET /apps``; returns an error description or None."""
    response = client.get("/apps")
    if response.status_code != 200:
        return f"GET /apps answered {response.status_code}"
    return None


def config_set_once(client: httpx.Client, handle: str, n: int) -> str | None:
    """One ``config:set`` round trip: POST the change, follow the log to its end."""
    response = client.post(
        f"/apps/{handle}/configuration", json={"set": {"BENCH_VALUE": str(n)}, "unset": []}
    )
    if response.status_code != 202:
        return f"POST configuration answered {response.status_code}: {response.text[:200]}"
    operation_id = response.json()["id"]
    give_up = time.monotonic() + REQUEST_TIMEOUT
    with client.stream(
        "GET", f"/operations/{operation_id}/logs", params={"follow": "true"}
    ) as stream:
        if stream.status_code != 200:
            return f"GET operation logs answered {stream.status_code}"
        for raw in stream.iter_lines():
            if time.monotonic() > give_up:
                return f"operation {operation_id} did not end within {REQUEST_TIMEOUT} s"
            if not raw:
                continue
            event = json.loads(raw)
            if event.get("kind") == "end":
                status = event["operation"]["status"]
                return None if status == "succeeded" else f"operation {operation_id}: {status}"
    return f"the log stream of operation {operation_id} closed without an end event"


ACTIONS: dict[str, Callable[[httpx.Client, str, int], str | None]] = {
    "list": list_apps_once,
    "config": config_set_once,
    "stub": list_apps_once,
}


def _load_thread(
    url: str,
    token: str,
    action: Callable[[httpx.Client, str, int], str | None],
    warmup: int,
    handle: str,
    max_requests: int,
    ready: threading.Barrier,
    go: threading.Event,
    deadline: list[float],
    result: ThreadResult,
) -> None:
    with _client(url, token) as client:
        try:
            for n in range(warmup):
                error = action(client, handle, -1 - n)
                if error and not result.first_error:
                    result.first_error = "warm-up: " + error
        except httpx.HTTPError as exc:
            result.first_error = f"warm-up: {type(exc).__name__}: {exc}"
        try:
            ready.wait(timeout=60)
        except threading.BrokenBarrierError:
            return
        if not go.wait(timeout=60):
            return
        end_by = deadline[0]
        result.started = time.monotonic()
        for n in range(max_requests):
            begun = time.perf_counter()
            try:
                error = action(client, handle, n)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            took = time.perf_counter() - begun
            if error:
                result.errors += 1
                result.first_error = result.first_error or error
            else:
                result.latencies.append(took)
            if time.monotonic() >= end_by:
                break
        result.ended = time.monotonic()


def load_process(
    url: str,
    token: str,
    kind: str,
    handles: list[str],
    duration: float,
    max_requests_per_thread: int,
    barrier: ProcessBarrier,
    results: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One load process: a thread per handle, all released together, for ``duration`` s."""
    _child_signals()
    action = ACTIONS[kind]
    ready = threading.Barrier(len(handles) + 1)
    go = threading.Event()
    deadline = [0.0]
    outcomes = [ThreadResult() for _ in handles]
    shared = (ready, go, deadline)
    threads = [
        threading.Thread(
            target=_load_thread,
            args=(url, token, action, WARMUP[kind], h, max_requests_per_thread, *shared, r),
            daemon=True,
        )
        for h, r in zip(handles, outcomes, strict=True)
    ]
    for thread in threads:
        thread.start()
    report: dict[str, Any] = {"ok": False}
    try:
        ready.wait(timeout=90)  # every thread has warmed up
        barrier.wait(timeout=90)  # every load process has, and the parent is ready
        usage = resource.getrusage(resource.RUSAGE_SELF)
        deadline[0] = time.monotonic() + duration
        go.set()
        for thread in threads:
            thread.join(timeout=duration + 2 * REQUEST_TIMEOUT)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
        report = {
            "ok": True,
            "latencies": [x for r in outcomes for x in r.latencies],
            "errors": sum(r.errors for r in outcomes),
            "first_error": next((r.first_error for r in outcomes if r.first_error), ""),
            "started": min((r.started for r in outcomes if r.started), default=0.0),
            "ended": max((r.ended for r in outcomes), default=0.0),
            "cpu": cpu,
            "stuck": sum(t.is_alive() for t in threads),
        }
    except Exception as exc:
        go.set()
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    results.put(report)


# --- the stub server: what the load generator can do against a server that costs nothing --


class _StubProtocol(asyncio.Protocol):
    """Answers every request on a keep-alive connection with the same bytes."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # GET requests only: a request is complete at its blank line.
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            assert self.transport is not None
            self.transport.write(self.response)


def serve_stub(port: int, body: bytes, lifetime: float) -> None:
    """In a child process: serve ``body`` as JSON on 127.0.0.1 for at most ``lifetime`` s."""
    _child_signals()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    response = head.encode() + b"\r\n\r\n" + body

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _StubProtocol(response), LOCALHOST, port)
        async with server:
            await asyncio.sleep(lifetime)

    asyncio.run(serve())


class StubServer:
    """A process serving a fixed ``GET /apps`` body: the load generator's ceiling."""

    def __init__(self, body: bytes, lifetime: float) -> None:
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        ctx = multiprocessing.get_context("fork")
        self.process = ctx.Process(target=serve_stub, args=(self.port, body, lifetime), daemon=True)

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOCALHOST, self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the stub server did not start")

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=5)

    def cpu_seconds(self) -> float:
        assert self.process.pid is not None
        return _cpu_seconds(self.process.pid)


# --- the parent: servers, scenarios, report -------------------------------------------------


class Target(Protocol):
    url: str

    def cpu_seconds(self) -> float: ...


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, every process)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A ``dockyard server`` process with its own data directory."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.log_path = data_dir.parent / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        command = [DOCKYARD, "server", "--data-dir", str(self.data_dir)]
        command += ["--listen", f"{LOCALHOST}:{self.port}"]
        # The router (HAProxy) on free ports: never another server's, nor the defaults.
        command += ["--router-listen", f"{LOCALHOST}:{free_port()}"]
        if self.database_url:
            command += ["--database-url", self.database_url]
        env = {**os.environ, "DOCKYARD_ACCESS_LOG": "0"}
        env.pop("DOCKYARD_DATABASE_URL", None)
        self.process = launch_server(command, env, self.log_path, self.url, self.data_dir)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        _stop_leftovers(self.data_dir)

    def log_tail(self) -> str:
        return log_tail(self.log_path)

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.pid)

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{key} not in /proc/{self.pid}/status")


def load_services() -> None:
    """Start the local services (``scripts/services.sh``) unless ``make bench`` did.

    Its settings (PostgreSQL, and ``DOCKER_HOST`` for the server's runtime) go
    into this process's environment, which the servers inherit.
    """
    if os.environ.get("DOCKYARD_TEST_POSTGRES"):
        return
    print("running scripts/services.sh", file=sys.stderr)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "services.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=300,
        check=True,
    )
    for line in done.stdout.splitlines():
        key, equals, value = line.partition("=")
        if equals and key.isidentifier():
            os.environ.setdefault(key, value.strip())


def _stop_leftovers(data_dir: Path) -> None:
    """Stop what the server started with our data directory and left running (its HAProxy).

    Only processes whose command line names this run's own temporary data
    directory are touched, each by its pid.
    """
    marker = str(data_dir).encode()
    leftovers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                leftovers.append(int(entry.name))
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while leftovers and time.monotonic() < deadline:
        leftovers = [pid for pid in leftovers if Path(f"/proc/{pid}").exists()]
        time.sleep(0.1)
    for pid in leftovers:
        print(f"killing pid {pid}, still running after the server stopped", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def postgres_admin_url() -> str:
    url = os.environ.get("DOCKYARD_TEST_POSTGRES")
    if not url:
        raise RuntimeError("no PostgreSQL: set DOCKYARD_TEST_POSTGRES or run scripts/services.sh")
    if urlsplit(url).hostname != LOCALHOST:
        raise RuntimeError(f"refusing a PostgreSQL that is not on {LOCALHOST}")
    return url.rstrip("/")


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the local cluster, dropped afterwards; yields its URL."""
    name = "dockyard_bench_" + uuid.uuid4().hex[:12]
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url}/{name}"
    finally:
        with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Scenario:
    name: str
    kind: str
    concurrency: int
    handles: list[str]


@dataclass
class Outcome:
    backend: str
    scenario: Scenario
    count: int
    errors: int
    wall: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    client_cpu: float
    other_cpu: float
    first_error: str

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall > 0 else 0.0


def run_scenario(
    server: Target,
    token: str,
    backend: str,
    scenario: Scenario,
    duration: float,
    load_processes: int,
) -> Outcome:
    ctx = multiprocessing.get_context("fork")
    processes = max(1, min(load_processes, scenario.concurrency))
    groups = [scenario.handles[i::processes] for i in range(processes)]
    per_thread = max(1, MAX_REQUESTS_PER_SCENARIO // scenario.concurrency)
    barrier = ctx.Barrier(processes + 1)
    results: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
    children = [
        ctx.Process(
            target=load_process,
            args=(
                server.url,
                token,
                scenario.kind,
                group,
                duration,
                per_thread,
                barrier,
                results,
            ),
            daemon=True,
        )
        for group in groups
    ]
    reports: list[dict[str, Any]] = []
    try:
        for child in children:
            child.start()
        barrier.wait(timeout=60)  # all load threads have warmed up
        cpu_before, busy_before, t_before = server.cpu_seconds(), _busy_seconds(), time.monotonic()
        give_up = time.monotonic() + duration + 3 * REQUEST_TIMEOUT
        while len(reports) < processes:
            try:
                reports.append(results.get(timeout=max(0.1, give_up - time.monotonic())))
            except queue.Empty:
                raise RuntimeError(f"{scenario.name}: the load processes did not report") from None
        cpu_after, busy_after, t_after = server.cpu_seconds(), _busy_seconds(), time.monotonic()
        for child in children:
            child.join(timeout=10)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
    failed = [r["error"] for r in reports if not r["ok"]]
    if failed:
        raise RuntimeError(f"{scenario.name}: a load process failed: {failed[0]}")
    latencies = sorted(x for r in reports for x in r["latencies"])
    started = min(r["started"] for r in reports if r["started"])
    ended = max(r["ended"] for r in reports)
    wall = ended - started
    stuck = sum(r["stuck"] for r in reports)
    span = max(t_after - t_before, 1e-9)
    server_cpu = (cpu_after - cpu_before) / span
    machine_cpu = (busy_after - busy_before) / span
    client_cpu = sum(r["cpu"] for r in reports) / wall if wall > 0 else math.nan
    return Outcome(
        backend=backend,
        scenario=scenario,
        count=len(latencies),
        errors=sum(r["errors"] for r in reports),
        wall=wall,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        other_cpu=max(0.0, machine_cpu - server_cpu - client_cpu),
        first_error=next((r["first_error"] for r in reports if r["first_error"]), "")
        + (f" ({stuck} client threads were still running at the end)" if stuck else ""),
    )


@dataclass
class BackendRun:
    backend: str
    outcomes: list[Outcome]
    peak_rss_kib: int
    startup_s: float
    create_apps_s: float
    apps_body: bytes


def create_apps(server: Server, token: str, count: int) -> tuple[list[str], bytes]:
    """Create ``count`` apps; return their handles and the ``GET /apps`` body."""
    handles = [f"bench-{n:03d}" for n in range(count)]
    with _client(server.url, token) as client:
        for handle in handles:
            response = client.post("/apps", json={"handle": handle})
            if response.status_code != 201:
                raise RuntimeError(f"creating {handle}: {response.status_code} {response.text}")
        body = client.get("/apps").content
    listed = json.loads(body)
    if len(listed) != count:
        raise RuntimeError(f"GET /apps lists {len(listed)} apps, not {count}")
    return handles, body


def _progress(outcome: Outcome) -> None:
    scenario = outcome.scenario
    print(
        f"  {outcome.backend:10} {scenario.name:22} c={scenario.concurrency:<3} "
        f"{outcome.rate:8.1f}/s  p50 {outcome.p50_ms:7.2f} ms  "
        f"p99 {outcome.p99_ms:7.2f} ms  errors {outcome.errors}",
        file=sys.stderr,
        flush=True,
    )
    if outcome.first_error:
        print(f"    first error: {outcome.first_error}", file=sys.stderr)


def bench_backend(
    backend: str, database_url: str | None, args: argparse.Namespace, work: Path
) -> BackendRun:
    server = Server(work / backend / "data", database_url)
    server.data_dir.parent.mkdir(parents=True)
    try:
        began = time.monotonic()
        server.start()
        startup = time.monotonic() - began
        token = server.token
        began = time.monotonic()
        handles, body = create_apps(server, token, args.apps)
        created = time.monotonic() - began
        high = args.concurrency
        scenarios = [
            Scenario("GET /apps", "list", 1, ["-"]),
            Scenario("GET /apps", "list", high, ["-"] * high),
            Scenario("config:set (1 app)", "config", 1, handles[:1]),
            Scenario(f"config:set ({high} apps)", "config", high, handles[:high]),
        ]
        outcomes = []
        for scenario in scenarios:
            outcome = run_scenario(
                server, token, backend, scenario, args.duration, args.load_processes
            )
            _progress(outcome)
            outcomes.append(outcome)
        if server.process is None or server.process.poll() is not None:
            raise RuntimeError(f"the server died during the benchmark:\n{server.log_tail()}")
        peak = server.status_kib("VmHWM")
        return BackendRun(backend, outcomes, peak, startup, created, body)
    except BaseException:
        print(f"server log ({backend}):\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()


def calibrate(body: bytes, args: argparse.Namespace) -> list[Outcome]:
    """The load generator against a stub that serves the same ``GET /apps`` bytes."""
    duration = min(args.duration, STUB_SECONDS)
    stub = StubServer(body, lifetime=2 * duration + 60)
    outcomes = []
    try:
        stub.start()
        for concurrency in (1, args.concurrency):
            scenario = Scenario("GET /apps (stub)", "stub", concurrency, ["-"] * concurrency)
            outcome = run_scenario(stub, "-", "stub", scenario, duration, args.load_processes)
            _progress(outcome)
            outcomes.append(outcome)
    finally:
        stub.stop()
    return outcomes


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    cores = len(os.sched_getaffinity(0))
    return (
        f"{cores} cores ({model or platform.processor() or 'unknown CPU'}), "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def markdown(runs: list[BackendRun], args: argparse.Namespace) -> str:
    rows = [
        "| backend | scenario | concurrency | completed | req/s or ops/s | p50 ms | p99 ms "
        "| errors | server CPU | load-gen CPU | other CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for o in run.outcomes:
            backend = run.backend if o.backend != "stub" else "stub (load-gen ceiling)"
            rows.append(
                f"| {backend} | {o.scenario.name} | {o.scenario.concurrency} | {o.count} "
                f"| {o.rate:,.0f} | {o.p50_ms:.1f} | {o.p99_ms:.1f} | {o.errors} "
                f"| {o.server_cpu:.2f} | {o.client_cpu:.2f} | {o.other_cpu:.2f} |"
            )
    rows += [
        "",
        "| backend | server peak RSS (VmHWM) | server start-up | create apps |",
        "|---|---:|---:|---:|",
    ]
    for run in runs:
        if run.backend == "stub":
            continue
        rows.append(
            f"| {run.backend} | {run.peak_rss_kib / 1024:.1f} MiB | {run.startup_s:.2f} s "
            f"| {args.apps} in {run.create_apps_s:.2f} s |"
        )
    return "\n".join(rows)


def aims(runs: list[BackendRun]) -> str:
    """The issue's aims, on SQLite: GET /apps >= 1,500 req/s, config:set p50 <= 25 ms."""
    sqlite = next((run for run in runs if run.backend == "sqlite"), None)
    if sqlite is None:
        return "Aims (SQLite): not measured."
    lists = [o.rate for o in sqlite.outcomes if o.scenario.kind == "list"]
    single = [o.p50_ms for o in sqlite.outcomes if o.scenario.name == "config:set (1 app)"]
    best, p50 = max(lists, default=0.0), single[0] if single else math.nan
    return (
        f"Aims (SQLite): GET /apps {best:,.0f} req/s at best (aim >= 1,500: "
        f"{'met' if best >= 1500 else 'missed'}); config:set p50 {p50:.1f} ms at "
        f"concurrency 1 (aim <= 25 ms: {'met' if p50 <= 25 else 'missed'})."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (default: both)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--apps", type=int, default=100, help="apps created (and listed)")
    parser.add_argument("--concurrency", type=int, default=32, help="the high concurrency")
    parser.add_argument(
        "--load-processes", type=int, default=2, help="processes generating the load"
    )
    parser.add_argument(
        "--no-stub", action="store_true", help="skip measuring the load generator's ceiling"
    )
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if not 0 < args.duration <= 60:
        parser.error("--duration must be in (0, 60]")
    if not 0 < args.apps <= 1000 or not 0 < args.concurrency <= min(args.apps, 256):
        parser.error("need 0 < --concurrency <= --apps <= 1000 (and concurrency <= 256)")
    if not 0 < args.load_processes <= 16:
        parser.error("--load-processes must be in 1..16")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(sys.orig_argv)
    started = datetime.now(UTC)
    load_at_start = os.getloadavg()[0]
    runs: list[BackendRun] = []
    print(f"machine: {machine()}", file=sys.stderr)
    if "postgresql" in args.backends:
        load_services()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        work = Path(tmp)
        for backend in args.backends:
            print(f"{backend}: starting a server and creating {args.apps} apps", file=sys.stderr)
            if backend == "sqlite":
                runs.append(bench_backend(backend, None, args, work))
            else:
                with postgres_database(postgres_admin_url()) as url:
                    runs.append(bench_backend(backend, url, args, work))
        if not args.no_stub:
            print("stub: the load generator against a server that costs nothing", file=sys.stderr)
            body = runs[0].apps_body if runs else b"[]"
            runs.append(BackendRun("stub", calibrate(body, args), 0, 0.0, 0.0, body))
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(f"## API benchmark ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(f"- command: `{command}` (in {Path.cwd()})")
    print(f"- machine: {machine()}")
    print(
        f"- revision: {git_revision()}; whole run {elapsed:.0f} s; 1-minute load average "
        f"{load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    print(
        f"- each scenario: {args.duration:g} s (stub: {min(args.duration, STUB_SECONDS):g} s) "
        f"after {WARMUP['list']} warm-up GETs or {WARMUP['config']} warm-up config:set per "
        f"client; load from {args.load_processes} processes, one httpx.Client per thread; "
        "server with its default --workers (4) and DOCKYARD_ACCESS_LOG=0"
    )
    print(
        "- config:set = POST /apps/{app}/configuration, then follow "
        "/operations/{id}/logs?follow=true to the end event (status succeeded)"
    )
    print(
        "- CPU columns: cores busy (CPU seconds / wall seconds) during the scenario; "
        "other CPU = the whole machine's busy cores less the server's and the load "
        "generator's (other processes: anything above ~0.1 disturbs the figures); "
        "p50/p99 are nearest-rank over every completed request; req/s = completed / "
        "(last completion - first start), so the drain at the end counts"
    )
    print(
        "- stub rows: the same load generator against a stub process that answers every "
        "request with the bytes of GET /apps at once: the most the load generator can "
        "measure on this machine\n"
    )
    print(markdown(runs, args))
    print()
    print(aims(runs))
    failed = sum(o.errors for run in runs for o in run.outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
