"""The release phase: commands that run once per deploy, before any new container starts.

They come from the ``before_release`` list of ``.dockyard.yml`` (or
Aptible's ``.aptible.yml``) — at the repository's root for a git deploy, at
the image's root for an image deploy — and then from a Procfile's
``release:`` line (Heroku's spelling), which is never a service. Each runs
in a one-off container of the new image with the new configuration; the
first that fails, or outlives the server's ``--release-timeout``, stops the
deploy and the previous release keeps serving. Deploys and rollbacks run
them; configuration changes, restarts and scaling do not.

The YAML is decoded by the caller: this module checks the document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.domain.errors import DockyardError, InvalidInput

CONFIG_FILES = (".dockyard.yml", ".aptible.yml")  # the first one found counts
IMAGE_CONFIG_PATHS = tuple("/" + name for name in CONFIG_FILES)
DEFAULT_RELEASE_TIMEOUT = 1800
# A .dockyard.yml is a few lines; anything much larger is not one.
MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReleaseCommand:
    command: str  # run with /bin/sh -c
    origin: str  # where it was found: ".dockyard.yml", "/.aptible.yml", "Procfile"...


class InvalidReleaseConfig(InvalidInput):
    """A ``.dockyard.yml``/``.aptible.yml`` that cannot be used: nothing is changed."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} is not valid: {problem}; fix it and deploy again")


class ReleaseCommandFailed(DockyardError):
    """A release command exited non-zero or ran too long: the deploy stops there."""

    kind = "release_command_failed"


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    return f"{type(value).__name__} {value!r}"[:80]


def before_release(path: str, document: object) -> list[ReleaseCommand]:
    """The ``before_release`` commands of a decoded ``.dockyard.yml`` document.

    An empty file, or one without ``before_release``, has none. Other keys
    are left alone (Aptible's file has others).
    """
    if document is None:
        return []
    if not isinstance(document, dict):
        raise InvalidReleaseConfig(
            path,
            f"it must be a mapping such as 'before_release: [COMMAND, ...]', not {_kind(document)}",
        )
    if "before_release" not in document or document["before_release"] is None:
        return []
    commands = document["before_release"]
    if not isinstance(commands, list):
        raise InvalidReleaseConfig(
            path, f"before_release must be a list of commands, not {_kind(commands)}"
        )
    found = []
    for number, command in enumerate(commands, start=1):
        if isinstance(command, dict):
            raise InvalidReleaseConfig(
                path,
                f"before_release item {number} is a mapping, not a command "
                "(a command with ': ' in it must be quoted)",
            )
        if not isinstance(command, str) or not command.strip():
            raise InvalidReleaseConfig(
                path, f"before_release item {number} is {_kind(command)}, not a command"
            )
        found.append(ReleaseCommand(command.strip(), path))
    return found


def release_commands(
    configured: Sequence[ReleaseCommand], procfile_release: str | None, procfile_path: str
) -> list[ReleaseCommand]:
    """What the release phase runs, in order: ``before_release``, then the Procfile's line."""
    commands = list(configured)
    if procfile_release:
        commands.append(ReleaseCommand(procfile_release, procfile_path))
    return commands


def failed_message(command: ReleaseCommand, status: int | None, timeout: float) -> str:
    """Why the deploy stopped, for the operation's result and the CLI."""
    shown = command.command if len(command.command) <= 80 else command.command[:77] + "..."
    if status is None:
        why = (
            f"did not finish within {timeout:.0f} s (the server's --release-timeout) and was killed"
        )
    else:
        why = f"exited with status {status}"
    return (
        f"release command {shown!r} (from {command.origin}) {why}: no new container was "
        "started and the previous release keeps serving"
    )
