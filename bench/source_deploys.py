"""Deploys through each registry credential source kind against a static source (issue 10).

Aim: a cached source adds ≤ 10 ms to a deploy, an uncached ECR fetch (moto) ≤ 50 ms.

One real ``dockyard server`` (SQLite, free 127.0.0.1 ports) on the test engine, one
``tiny`` image (see bench/deploy.py) pushed to the test registry, and one app per kind,
each with an app source for the registry's host:

- ``static``: ``registries:add HOST --username U --password-stdin`` (the baseline);
- ``given``: no source, the credentials given with each deploy (``--private-registry-*``);
- ``helper cached``: ``--credential-helper NAME`` (answers kept 300 s): every measured
  deploy uses the answer kept from the one before;
- ``helper uncached``: the same helper with ``--cache-seconds 0``: every deploy runs
  ``docker-credential-NAME get`` (a ``/bin/sh`` script that prints the JSON answer);
- ``ecr cached``: ``--aws-ecr --aws-endpoint-url`` a ``moto_server`` whose tokens expire
  12 h ahead, as real ECR's do: kept for half of that, so deploys use the cached token;
- ``ecr uncached``: ``--aws-ecr --aws-endpoint-url`` a stock ``moto_server``. Its tokens
  carry ``expiresAt`` 2015-01-01, so Dockyard uses each once and keeps none: every deploy
  calls GetAuthorizationToken (a new boto3 session and client, one HTTP request to moto).
  That is the uncached fetch; ``registries:refresh`` would not do, as it keeps what it
  fetches for the next deploy.

The registry's htpasswd gets the user ``AWS`` with moto's password (as the integration
tests do); it is removed at the end only if this run added it.

Each kind's app is deployed once (not measured), which also puts the image on the engine;
then every round deploys the same image to every app, the order of the kinds rotating
each round, so drift and neighbours' load touch all kinds alike. Measured per deploy: the
CLI's run (start to exit), and the resolver step from the operation's timestamps: from
the worker claiming the operation (``started_at``) to its first log line, ``Resolving IMG
(with credentials ... from <source>)``, which is written once the credentials are in
hand: the store look-ups and the fetch (or the cache). Then, as the fetch alone from a
client's view, the request ``registries:test HOST --app A`` sends (``POST
/registries/HOST/test``: a fetch bypassing the cache, then one registry request through
the engine), timed over HTTP without the CLI's start-up, interleaved the same way.

Run: ``.venv/bin/python bench/deploy.py --sources [--rounds N]`` (or
``.venv/bin/python bench/source_deploys.py [--rounds N]``), with the services from
``scripts/services.sh`` (run when ``DOCKER_HOST`` is unset). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import docker
import httpx
from docker.errors import NotFound

from deploy import (
    DOCKYARD,
    LOCALHOST,
    Bench,
    ImageFactory,
    Server,
    Services,
    free_port,
    git_revision,
    load_average,
    log,
    machine,
    operation_steps,
    parse_time,
    services,
)

DEFAULT_ROUNDS = 7
MAX_EXTRA_ROUNDS = 3  # to replace deploys someone else's clean-up disturbed
REGION = "us-east-1"
MOTO = str(Path(sys.executable).with_name("moto_server"))
# A moto_server whose ECR tokens expire 12 h ahead, as real ECR's do (stock moto: 2015).
MOTO_WITH_EXPIRY = """\
import sys
from datetime import datetime, timedelta, timezone

from moto.ecr.responses import ECRResponse
from moto.server import main

stock = ECRResponse.get_authorization_token


def get_authorization_token(self):
    answer = stock(self)
    for data in answer.result["authorizationData"]:
        data["expiresAt"] = datetime.now(timezone.utc) + timedelta(hours=12)
    return answer


