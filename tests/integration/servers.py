"""Real Dockyard server processes for the integration tests."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from dockyard.cli.environment import Environment
from dockyard.cli.main import main
from dockyard.router.haproxy import haproxy_daemon, stop_caddy_left
from dockyard.router.supervision import recorded, stop_recorded

DOCKYARD = str(Path(sys.executable).with_name("dockyard"))


# boto3 never asks an instance metadata service (a link-local address) for
# the server's own AWS credentials, nor any AWS endpoint: tests give moto's.
NO_CLOUD = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def new_postgres_database(admin_url: str) -> str:
    """A fresh, empty database on the test cluster; returns its SQLAlchemy URL."""
    name = "dockyard_" + uuid.uuid4().hex[:12]
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url}/{name}"


@dataclass
class Server:
    data_dir: Path
    database_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    # The runtime's environment (DOCKER_HOST...), kept when a test changes ``env``.
    runtime_env: dict[str, str] = field(default_factory=dict)
    workers: int = 4
    port: int = field(default_factory=free_port)
    router_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server.log"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def start(self, workers: int | None = None) -> Server:
        command = [DOCKYARD, "server", "--data-dir", str(self.data_dir)]
        command += ["--listen", f"127.0.0.1:{self.port}"]
        command += ["--workers", str(self.workers if workers is None else workers)]
        command += ["--router-listen", f"127.0.0.1:{self.router_port}"]
        if self.database_url:
            command += ["--database-url", self.database_url]
        command += self.extra_args
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **NO_CLOUD, **self.runtime_env, **self.env},
            )
        self.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not answer /healthz within 30 s")

    def stop(self, *, router: bool = True) -> None:
        """Stop the server, and (unless told not to) the router it leaves serving."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if router:
            self.stop_router()

    def kill(self) -> None:
        """SIGKILL the server; its router keeps serving."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def router_pid(self) -> int | None:
        """The router's pid, from its pidfile, if it runs."""
        return recorded(haproxy_daemon(self.data_dir))

    def stop_router(self) -> None:
        """The router outlives its server on purpose; tests must not leak it."""
        stop_recorded(haproxy_daemon(self.data_dir), timeout=5)
        stop_caddy_left(self.data_dir)  # the tests of an upgrade make one

    def get(self, app: str, path: str = "/", timeout: float = 30) -> httpx.Response:
        """A request to an app through the router, as a browser would send it."""
        return httpx.get(
            f"http://127.0.0.1:{self.router_port}{path}",
            headers={"Host": f"{app}.dockyard.localhost"},
            timeout=timeout,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def environment(self, token: str | None = None, **extra: str) -> dict[str, str]:
        variables = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.data_dir.parent),
            "DOCKYARD_CONFIG_DIR": str(self.data_dir.parent / "cli-config"),
            "DOCKYARD_URL": self.url,
            "DOCKYARD_TOKEN": self.token if token is None else token,
        }
        variables.update(extra)
        return variables

    def cli(self, *args: str, token: str | None = None, **extra: str) -> Result:
        """Run a CLI command in-process, as a user would from a shell."""
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, variables=self.environment(token, **extra))
        code = main(list(args), env)
        return Result(int(code), out.getvalue(), err.getvalue())

    def run(
        self, *args: str, token: str | None = None, cwd: Path | None = None, **extra: str
    ) -> Result:
        """Run the real ``dockyard`` executable in a subprocess (in ``cwd``, if given)."""
        done = subprocess.run(
            [DOCKYARD, *args],
            env=self.environment(token, **extra),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def installation(self) -> str | None:
        """The installation id the server stored, which labels its containers."""
        query = "SELECT value FROM settings WHERE key = 'installation_id'"
        try:
            if self.database_url is None:
                with contextlib.closing(sqlite3.connect(self.data_dir / "dockyard.db")) as db:
                    row = db.execute(query).fetchone()
            else:
                plain = self.database_url.replace("postgresql+psycopg://", "postgresql://")
                with psycopg.connect(plain) as conn:
                    row = conn.execute(query).fetchone()
        except Exception:
            return None
        return str(row[0]) if row else None

    def database_bytes(self) -> bytes:
        """Everything the database holds, as raw bytes, to search for leaks."""
        if self.database_url is None:
            return b"".join(p.read_bytes() for p in self.data_dir.glob("dockyard.db*"))
        plain = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        chunks = []
        with psycopg.connect(plain) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
            for (table,) in tables:
                with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                    for block in copy:
                        chunks.append(bytes(block))
        return b"".join(chunks)
