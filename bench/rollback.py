"""Rollback benchmark (issue 12): ``dockyard rollback`` against a deploy of a cached image.

Starts a real ``dockyard server`` (SQLite in a temporary data directory) on
the test Docker engine and deploys two builds of the tiny busybox web app,
``old`` and ``new`` (made here from the test base image, pushed to the test
registry). Then, in alternating rounds, with ``new`` serving:

- ``rollback``: ``dockyard rollback --app A`` (back to ``old``: image and
  configuration), timed from the CLI's start until the router's first 200
  carrying ``old``'s page;
- ``deploy``: ``dockyard deploy --app A --docker-image NEW`` (back to
  ``new``; its image is on the engine: a deploy of a cached image), timed
  the same way until the first 200 carrying ``new``'s page.

Each scenario leaves the other's starting state, so the rounds chain.
Aim: rollback <= a deploy of a cached image.

Run: ``.venv/bin/python bench/rollback.py [--rounds N]``. Only 127.0.0.1 and
the engine's socket are contacted; what this run made is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx

from deploy import DOCKYARD, Server, git_revision, log, machine, median, services
from run import build_and_push


def until_served(
    command: list[str], env: dict[str, str], router: str, host: str, page: str
) -> float:
    """Seconds from starting ``command`` to the router's first 200 with ``page``."""
    began = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with httpx.Client(timeout=2, trust_env=False) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                answer = http.get(router, headers={"Host": host})
                if answer.status_code == 200 and answer.text.strip() == page:
                    elapsed = time.monotonic() - began
                    break
            if time.monotonic() - began > 120:
                process.kill()
                raise RuntimeError(f"{command[1]}: {page} was never served")
            time.sleep(0.005)
    _, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"{command[1]} failed: {err.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    svc = services()
    base = os.environ["DOCKYARD_TEST_BASE_IMAGE"]
    client = docker.DockerClient(base_url=svc.docker_host, version="auto")
    client.login(registry=svc.registry, **svc.auth)  # kept in memory, not in a file
    run_id = uuid.uuid4().hex[:8]
    old, new = (f"{svc.registry}/dockyard-bench/rollback-{n}:{run_id}" for n in ("old", "new"))
    build_and_push(client, base, old, svc.auth, page="old")
    build_and_push(client, base, new, svc.auth, page="new")
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-rollback-bench-"))
    server = Server(workdir / "data")
    rollbacks: list[float] = []
    deploys: list[float] = []
    try:
        server.start()
        env = server.cli_environment()
        app = "rbbench"
        host = f"{app}.dockyard.localhost"
        subprocess.run([DOCKYARD, "apps:create", app], env=env, check=True, capture_output=True)
        creds = ["--private-registry-username", svc.user, "--private-registry-password",
                 svc.password]  # fmt: skip
        for image, page in ((old, "old"), (new, "new")):
            seconds = until_served(
                [DOCKYARD, "deploy", "--app", app, "--docker-image", image, *creds],
                env, server.router_url, host, page,
            )  # fmt: skip
            log(f"first deploy of {page}: {seconds:.2f} s")
        for round_ in range(args.rounds):
            rollbacks.append(
                until_served(
                    [DOCKYARD, "rollback", "--app", app], env, server.router_url, host, "old"
                )
            )
            deploys.append(
                until_served(
                    [DOCKYARD, "deploy", "--app", app, "--docker-image", new],
                    env,
                    server.router_url,
                    host,
                    "new",
                )
            )
            log(f"round {round_ + 1}: rollback {rollbacks[-1]:.3f} s, deploy {deploys[-1]:.3f} s")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for tag in (old, new):
            for container in client.containers.list(all=True):
                if tag in str(container.image.tags):
                    container.remove(force=True)
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(tag, force=True)
        client.close()
    ours, baseline = median(rollbacks), median(deploys)
    print(f"## Rollback (issue 12)\n\n{machine()}, revision {git_revision()}, "
          f"{args.rounds} alternating rounds, medians, each from the CLI's start to the "
          "router's first 200 of the release it brings:\n")  # fmt: skip
    print("| | seconds |\n| --- | --- |")
    print(f"| `dockyard rollback --app A` (image and configuration) | {ours:.3f} |")
    print(f"| `dockyard deploy --app A --docker-image IMG` (cached image) | {baseline:.3f} |")
    print(f"| ratio | {ours / baseline:.2f}x (aim: at most 1x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
