"""What the engine's refusal to start a container says, in words a user can act on.

The engine refuses a container for reasons that are the image's or the
user's (no command, a command the image lacks, one that is not executable
or built for another machine); each is told as such. Anything else is not
explained here: the caller treats it as Dockyard's own failure.
"""

from __future__ import annotations

import re

_NO_COMMAND = "No command specified"
_NOT_IN_PATH = re.compile(r'exec: "(?P<command>[^"]*)": executable file not found in \$PATH')
_NO_FILE = re.compile(r'exec: "(?P<command>[^"]*)": stat [^:]*: no such file or directory')
_NOT_EXECUTABLE = re.compile(r'exec: "(?P<command>[^"]*)": permission denied')
_FORMAT = re.compile(r"exec format error")
_NO_CWD = re.compile(r"chdir to cwd \(\"(?P<directory>[^\"]*)\"\) set in config\.json failed")


def explain_refusal(explanation: str) -> str | None:
    """The user's side of the engine's ``explanation``, or None if it is not theirs."""
    if _NO_COMMAND in explanation:
        return (
            "the image has no CMD or ENTRYPOINT: set one in the Dockerfile, "
            "or give each service its command in a Procfile"
        )
    if found := _NOT_IN_PATH.search(explanation):
        return (
            f"the image's command {found['command']!r} is not in the image "
            "(not found in its PATH): fix CMD or ENTRYPOINT, or the Procfile"
        )
    if found := _NO_FILE.search(explanation):
        return (
            f"the image's command {found['command']!r} does not exist in the image: "
            "fix CMD or ENTRYPOINT, or the Procfile"
        )
    if found := _NOT_EXECUTABLE.search(explanation):
        return f"the image's command {found['command']!r} is not executable (chmod +x it)"
    if _FORMAT.search(explanation):
        return (
            "the image's command cannot run on this machine (exec format error): "
            "it was built for another CPU architecture, or a script lacks its #! line"
        )
    if found := _NO_CWD.search(explanation):
        return f"the image's WORKDIR {found['directory']!r} cannot be entered"
    return None


# What a shell, docker-init or the kernel means by an exit status.
_MEANINGS = {
    126: "its command is not executable",
    127: "its command was not found in the image",
    137: "killed (SIGKILL): out of memory, or stopped by force",
    139: "crashed (segmentation fault)",
    143: "stopped (SIGTERM)",
}


def describe_exit(code: int | None, error: str = "") -> str:
    """``exited with code 127: its command was not found in the image``, or as much as is known."""
    if error and (told := explain_refusal(error)):
        return f"could not run: {told}"
    if code is None:
        return f"could not run: {error}" if error else "exited"
    meaning = _MEANINGS.get(code)
    return f"exited with code {code}" + (f": {meaning}" if meaning else "")
