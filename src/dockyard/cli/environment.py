"""Where a command reads and writes: streams, variables, the config directory."""

from __future__ import annotations

import enum
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    UNAUTHORIZED = 3
    NOT_FOUND = 4
    CONFLICT = 5
    INVALID = 6
    OPERATION_FAILED = 7
    UNREACHABLE = 8


@dataclass
class Environment:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    variables: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def color(self) -> bool:
        return self.stdout.isatty() and "NO_COLOR" not in self.variables

    @property
    def config_dir(self) -> Path:
        if "DOCKYARD_CONFIG_DIR" in self.variables:
            return Path(self.variables["DOCKYARD_CONFIG_DIR"])
        base = self.variables.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "dockyard"

    def saved_login(self) -> dict[str, str]:
        path = self.config_dir / "config.json"
        if not path.exists():
            return {}
        data = json.loads(path.read_text())
        return {k: str(v) for k, v in data.items()}

    def save_login(self, url: str, token: str) -> Path:
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.config_dir / "config.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"url": url, "token": token}, handle)
        os.chmod(path, 0o600)
        return path

    def api_url(self) -> str:
        return normalized_url(
            self.variables.get("DOCKYARD_URL")
            or self.saved_login().get("url")
            or "http://127.0.0.1:8800"
        )

    def api_token(self) -> str | None:
        return self.variables.get("DOCKYARD_TOKEN") or self.saved_login().get("token")


def normalized_url(url: str) -> str:
    """``127.0.0.1:8800`` means ``http://127.0.0.1:8800``; no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")
