"""The release phase of a deploy or rollback: find its commands, run them first.

The commands (``domain.release_phase``) run one at a time, each in a one-off
container of the new release's image with its configuration (never the
registry credentials), before any of the release's containers starts. Their
output streams into the operation's log, secrets masked; the first that
fails or runs past ``--release-timeout`` stops the deploy.

This module is PyYAML's one home: it decodes ``.dockyard.yml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml

from dockyard.domain import records
from dockyard.domain.configuration import MASK, is_secret, process_environment
from dockyard.domain.containers import ContainerSpec
from dockyard.domain.release_phase import (
    MAX_CONFIG_BYTES,
    InvalidReleaseConfig,
    ReleaseCommand,
    ReleaseCommandFailed,
    before_release,
    failed_message,
    release_commands,
)
from dockyard.domain.releases import PROCFILE_RELEASE, Release, procfile_release
from dockyard.services.running import OperationRun

# Each line is a row of the operation's log: a command that prints without
# end must not fill the database.
MAX_LOGGED_LINES = 10_000


def parse_config(path: str, text: str) -> list[ReleaseCommand]:
    """The ``before_release`` commands of a ``.dockyard.yml``/``.aptible.yml``."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise InvalidReleaseConfig(path, f"it is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or "it cannot be read")
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidReleaseConfig(path, f"it is not YAML: {problem}{where}") from None
    return before_release(path, document)


def commands_from(
    config: tuple[str, str] | None, procfile: tuple[str, str] | None
) -> list[ReleaseCommand]:
    """The commands a release's files give: ``(path, text)`` of each, when found."""
    configured = parse_config(*config) if config else []
    release = procfile_release(procfile[1]) if procfile else None
    where = f"{procfile[0]} ({PROCFILE_RELEASE}:)" if procfile else ""
    return release_commands(configured, release, where)


def describe(commands: Sequence[ReleaseCommand]) -> str:
    return ", ".join(f"{c.command!r} ({c.origin})" for c in commands)


def run_release_phase(
    run: OperationRun,
    app: records.App,
    release: Release,
    commands: Sequence[ReleaseCommand],
    values: Mapping[str, str],
) -> None:
    """Run each command to its end; raise ReleaseCommandFailed at the first that fails."""
    if not commands:
        return
    scheduler = run.platform.scheduler()
    timeout = run.platform.release_timeout
    secrets = [v for k, v in values.items() if is_secret(k) and v]

    for number, command in enumerate(commands, start=1):
        logged = 0

        def line(text: str) -> None:
            nonlocal logged
            logged += 1
            if logged > MAX_LOGGED_LINES:
                if logged == MAX_LOGGED_LINES + 1:
                    run.log(f"  (more than {MAX_LOGGED_LINES} lines: the rest is not logged)")
                return
            for secret in secrets:  # an app may print its own secrets
                text = text.replace(secret, MASK)
            run.log(f"  | {text}")

        run.log(
            f"Release phase {number}/{len(commands)}: running {command.command!r} "
            f"(from {command.origin}) in a one-off container of release {release.number}"
        )
        spec = ContainerSpec(
            app=app.handle,
            release=release.id,
            service=PROCFILE_RELEASE,
            image=release.image,
            command=command.command,
            environment=process_environment(values),
        )
        status = scheduler.run_release_command(
            spec,
            operation=run.operation.id,
            timeout=timeout,
            on_line=line,
            checkpoint=run.check_cancelled,
        )
        if status != 0:
            raise ReleaseCommandFailed(failed_message(command, status, timeout))
        run.log(f"Release command {number} finished (exit status 0)")
