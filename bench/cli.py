"""CLI start-up benchmark (issue 13, point 12): how long `dockyard` takes to answer.

A real ``dockyard server`` (SQLite, no runtime needed for these commands) in a
temporary data directory on free 127.0.0.1 ports; each command is run REPEAT
times as a user runs it (a new process each time) and the median printed,
with ``python -c pass`` (the interpreter alone) measured in the same run as
the baseline. Aims: ``dockyard --version`` <= 0.08 s, ``dockyard apps``
<= 0.15 s.

Run: ``.venv/bin/python bench/cli.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy import command_seconds as median_seconds
from harness import launch_server, stop_router

DOCKYARD = str(Path(sys.executable).with_name("dockyard"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-cli-") as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [DOCKYARD, "server", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                   "--router-listen", f"127.0.0.1:{free_port()}", "--workers", "0"]  # fmt: skip
        server = launch_server(command, {**os.environ}, Path(tmp) / "server.log", url, data)
        try:
            token = (data / "admin-token").read_text().strip()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
                   "DOCKYARD_URL": url, "DOCKYARD_TOKEN": token, "NO_COLOR": "1"}  # fmt: skip
            for handle in ("web", "api", "worker"):
                subprocess.run([DOCKYARD, "apps:create", handle], env=env, check=True,
                               capture_output=True)  # fmt: skip
            results = {
                "python -c pass": median_seconds([sys.executable, "-c", "pass"], env, args.repeat),
                "dockyard --version": median_seconds([DOCKYARD, "--version"], env, args.repeat),
                "dockyard apps": median_seconds([DOCKYARD, "apps"], env, args.repeat),
                "dockyard --help": median_seconds([DOCKYARD, "--help"], env, args.repeat),
            }
        finally:
            server.terminate()
            server.wait(10)
            stop_router(data)
    base = results["python -c pass"]
    print(f"CLI start-up, median of {args.repeat}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    for name, seconds in results.items():
        print(f"{name:<22} {seconds:6.3f} s  ({seconds / base:5.1f}x python -c pass)")


if __name__ == "__main__":
    main()
