"""A developer's working copy: commit a Dockerfile app and push it with the real git."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

WEB_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /www/cgi-bin && echo "{content}" > /www/index.html && \\
    printf '#!/bin/sh\\necho "Content-Type: text/plain"\\necho\\nenv\\n' > /www/cgi-bin/env && \\
    chmod +x /www/cgi-bin/env
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
"""


@dataclass
class Push:
    code: int
    output: str


class WorkingCopy:
    def __init__(self, path: Path, remote: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("remote", "add", "dockyard", remote)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "git",
                "-c",
                "user.email=dev@example.com",
                "-c",
                "user.name=Dev",
                *args,
            ],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=300,
            check=check,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.path), "GIT_TERMINAL_PROMPT": "0"},
        )

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            (self.path / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def remove(self, name: str) -> None:
        self.git("rm", "-q", name)

    def push(self, *args: str) -> Push:
        done = self.git("push", "dockyard", *args, check=False)
        return Push(done.returncode, done.stdout + done.stderr)

    def remote_head(self, branch: str) -> str | None:
        out = self.git("ls-remote", "dockyard", f"refs/heads/{branch}", check=False).stdout
        return out.split()[0] if out.strip() else None
