"""One-off run benchmark (issue 12): ``dockyard run --app A -- true`` against ``docker run --rm``.

Starts a real ``dockyard server`` (SQLite in a temporary data directory) on
the test Docker engine, deploys the tiny busybox web app (built here from
the test base image and pushed to the test registry), then alternates, in
rounds whose order rotates:

- ``dockyard``: ``dockyard run --app A -- true`` from the start of the CLI
  process until it exits (stdin not a terminal: /dev/null, streamed);
- ``raw``: ``docker run --rm --init --network <the app's network> IMAGE
  true`` with the ``docker`` CLI: what a user with the engine's socket would
  type, on the same network and with the same init as Dockyard's one-off.

The image is on the engine for both (the deploy pulled it). Each Dockyard
run's operation (``operation:show``) splits its time into the server's part
(the operation's created_at to finished_at: container create, attach,
start, wait, remove, recording) and the rest (CLI start-up, WebSocket
connection, checks before the run is recorded). ``dockyard run --help``
measures the CLI's start-up alone (every command module loaded, no request).

Run: ``.venv/bin/python bench/run.py [--rounds N]``. Only 127.0.0.1 and the
engine's socket are contacted. At the end the server is stopped and what
this run made is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import docker

from deploy import DOCKYARD, Server, clean_environment, git_revision, log, machine, median, services

WEB = (
    "FROM {base}\n"
    "RUN mkdir -p /www && echo run-bench > /www/index.html\n"
    'CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
)


def build_and_push(
    client: docker.DockerClient, base: str, tag: str, auth: dict[str, str], page: str = "run-bench"
) -> None:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        data = WEB.format(base=base).replace("run-bench", page).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    repository, _, version = tag.rpartition(":")
    for line in client.images.push(
        repository, tag=version, auth_config=auth, stream=True, decode=True
    ):
        if "error" in line:
            raise RuntimeError(f"pushing {tag}: {line['error']}")


def timed(command: list[str], env: dict[str, str]) -> float:
    began = time.monotonic()
    done = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}): {done.stderr[-500:]}")
    return elapsed


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    svc = services()
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise RuntimeError("the docker CLI is needed for the raw baseline")
    base = os.environ["DOCKYARD_TEST_BASE_IMAGE"]
    client = docker.DockerClient(base_url=svc.docker_host, version="auto")
    client.login(registry=svc.registry, **svc.auth)  # kept in memory, not in a file
    tag = f"{svc.registry}/dockyard-bench/run-web:{uuid.uuid4().hex[:8]}"
    build_and_push(client, base, tag, svc.auth)
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-run-bench-"))
    server = Server(workdir / "data")
    raw_env = clean_environment(
        DOCKER_HOST=svc.docker_host, DOCKER_CONFIG=str(workdir / "docker-config")
    )
    dockyard_s: list[float] = []
    server_s: list[float] = []
    raw_s: list[float] = []
    try:
        server.start()
        env = server.cli_environment()
        app = "runbench"
        subprocess.run([DOCKYARD, "apps:create", app], env=env, check=True, capture_output=True)
        deployed = subprocess.run(
            [
                DOCKYARD,
                "deploy",
                "--app",
                app,
                "--docker-image",
                tag,
                "--private-registry-username",
                svc.user,
                "--private-registry-password",
                svc.password,
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if deployed.returncode != 0:
            raise RuntimeError(f"deploy failed: {deployed.stderr[-1000:]}")
        network = next(n.name for n in client.networks.list() if n.name.endswith(f"-{app}"))
        startup = [timed([DOCKYARD, "run", "--help"], env) for _ in range(5)]
        raw = [docker_cli, "run", "--rm", "--init", "--network", network, tag, "true"]
        ours = [DOCKYARD, "run", "--app", app, "--", "true"]
        for _ in range(2):  # warm both paths, unmeasured
            timed(raw, raw_env)
            timed(ours, env)
        for round_ in range(args.rounds):
            order = ["dockyard", "raw"] if round_ % 2 == 0 else ["raw", "dockyard"]
            for which in order:
                if which == "raw":
                    raw_s.append(timed(raw, raw_env))
                else:
                    dockyard_s.append(timed(ours, env))
                    listed = subprocess.run(
                        [DOCKYARD, "operations", "--app", app, "-o", "json"],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    run = next(o for o in json.loads(listed.stdout) if o["type"] == "run")
                    server_s.append(seconds_between(run["created_at"], run["finished_at"]))
            log(f"round {round_ + 1}: dockyard {dockyard_s[-1]:.3f} s, raw {raw_s[-1]:.3f} s")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        with_image = [c for c in client.containers.list(all=True) if tag in str(c.image.tags)]
        for container in with_image:
            container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True)
        client.close()
    ours_median, raw_median = median(dockyard_s), median(raw_s)
    print(
        f"## One-off runs (issue 12)\n\n{machine()}, revision {git_revision()}, "
        f"{args.rounds} alternating rounds, medians:\n"
    )
    print("| | seconds |\n| --- | --- |")
    print(f"| `dockyard run --app A -- true` (CLI start to exit) | {ours_median:.3f} |")
    print(f"| raw `docker run --rm --init --network N IMAGE true` | {raw_median:.3f} |")
    print(f"| ratio | {ours_median / raw_median:.2f}x |")
    print(f"| overhead | {ours_median - raw_median:+.3f} |")
    print(
        f"| of which the server's part (operation created to finished) | {median(server_s):.3f} |"
    )
    print(f"| `dockyard run --help` (the CLI's start-up alone) | {median(startup):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
