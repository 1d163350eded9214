"""What the CLI works out for the user: the app from the git remote, close names."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from urllib.parse import urlsplit

from dockyard.cli.environment import normalized_url


def apps_of_remotes(remotes: Iterable[str], server_url: str) -> list[str]:
    """The apps whose git remotes on this server are among ``remotes`` (URLs)."""
    server = urlsplit(normalized_url(server_url))
    found = []
    for remote in remotes:
        parts = urlsplit(remote)
        # Credentials in the URL (http://user:token@host/...) are not part of where it points.
        if (parts.scheme, parts.hostname, parts.port) != (
            server.scheme,
            server.hostname,
            server.port,
        ):
            continue
        prefix = server.path.rstrip("/") + "/git/"
        path = parts.path
        if path.startswith(prefix) and path.endswith(".git"):
            handle = path[len(prefix) : -len(".git")]
            if handle and "/" not in handle and handle not in found:
                found.append(handle)
    return found


def git_remote_urls() -> list[str]:
    """The fetch URLs of the current directory's git remotes; none outside a repository."""
    try:
        done = subprocess.run(
            ["git", "remote", "-v"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.split()[1] for line in done.stdout.splitlines() if len(line.split()) >= 2]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'web'?`` when one known name is close to ``name``, else ``""``."""
    import difflib  # only when a name was not found

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
