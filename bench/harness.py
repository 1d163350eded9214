"""What the benchmarks share: starting a real ``dockyard server`` and waiting for it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent


def ensure_environment(script: str, wanted: tuple[str, ...]) -> None:
    """Run ``scripts/<script>`` unless ``wanted`` are set; keep the KEY=VALUE lines it prints."""
    if all(os.environ.get(name) for name in wanted):
        return
    print(f"running scripts/{script}", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        stdout=subprocess.PIPE,
        text=True,
        timeout=300,
        check=True,
    )
    for line in done.stdout.splitlines():
        key, equals, value = line.partition("=")
        if equals and key.isidentifier():
            os.environ[key] = value.strip()


def die_with_parent() -> None:
    """In a child process: get SIGTERM if the benchmark dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def log_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-4000:]
    return ""


def launch_server(
    command: list[str], env: dict[str, str], log_path: Path, url: str, data_dir: Path
) -> subprocess.Popen[bytes]:
    """Start the server; return once /healthz answers and the admin token is written."""
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=die_with_parent,
        )
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=1, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                healthy = http.get(url + "/healthz").status_code == 200
                if healthy and (data_dir / "admin-token").exists():
                    return process
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the server did not answer /healthz within 60 s:\n{log_tail(log_path)}")


def stop_router(data_dir: Path) -> None:
    """Stop the router (HAProxy) the server leaves serving on purpose, by its pidfile."""
    try:
        pid = int((data_dir / "router" / "haproxy.pid").read_text())
        if str(data_dir).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # gone, and the pid reused
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}/cmdline").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
