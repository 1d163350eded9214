"""Docker credential helpers: ``docker-credential-NAME get``, the host on stdin.

The protocol Docker's own client speaks: the helper prints
``{"ServerURL": ..., "Username": ..., "Secret": ...}``; a ``<token>`` user
means the secret is an identity token; "credentials not found" means it has
none for the host. Its output is never logged: it holds the secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping

from dockyard.domain.containers import IDENTITY_TOKEN_USER, RegistryCredentials

TIMEOUT_SECONDS = 10.0
NOT_FOUND = "credentials not found"
_MAX_MESSAGE = 300


class HelperFailed(Exception):
    """The helper gave no usable answer; the message is safe to show."""


def program(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The helper's executable on the server's PATH, if there is one."""
    path = (environ if environ is not None else os.environ).get("PATH", os.defpath)
    return shutil.which(f"docker-credential-{name}", path=path)


def parse_answer(host: str, exit_code: int, stdout: str, stderr: str) -> RegistryCredentials | None:
    """Credentials from the helper's answer; None when it has none for ``host``."""
    said = stdout.strip() or stderr.strip()
    if exit_code != 0:
        if NOT_FOUND in said.lower():
            return None
        first = said.splitlines()[0][:_MAX_MESSAGE] if said else "no message"
        raise HelperFailed(f"it exited with status {exit_code}: {first}")
    try:
        answer = json.loads(stdout)
    except ValueError:
        # Never quote it: a half-printed answer may hold the secret.
        raise HelperFailed(
            'it printed no valid JSON (expected {"ServerURL", "Username", "Secret"})'
        ) from None
    if not isinstance(answer, dict):
        raise HelperFailed('its answer is not a JSON object {"ServerURL", "Username", "Secret"}')
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise HelperFailed('its answer lacks the strings "Username" and "Secret"')
    if not secret:
        return None
    # An identity token travels as the password of the user ``<token>``, as
    # the helper named it; the runtime sends it to the engine as one.
    return RegistryCredentials(host, username or IDENTITY_TOKEN_USER, secret)


def get(
    name: str,
    host: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    environ: Mapping[str, str] | None = None,
) -> RegistryCredentials | None:
    """Ask helper ``name`` for ``host``'s credentials."""
    executable = program(name, environ)
    if executable is None:
        raise HelperFailed(
            f"unknown credential helper {name!r}: no docker-credential-{name} on the server's PATH"
        )
    try:
        # A session of its own: a helper that hangs is killed with what it started.
        process = subprocess.Popen(
            [executable, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(environ) if environ is not None else None,
            start_new_session=True,
        )
    except OSError as exc:
        raise HelperFailed(f"docker-credential-{name} could not run: {exc.strerror}") from None
    try:
        stdout, stderr = process.communicate(host, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise HelperFailed(
            f"docker-credential-{name} did not answer within {timeout:g} s"
        ) from None
    return parse_answer(host, process.returncode, stdout, stderr)