ECRResponse.get_authorization_token = get_authorization_token
sys.exit(main(sys.argv[1:]))
"""
KINDS = ["static", "given", "helper cached", "helper uncached", "ecr cached", "ecr uncached"]
# What the first log line names as the credentials' origin, per kind.
ORIGIN = {
    "static": "from static source (app)",
    "given": "the credentials given for",
    "helper cached": "from credential-helper source (app)",
    "helper uncached": "from credential-helper source (app)",
    "ecr cached": "from aws-ecr source (app)",
    "ecr uncached": "from aws-ecr source (app)",
}
RESOLVER_STEP = "operation set-up (to its first log line)"


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def moto_server(command: list[str], env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [*command, "-H", LOCALHOST, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://{LOCALHOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1, trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto_server ({command[-1]}) did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def ecr_password(endpoint: str) -> tuple[str, Any]:
    client = boto3.client(
        "ecr",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    data = client.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if user != "AWS":
        raise RuntimeError(f"moto's ECR token is for {user!r}, not AWS")
    return password, data["expiresAt"]


class Htpasswd:
    """The registry's user ``AWS`` with moto's password; removed at the end if we added it."""

    def __init__(self, path: str, password: str) -> None:
        self.path, self.password = path, password
        self.there_before = self.has()

    def has(self) -> bool:
        done = subprocess.run(
            ["htpasswd", "-vb", self.path, "AWS", self.password], capture_output=True
        )
        return done.returncode == 0

    def ensure(self) -> None:
        """Another session's test clean-up may remove the user: put it back."""
        if self.has():
            return
        subprocess.run(
            ["htpasswd", "-B", "-b", self.path, "AWS", self.password],
            check=True,
            capture_output=True,
        )
        time.sleep(0.5)  # the registry re-reads the file when it changes

    def restore(self) -> None:
        if not self.there_before:
            subprocess.run(["htpasswd", "-D", self.path, "AWS"], capture_output=True)


@dataclass
class Sample:
    total: float
    resolver: float
    steps: dict[str, float]
    disturbed: bool = False


@dataclass
class Results:
    deploys: dict[str, list[Sample]] = field(default_factory=dict)
    tests: dict[str, list[float]] = field(default_factory=dict)


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=10, method="inclusive")[8]


class SourceBench:
    def __init__(self, bench: Bench, svc: Services, image: str, run_id: str) -> None:
        self.bench, self.svc, self.image = bench, svc, image
        self.server = bench.server
        self.apps = {kind: f"src-{kind.replace(' ', '-')}-{run_id}" for kind in KINDS}

    def add_source(self, kind: str, helper: str, moto_cached: str, moto_stock: str) -> None:
        app, host = self.apps[kind], self.svc.registry
        self.server.cli_json("apps:create", app)
        args = ["registries:add", host, "--app", app]
        stdin = ""
        if kind == "static":
            args += ["--username", self.svc.user, "--password-stdin"]
            stdin = self.svc.password + "\n"
        elif kind.startswith("helper"):
            args += ["--credential-helper", helper]
            if kind == "helper uncached":
                args += ["--cache-seconds", "0"]
        elif kind.startswith("ecr"):
            endpoint = moto_cached if kind == "ecr cached" else moto_stock
            args += ["--aws-ecr", "--aws-region", REGION, "--aws-endpoint-url", endpoint]
        else:
            return  # given: no source
        done = subprocess.run(
            [DOCKYARD, *args],
            input=stdin,
            env=self.server.cli_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"registries:add for {kind} failed: {done.stderr.strip()}")
        log(f"{kind}: {done.stdout.strip().splitlines()[-1]}")

    def deploy_args(self, kind: str) -> list[str]:
        args = ["deploy", "--app", self.apps[kind], "--docker-image", self.image]
        if kind == "given":
            args += ["--private-registry-username", self.svc.user]
            args += ["--private-registry-password", self.svc.password]
        return args

    def deploy(self, kind: str, *, first: bool = False) -> Sample:
        bench, app = self.bench, self.apps[kind]
        if not first:
            bench.ensure_running(app)
        began = time.time()
        operation, ended = bench._operation(self.deploy_args(kind))
        lines = self.server.cli_json("operation:logs", str(operation["id"]))
        steps = operation_steps(operation, lines, began, ended)
        line = lines[0]["line"] if lines else ""
        if not line.startswith("Resolving ") or ORIGIN[kind] not in line:
            raise RuntimeError(f"{kind}: unexpected first log line {line!r}")
        if kind == "ecr uncached" and "already expired (used once, not kept)" not in line:
            raise RuntimeError(f"{kind}: the token was not fetched for this deploy: {line!r}")
        text = "\n".join(x["line"] for x in lines)
        resolver = parse_time(lines[0]["at"]) - parse_time(operation["started_at"])
        # A rejected login (the htpasswd changed under us) adds a second fetch and resolve;
        # no old container to stop means someone else's clean-up removed it. Not counted.
        disturbed = " rejected the credentials" in text or not (
            first or any(x["line"].startswith("Stopped ") for x in lines)
        )
        if disturbed:
            log(f"warning: {kind} deploy disturbed (rejected login or no old container)")
        return Sample(ended - began, resolver, steps, disturbed)

    def registries_test(self, kind: str) -> float | None:
        """``POST /registries/HOST/test`` (what ``registries:test`` sends), without the CLI."""
        if kind == "given":
            return None  # no source to test
        url = f"{self.server.url}/registries/{self.svc.registry}/test"
        headers = {"Authorization": f"Bearer {self.server.token}"}
        began = time.perf_counter()
        answer = self.bench.http.post(
            url, json={"app": self.apps[kind], "image": None}, headers=headers, timeout=60
        )
        took = time.perf_counter() - began
        if answer.status_code != 200:  # e.g. the user AWS went from the shared htpasswd
            log(f"warning: registries:test for {kind} failed, not counted: {answer.text[:300]}")
            return None
        return took


