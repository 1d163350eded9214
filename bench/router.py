"""Router benchmark (issue 11): switch cost by number of routed apps, throughput against direct.

The router driven through the class the server uses (``HAProxyRouter``) on
free 127.0.0.1 ports, in a data directory of its own for each scenario.
Upstreams are busybox ``httpd`` processes on loopback (the web server of the
test apps), each serving a page that names it.

(a) switch cost: with N apps routed (1, 100, 500; all but one app share a
    few upstreams), the time from the call that switches one app from
    upstream "old" to upstream "new" until the first request through the
    router is answered by "new" (requests sent back to back on a keep-alive
    connection), median of ROUNDS switches; reported with the ratio to N=1.
(b) throughput: ``ab -k`` (apache2-utils) with CONCURRENCY connections,
    REQUESTS requests, through the router to one app, against ``ab``
    straight at the upstream, same run, alternating rounds: requests/s and
    p99 (ab's 99% line), medians, and the ratio router/direct.

Run: ``.venv/bin/python bench/router.py [--rounds N]``.
Nothing but 127.0.0.1 is contacted; every process this starts is stopped.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dockyard.router.haproxy import HAProxyRouter, stop_router

DOMAIN = "bench.localhost"
SIZES = (1, 100, 500)
SHARED = 4  # upstreams the other apps share


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def upstreams(directory: Path, names: list[str]) -> Iterator[dict[str, str]]:
    """A busybox httpd per name, serving a page with the name; name -> host:port."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    processes, found = [], {}
    try:
        for name in names:
            root = directory / name
            root.mkdir(parents=True)
            (root / "index.html").write_text(name + "\n")
            port = free_port()
            processes.append(
                subprocess.Popen(
                    [busybox, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(root)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            found[name] = f"127.0.0.1:{port}"
        for address in found.values():
            wait_answering(address)
        yield found
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def wait_answering(address: str, host: str | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(address, host)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def get(address: str, host: str | None = None) -> str:
    name, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(name, int(port), timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host or name})
        return connection.getresponse().read().decode().strip()
    finally:
        connection.close()


def make_router(directory: Path) -> HAProxyRouter:
    return HAProxyRouter(listen=f"127.0.0.1:{free_port()}", domain=DOMAIN, data_dir=directory)


def switch_cost(
    router: HAProxyRouter, ups: dict[str, str], apps: int, rounds: int, closes: list[int]
) -> float:
    """Median seconds from a switch to the first request the new upstream answers.

    ``closes[0]`` counts the client connections the router closed meanwhile.
    """
    shared = [ups[f"shared{i}"] for i in range(SHARED)]
    for n in range(apps - 1):
        router.route(f"other{n}", [shared[n % SHARED]])
    host = f"switched.{DOMAIN}"
    router.route("switched", [ups["old"]])
    wait_answering(router.listen, host)
    port = int(router.listen.rpartition(":")[2])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    costs = []
    try:
        for n in range(rounds):
            target, other = ("new", "old") if n % 2 == 0 else ("old", "new")
            started = time.perf_counter()
            router.route("switched", [ups[target]])
            while True:
                try:
                    connection.request("GET", "/", headers={"Host": host})
                    response = connection.getresponse()
                    body = response.read().decode().strip()
                    closed = response.will_close
                except (OSError, http.client.HTTPException):
                    body, closed = "", True  # a reload closed the idle connection
                    closes[0] += 1
                if closed:
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                if body == target:
                    break
            costs.append(time.perf_counter() - started)
            assert other != target
    finally:
        connection.close()
    return statistics.median(costs)


AB_RATE = re.compile(r"^Requests per second:\s+([\d.]+)", re.MULTILINE)
AB_P99 = re.compile(r"^\s+99%\s+(\d+)", re.MULTILINE)
AB_FAILED = re.compile(r"^Failed requests:\s+(\d+)", re.MULTILINE)


def ab(address: str, host: str, requests: int, concurrency: int) -> tuple[float, float]:
    """Requests/s and p99 (ms) of ``ab -k``; no failed or non-2xx request allowed."""
    done = subprocess.run(
        ["ab", "-q", "-k", "-n", str(requests), "-c", str(concurrency), "-H", f"Host: {host}",
         f"http://{address}/"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    out = done.stdout
    failed = AB_FAILED.search(out)
    if failed is None or int(failed.group(1)) or "Non-2xx" in out:
        raise RuntimeError(f"ab saw failures:\n{out}")
    rate, p99 = AB_RATE.search(out), AB_P99.search(out)
    assert rate and p99, out
    return float(rate.group(1)), float(p99.group(1))


def throughput(
    router: HAProxyRouter, ups: dict[str, str], rounds: int, requests: int, concurrency: int
) -> dict[str, tuple[float, float]]:
    router.route("load", [ups["load"]])
    host = f"load.{DOMAIN}"
    wait_answering(router.listen, host)
    runs: dict[str, list[tuple[float, float]]] = {"router": [], "direct": []}
    for n in range(rounds):
        order = ["router", "direct"] if n % 2 == 0 else ["direct", "router"]
        for what in order:
            address = router.listen if what == "router" else ups["load"]
            runs[what].append(ab(address, host, requests, concurrency))
    return {
        what: (statistics.median(r for r, _ in found), statistics.median(p for _, p in found))
        for what, found in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="switches per size (9)")
    parser.add_argument("--ab-rounds", type=int, default=3, help="ab rounds per side (3)")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(f"router benchmark, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC')}")
    for kind in ("haproxy",):
        costs: dict[int, float] = {}
        closes = [0]
        for apps in SIZES:
            with tempfile.TemporaryDirectory(prefix="dockyard-bench-router-") as tmp:
                names = ["old", "new", *[f"shared{i}" for i in range(SHARED)]]
                with upstreams(Path(tmp) / "www", names) as ups:
                    router = make_router(Path(tmp))
                    router.start()
                    try:
                        costs[apps] = switch_cost(router, ups, apps, args.rounds, closes)
                    finally:
                        router.stop()
                        stop_router(Path(tmp))  # it outlives its object, on purpose
        for apps, cost in costs.items():
            print(
                f"{kind}: switch cost at {apps:>3} apps: {cost * 1000:7.1f} ms"
                f"  ({cost / costs[SIZES[0]]:.2f}x the cost at {SIZES[0]})"
            )
        print(f"{kind}: client connections closed by the router during switches: {closes[0]}")
        with (
            tempfile.TemporaryDirectory(prefix="dockyard-bench-router-") as tmp,
            upstreams(Path(tmp) / "www", ["load"]) as ups,
        ):
            router = make_router(Path(tmp))
            router.start()
            try:
                found = throughput(router, ups, args.ab_rounds, args.requests, args.concurrency)
            finally:
                router.stop()
                stop_router(Path(tmp))
        (rate, p99), (direct, direct_p99) = found["router"], found["direct"]
        print(
            f"{kind}: throughput {rate:8.0f} req/s p99 {p99:.0f} ms through the router,"
            f" {direct:8.0f} req/s p99 {direct_p99:.0f} ms direct: {rate / direct:.2f}x"
        )


if __name__ == "__main__":
    main()
