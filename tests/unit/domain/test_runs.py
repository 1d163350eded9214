"""One-off commands: what is refused, and how the init's refusal is told."""

from __future__ import annotations

import pytest

from dockyard.domain.errors import InvalidInput
from dockyard.domain.runs import check_command, describe_command, init_failure


def test_a_command_is_kept_as_given() -> None:
    assert check_command(["sh", "-c", "echo $HOME; exit 3"]) == ("sh", "-c", "echo $HOME; exit 3")
    assert describe_command(["sh", "-c", "echo hi"]) == "sh -c 'echo hi'"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "no command given"),
        ([""], "no command given"),
        (["echo", "a\x00b"], "NUL"),
        (["x"] * 1001, "1001 arguments"),
        (["x" * 70_000], "64 KiB"),
    ],
)
def test_bad_commands_are_refused(command: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_command(command)


def test_the_inits_exec_failure_is_told_as_the_users() -> None:
    missing = b"[FATAL tini (7)] exec no-such failed: No such file or directory\n"
    assert init_failure(missing) == "command not found in the image: 'no-such' (not in its PATH)"
    denied = b"[FATAL tini (7)] exec /etc/passwd failed: Permission denied\r\n"
    assert init_failure(denied) == "the command '/etc/passwd' is not executable in the image"
    assert init_failure(b"sh: no-such: not found\n") is None