def write_helper(directory: Path, svc: Services) -> str:
    name = "bench" + uuid.uuid4().hex[:6]
    answer = json.dumps({"ServerURL": svc.registry, "Username": svc.user, "Secret": svc.password})
    path = directory / f"docker-credential-{name}"
    path.write_text(f"#!/bin/sh\nread host\ncat <<'EOF'\n{answer}\nEOF\n")
    path.chmod(0o700)
    return name


def report(results: Results, command: str, started: datetime, load_before: str) -> str:
    out = [f"### Run of {started:%Y-%m-%d %H:%M} UTC\n"]
    out.append(f"- command: `{command}` (in {Path.cwd()})")
    out.append(f"- machine: {machine()}; load average before {load_before}, after {load_average()}")
    out.append(f"- revision: {git_revision()}")
    clean = {k: [s for s in v if not s.disturbed] for k, v in results.deploys.items()}
    out.append(
        "- undisturbed deploys per kind: "
        + ", ".join(f"{k} {len(v)}" for k, v in clean.items())
        + "; kinds interleaved, order rotating every round; same image, already on the engine"
    )
    out.append("")
    base_total = statistics.median(s.total for s in clean["static"])
    base_resolver = statistics.median(s.resolver for s in clean["static"])
    base_test = statistics.median(results.tests["static"]) if results.tests.get("static") else 0
    out.append(
        "| kind | deploy median ms | p90 ms | Δ vs static ms | ratio | resolver step median ms "
        "| p90 ms | Δ vs static ms | POST …/test median ms | Δ vs static ms |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        samples = clean.get(kind, [])
        if not samples:
            continue
        totals = [s.total * 1000 for s in samples]
        resolvers = [s.resolver * 1000 for s in samples]
        total, resolver = statistics.median(totals), statistics.median(resolvers)
        tests = [t * 1000 for t in results.tests.get(kind, [])]
        test_cells = "- | -"
        if tests:
            test = statistics.median(tests)
            test_cells = f"{test:.0f} | {test - base_test * 1000:+.0f}"
        out.append(
            f"| {kind} | {total:.0f} | {p90(totals):.0f} | {total - base_total * 1000:+.0f} "
            f"| {total / (base_total * 1000):.3f}x | {resolver:.1f} | {p90(resolvers):.1f} "
            f"| {resolver - base_resolver * 1000:+.1f} | {test_cells} |"
        )
    out.append("\n<details><summary>every deploy (ms: CLI run / resolver step)</summary>\n")
    for kind in KINDS:
        samples = results.deploys.get(kind, [])
        cells = [
            f"{s.total * 1000:.0f}/{s.resolver * 1000:.1f}" + ("*" if s.disturbed else "")
            for s in samples
        ]
        out.append(f"- {kind}: " + " ".join(cells))
        if results.tests.get(kind):
            out.append(
                f"- {kind} POST /registries/HOST/test: "
                + " ".join(f"{t * 1000:.0f}" for t in results.tests[kind])
            )
    out.append("\n</details>")
    return "\n".join(out)


def main(rounds: int = DEFAULT_ROUNDS) -> int:
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(sys.orig_argv)
    started = datetime.now(UTC)
    load_before = load_average()
    svc = services()
    htpasswd_path = os.environ.get("DOCKYARD_TEST_REGISTRY_HTPASSWD")
    if not htpasswd_path:
        raise RuntimeError("DOCKYARD_TEST_REGISTRY_HTPASSWD is unset (see scripts/services.sh)")
    run_id = uuid.uuid4().hex[:6]
    client = docker.DockerClient(base_url=svc.docker_host, version="auto")
    client.login(registry=svc.registry, **svc.auth)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-sources-") as tmp:
        work = Path(tmp)
        helpers = work / "helpers"
        helpers.mkdir(mode=0o700)
        aws = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": str(work / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        moto_env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        moto_env.update(aws)
        factory = ImageFactory(client, svc, run_id, work)
        server = Server(
            work / "data",
            extra_env={"PATH": f"{helpers}:{os.environ.get('PATH', os.defpath)}", **aws},
        )
        htpasswd: Htpasswd | None = None
        bench: Bench | None = None
        source_bench: SourceBench | None = None
        try:
            with (
                moto_server([MOTO], moto_env) as moto_stock,
                moto_server([sys.executable, "-c", MOTO_WITH_EXPIRY], moto_env) as moto_cached,
            ):
                password, expires = ecr_password(moto_stock)
                cached_password, cached_expires = ecr_password(moto_cached)
                if password != cached_password:
                    raise RuntimeError("the two moto servers issue different passwords")
                log(f"moto tokens expire: stock {expires}, patched {cached_expires}")
                htpasswd = Htpasswd(htpasswd_path, password)
                htpasswd.ensure()
                log(f"run {run_id}: building the tiny image, starting a Dockyard server")
                image = factory.build("tiny", "sources", f"{run_id} sources")
                server.start()
                bench = Bench(svc, server, client, run_id)
                helper = write_helper(helpers, svc)
                source_bench = SourceBench(bench, svc, image.ref, run_id)
                for kind in KINDS:
                    source_bench.add_source(kind, helper, moto_cached, moto_stock)
                for kind in KINDS:  # not measured; puts the image on the engine
                    source_bench.deploy(kind, first=True)
                for n in range(rounds + MAX_EXTRA_ROUNDS):
                    if n >= rounds and all(
                        len([s for s in results.deploys.get(k, []) if not s.disturbed]) >= rounds
                        for k in KINDS
                    ):
                        break
                    order = KINDS[n % len(KINDS) :] + KINDS[: n % len(KINDS)]
                    for kind in order:
                        if kind.startswith("ecr"):
                            htpasswd.ensure()  # not timed
                        try:
                            sample = source_bench.deploy(kind)
                        except RuntimeError as failed:
                            if "rejected the credentials" not in str(failed):
                                raise
                            # The user AWS went from the shared htpasswd mid-deploy.
                            log(f"warning: {kind} deploy rejected; not counted")
                            sample = Sample(float("nan"), float("nan"), {}, disturbed=True)
                        results.deploys.setdefault(kind, []).append(sample)
                        time.sleep(0.3)
                    for kind in order:
                        if kind.startswith("ecr"):
                            htpasswd.ensure()
                        took = source_bench.registries_test(kind)
                        if took is not None:
                            results.tests.setdefault(kind, []).append(took)
                    log(
                        f"round {n + 1}: "
                        + ", ".join(
                            f"{k} {results.deploys[k][-1].total * 1000:.0f}/"
                            f"{results.deploys[k][-1].resolver * 1000:.1f} ms"
                            for k in KINDS
                        )
                    )
        except BaseException:
            print(f"server log:\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            log("cleaning up: server, containers, images, htpasswd")
            if bench is not None:
                bench.close()
            server.stop()
            if source_bench is not None:
                for app in source_bench.apps.values():
                    for c in client.containers.list(
                        all=True, filters={"label": f"dockyard.app={app}"}
                    ):
                        with contextlib.suppress(NotFound):
                            c.remove(force=True)
            factory.remove_all()
            if htpasswd is not None:
                htpasswd.restore()
            client.close()
    print(report(results, command, started, load_before))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    sys.exit(main(parser.parse_args().rounds))
