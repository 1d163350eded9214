"""One-off commands (``dockyard run``): what one starts, and how it ended.

A run is a container of the current release's image with the app's
configuration, started for one command and removed when it ends. It is
recorded as an operation of type ``run`` (who ran what, and its exit
status; never its output), outside the app's queue of operations.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from dockyard.domain.errors import Conflict, InvalidInput

# Stream numbers of a run's output, as the engine numbers them.
STDOUT = 1
STDERR = 2

# The shell's conventions, which the CLI's exit status follows.
COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126

MAX_ARGUMENTS = 1000
MAX_COMMAND_BYTES = 64 * 1024

# How docker-init (tini) says that it could not run the command.
_INIT_FAILED = re.compile(
    rb"\[FATAL tini \(\d+\)\] exec (?P<command>.*?) failed: (?P<why>[^\r\n]*)"
)


@dataclass(frozen=True)
class OneOffSpec:
    """A one-off container: one command of an app's release."""

    app: str
    operation: int  # the ``run`` operation that records it
    image: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    tty: bool = False
    stdin: bool = False  # whether input is streamed to it
    rows: int = 0
    columns: int = 0

    def __repr__(self) -> str:  # the environment holds secrets
        return f"OneOffSpec(app={self.app!r}, operation={self.operation}, command={self.command!r})"


class OneOff(Protocol):
    """A started one-off container, as the runtime hands it to the run."""

    id: str

    def output(self) -> Iterator[tuple[int, bytes]]:
        """What it writes, as it comes: ``(STDOUT or STDERR, data)``; ends when it exits."""
        ...

    def write(self, data: bytes) -> None: ...

    def close_input(self) -> None:
        """End its stdin (EOF)."""
        ...

    def resize(self, rows: int, columns: int) -> None: ...

    def signal(self, name: str) -> None:
        """Send a signal (``SIGINT``, ``SIGKILL``...) to its command."""
        ...

    def wait(self) -> int:
        """Its exit status, once it has exited."""
        ...

    def remove(self) -> None:
        """Remove it, stopping it first if it still runs; idempotent."""
        ...


class NotDeployedForRun(InvalidInput):
    def __init__(self, handle: str) -> None:
        super().__init__(
            f"app {handle!r} has never been deployed: deploy it before running commands in it"
        )


class InvalidCommand(InvalidInput):
    pass


class RunImageGone(Conflict):
    def __init__(self, number: int) -> None:
        super().__init__(
            f"release {number}'s image was built here and is gone from the engine: "
            "deploy again to run commands in it"
        )


def check_command(command: Sequence[str]) -> tuple[str, ...]:
    """The command as given, or why it cannot be run."""
    if not command or not command[0]:
        raise InvalidCommand("no command given: dockyard run --app APP -- COMMAND [ARGS...]")
    if len(command) > MAX_ARGUMENTS:
        raise InvalidCommand(f"the command has {len(command)} arguments; the limit is 1000")
    if any("\x00" in part for part in command):
        raise InvalidCommand("the command contains a NUL character")
    if sum(len(part.encode("utf-8")) for part in command) > MAX_COMMAND_BYTES:
        raise InvalidCommand("the command is longer than the limit of 64 KiB")
    return tuple(command)


def describe_command(command: Sequence[str]) -> str:
    """The command as a shell would read it back."""
    return shlex.join(command)


def init_failure(output: bytes) -> str | None:
    """What the container's init said when it could not run the command, told for a user."""
    found = _INIT_FAILED.search(output)
    if found is None:
        return None
    command = found["command"].decode("utf-8", "replace")
    why = found["why"].decode("utf-8", "replace")
    if "No such file" in why:
        return f"command not found in the image: {command!r} (not in its PATH)"
    if "Permission denied" in why:
        return f"the command {command!r} is not executable in the image"
    return f"could not run {command!r}: {why}"


def ended(status: int) -> str:
    """The message a run's operation ends with."""
    return f"exited with status {status}"
