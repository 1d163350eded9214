"""Git deploy benchmark (issue 4): ``git push`` of a one-line change to a warm app.

Measures, in alternating rounds (median of at least 5 each), a push of a
one-line change to a warm app until the router serves the new page, against
the raw baseline for the same commit: ``git archive | docker build`` +
``docker run`` (host networking, ``PORT``) + first 200 on the port. Both
sides build FROM the private busybox base image in the test registry, with
a warm layer cache.

Run: ``.venv/bin/python bench/git_deploy.py`` (part of ``make bench``). Only
127.0.0.1 is contacted; the server, the containers and images it made are
removed at the end.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from deploy import (
    LOCALHOST,
    Server,
    Watcher,
    body_is,
    clean_environment,
    free_port,
    log,
    median,
    services,
    wait_for,
)

ROUNDS = 5
DOCKERFILE = """\
FROM {base}
RUN mkdir -p /www
COPY index.html /www/index.html
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
"""


def git(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.email=b@example.com", "-c", "user.name=Bench", *args],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env=clean_environment(HOME=str(work)),
    )


def commit(work: Path, content: str) -> None:
    (work / "index.html").write_text(content + "\n")
    git(work, "commit", "-q", "-am", content)


def push_round(server: Server, work: Path, app: str, content: str) -> tuple[float, float]:
    commit(work, content)
    url = server.router_url + "/"
    with Watcher(url, body_is(content), server.app_headers(app)) as watcher:
        began = time.time()
        git(work, "push", "-q", "dockyard", "main")
        done = time.time() - began
    if watcher.seen is None:
        raise RuntimeError(f"{content} was never served")
    return watcher.seen - began, done


def baseline_round(work: Path, docker_env: dict[str, str], content: str) -> tuple[float, float]:
    commit(work, content)
    tag = f"bench-git-baseline:{uuid.uuid4().hex[:8]}"
    port = free_port()
    began = time.time()
    archive = subprocess.run(
        ["git", "archive", "HEAD"], cwd=work, capture_output=True, check=True
    ).stdout
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "--network", "host", "-"],
        input=archive,
        capture_output=True,
        check=True,
        env=docker_env,
    )
    container = subprocess.run(
        ["docker", "run", "-d", "--init", "--network", "host", "-e", f"PORT={port}", tag],
        capture_output=True,
        text=True,
        check=True,
        env=docker_env,
    ).stdout.strip()
    with httpx.Client(timeout=2, trust_env=False) as http:
        seen = wait_for(http, f"http://{LOCALHOST}:{port}/", body_is(content))
    elapsed = time.time() - began
    subprocess.run(["docker", "rm", "-f", container], capture_output=True, env=docker_env)
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, env=docker_env)
    if seen is None:
        raise RuntimeError("the baseline container never served")
    return seen - began, elapsed


def main() -> int:
    svc = services()
    base = f"{svc.registry}/dockyard-test/busybox:latest"
    with tempfile.TemporaryDirectory(prefix="dockyard-git-bench-") as tmp:
        root = Path(tmp)
        docker_config = root / "docker-config"
        docker_config.mkdir()
        docker_env = clean_environment(
            DOCKER_HOST=svc.docker_host, DOCKER_CONFIG=str(docker_config)
        )
        subprocess.run(
            ["docker", "login", "-u", svc.user, "--password-stdin", svc.registry],
            input=svc.password,
            text=True,
            capture_output=True,
            check=True,
            env=docker_env,
        )
        server = Server(root / "data")
        server.start()
        try:
            app = "gitbench"
            server.cli("apps:create", app)
            creds = [
                f"DOCKYARD_PRIVATE_REGISTRY_USERNAME={svc.user}",
                f"DOCKYARD_PRIVATE_REGISTRY_PASSWORD={svc.password}",
            ]
            server.cli("config:set", "--app", app, *creds)
            works = {}
            for side in ("dockyard", "baseline"):
                work = root / side
                work.mkdir()
                git(work, "init", "-q", "-b", "main")
                (work / "Dockerfile").write_text(DOCKERFILE.format(base=base))
                (work / "index.html").write_text("warm-up\n")
                git(work, "add", "-A")
                git(work, "commit", "-q", "-m", "first")
                works[side] = work
            remote = f"http://bench:{server.token}@{LOCALHOST}:{server.port}/git/{app}.git"
            git(works["dockyard"], "remote", "add", "dockyard", remote)
            log("warming up both sides")
            git(works["dockyard"], "push", "-q", "dockyard", "main")
            baseline_round(works["baseline"], docker_env, "warm-up-2")

            results: dict[str, list[tuple[float, float]]] = {"dockyard": [], "baseline": []}
            for n in range(ROUNDS):
                order = ("dockyard", "baseline") if n % 2 == 0 else ("baseline", "dockyard")
                for side in order:
                    content = f"{side}-round-{n}-{uuid.uuid4().hex[:6]}"
                    if side == "dockyard":
                        outcome = push_round(server, works[side], app, content)
                    else:
                        outcome = baseline_round(works[side], docker_env, content)
                    results[side].append(outcome)
                    first, done = outcome
                    log(f"round {n + 1} {side}: first 200 {first:.2f} s, done {done:.2f} s")
        finally:
            server.stop()
            leftovers = subprocess.run(
                ["docker", "ps", "-aq", "--filter", "label=dockyard.app=gitbench"],
                capture_output=True,
                text=True,
                env=docker_env,
            ).stdout.split()
            if leftovers:
                subprocess.run(
                    ["docker", "rm", "-f", *leftovers], capture_output=True, env=docker_env
                )
    d_first = median([r[0] for r in results["dockyard"]])
    d_done = median([r[1] for r in results["dockyard"]])
    b_first = median([r[0] for r in results["baseline"]])
    print(f"Command: .venv/bin/python bench/git_deploy.py ({ROUNDS} rounds, medians)")
    print()
    print("| scenario | Dockyard s | baseline s | ratio | overhead s |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| push one-line change -> new page served | {d_first:.2f} | {b_first:.2f} "
        f"| {d_first / b_first:.2f}x | {d_first - b_first:+.2f} |"
    )
    print(f"| push returns (old container drained and stopped) | {d_done:.2f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
