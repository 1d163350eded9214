"""Bare repositories in the data directory: create, resolve, archive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOOK = """#!/bin/sh
# Installed by Dockyard: a push to main or master deploys.
exec {python} -m dockyard.git.hook "$@"
"""


class GitError(Exception):
    pass


def _git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise GitError(done.stderr.decode("utf-8", "replace").strip())
    return done.stdout


class Repositories:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, handle: str) -> Path:
        return self.root / f"{handle}.git"

    def ensure(self, handle: str) -> Path:
        """The app's bare repository, made on first use, with the push hook."""
        path = self.path(handle)
        if not (path / "HEAD").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            _git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
            _git("config", "http.receivepack", "true", cwd=path)
            _git("config", "receive.denyDeletes", "false", cwd=path)
        hook = path / "hooks" / "pre-receive"
        text = HOOK.format(python=sys.executable)
        if not hook.exists() or hook.read_text() != text:
            hook.write_text(text)
            hook.chmod(0o700)
        return path

    def remove(self, handle: str) -> None:
        path = self.path(handle)
        if path.exists():
            subprocess.run(["rm", "-rf", "--", str(path)], check=True)

    def resolve(self, handle: str, commitish: str) -> str | None:
        """The commit a branch, tag or commit names, or None."""
        path = self.path(handle)
        if not path.exists():
            return None
        try:
            out = _git(
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                f"{commitish}^{{commit}}",
                cwd=path,
            )
        except GitError:
            return None
        return out.decode().strip() or None

    def archive(self, handle: str, commit: str, destination: Path) -> None:
        """Write the commit's tree as a tar file: the build context."""
        _git("archive", "--format=tar", f"--output={destination}", commit, cwd=self.path(handle))
