"""``dockyard run`` and ``dockyard ssh``: a one-off command in an app's environment.

They speak the API's WebSocket (``/apps/{handle}/run``, described in
``api/routes/runs.py``). The ``websockets`` client is imported inside the
commands: every other command's start-up stays as it was.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import click

from dockyard.cli.client import _EXIT_FOR_STATUS, ApiError
from dockyard.cli.environment import Environment, ExitCode
from dockyard.cli.output import echo, output_option, print_json
from dockyard.domain.configuration import ConfigChange

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

_RUN_SETTINGS = {"allow_interspersed_args": False, "ignore_unknown_options": True}
SHELL = "/bin/sh"

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

env_option = click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set (KEY=VALUE) or unset (KEY=) a variable for this run only; repeatable.",
)


def one_off_commands(app_option: Decorator) -> list[click.Command]:
    """``run`` and ``ssh``, with the command tree's own ``--app`` (and its defaults)."""

    @click.command("run", context_settings=_RUN_SETTINGS)
    @app_option
    @click.option("--detach", is_flag=True, help="Start it, print the run's operation id, return.")
    @env_option
    @output_option
    @click.argument("command", nargs=-1, required=True, metavar="-- COMMAND [ARGS]...")
    @click.pass_obj
    def run_command(
        session: Any,
        app: str,
        detach: bool,
        env: tuple[str, ...],
        output: str,
        command: tuple[str, ...],
    ) -> None:
        """Run a command in a one-off container of the app's current release.

        It has the app's configuration (never the registry credentials),
        streams its output, takes your input, and exits with the command's
        status. With a terminal on stdin it gets a TTY of its own. The
        container is removed when the command ends.

        \b
          dockyard run --app web -- ./manage.py migrate
          dockyard run --app web --env DEBUG=1 -- sh -c 'echo $DEBUG'
          dockyard run --app web --detach -- ./nightly.sh
        """
        _run(session.env, app, list(command), env, detach=detach, output=output)

    @click.command("ssh")
    @app_option
    @env_option
    @click.pass_obj
    def ssh_command(session: Any, app: str, env: tuple[str, ...]) -> None:
        """Open a shell (/bin/sh) in a one-off container of the app's current release."""
        _run(session.env, app, [SHELL], env, detach=False, output="text")

    return [run_command, ssh_command]


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _terminal(env: Environment) -> int | None:
    """The descriptor of the terminal on stdin, if it is one."""
    fd = _fileno(env.stdin)
    return fd if fd is not None and os.isatty(fd) else None


def _run(
    env: Environment,
    app: str,
    command: Sequence[str],
    assignments: Sequence[str],
    *,
    detach: bool,
    output: str,
) -> None:
    ConfigChange.from_arguments(assignments)  # a bad --env is refused before connecting
    terminal = None if detach else _terminal(env)
    rows = columns = 0
    if terminal is not None:
        with contextlib.suppress(OSError):
            columns, rows = os.get_terminal_size(terminal)
    stdin_fd = None if detach else _fileno(env.stdin)
    request = {
        "command": list(command),
        "env": list(assignments),
        "tty": terminal is not None,
        "stdin": stdin_fd is not None,
        "rows": rows,
        "columns": columns,
        "detach": detach,
    }
    with _connect(env, app) as connection:
        connection.send(json.dumps(request))
        started = _message(connection, env)
        operation = started["operation"]
        if detach:
            if output == "json":
                print_json(env, operation)
            else:
                echo(env, str(operation["id"]))
            return
        status, error = _attached(connection, env, terminal, stdin_fd)
    if error:
        echo(env, f"Error: {error}", err=True, fg="red")
    raise click.exceptions.Exit(status)


@contextlib.contextmanager
def _connect(env: Environment, app: str) -> Any:
    from websockets.exceptions import InvalidHandshake, InvalidURI
    from websockets.sync.client import connect

    url = env.api_url()
    where = "wss" + url[5:] if url.startswith("https") else "ws" + url.removeprefix("http")
    token = env.api_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        opened = connect(
            f"{where}/apps/{app}/run",
            additional_headers=headers,
            open_timeout=30,
            compression=None,
            max_size=None,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(
            f"cannot reach the Dockyard server at {url}: {reason}", ExitCode.UNREACHABLE
        ) from None
    with opened as connection:  # (websockets warns about a connection used otherwise)
        yield connection


def _message(connection: ClientConnection, env: Environment) -> dict[str, Any]:
    """The server's first answer: started, or the refusal as an error."""
    from websockets.exceptions import ConnectionClosed

    try:
        raw = connection.recv()
    except ConnectionClosed:
        raise ApiError("the server closed the connection before the command started") from None
    found = json.loads(raw)
    if found.get("kind") == "error":
        status = int(found.get("status", 500))
        raise ApiError(str(found.get("message")), _EXIT_FOR_STATUS.get(status, ExitCode.ERROR))
    return dict(found)


class _Writer:
    """One of the CLI's output streams, written as bytes arrive."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._binary = getattr(stream, "buffer", None)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes) -> None:
        if self._binary is not None:
            self._stream.flush()
            self._binary.write(data)
            self._binary.flush()
        else:
            self._stream.write(self._decoder.decode(data))
            self._stream.flush()


def _pump_input(connection: ClientConnection, fd: int) -> None:
    """Send what is read from ``fd`` until its end, then say so."""
    from websockets.exceptions import ConnectionClosed

    with contextlib.suppress(ConnectionClosed, OSError):
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            connection.send(data)
        connection.send(json.dumps({"kind": "eof"}))


def _attached(
    connection: ClientConnection, env: Environment, terminal: int | None, stdin_fd: int | None
) -> tuple[int, str]:
    """Stream until the command exits: its status and, if it could not run, why."""
    from websockets.exceptions import ConnectionClosed

    streams = {1: _Writer(env.stdout), 2: _Writer(env.stderr)}
    restore: Any = None
    if terminal is not None:
        import termios
        import tty

        restore = termios.tcgetattr(terminal)
        tty.setraw(terminal)
        _follow_window(connection, terminal)
    if stdin_fd is not None:
        threading.Thread(
            target=_pump_input, args=(connection, stdin_fd), name="stdin", daemon=True
        ).start()
    interrupts = 0
    try:
        while True:
            try:
                message = connection.recv()
            except KeyboardInterrupt:  # without a TTY Ctrl-C is ours: pass it on
                interrupts += 1
                name = "SIGINT" if interrupts == 1 else "SIGKILL"
                with contextlib.suppress(ConnectionClosed):
                    connection.send(json.dumps({"kind": "signal", "name": name}))
                continue
            except ConnectionClosed:
                lost = "the connection to the server was lost before the command ended"
                raise ApiError(lost) from None
            if isinstance(message, bytes):
                if message:
                    streams.get(message[0], streams[1]).write(message[1:])
                continue
            found = json.loads(message)
            if found.get("kind") == "exit":
                status = found.get("status")
                return (status if isinstance(status, int) else 1), str(found.get("error") or "")
    finally:
        if restore is not None and terminal is not None:
            import termios

            termios.tcsetattr(terminal, termios.TCSADRAIN, restore)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)


def _follow_window(connection: ClientConnection, terminal: int) -> None:
    """Tell the server the terminal's new size whenever it changes."""
    from websockets.exceptions import ConnectionClosed

    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread

    def resized(*_: Any) -> None:
        with contextlib.suppress(OSError, ConnectionClosed):
            columns, rows = os.get_terminal_size(terminal)
            connection.send(json.dumps({"kind": "resize", "rows": rows, "columns": columns}))

    signal.signal(signal.SIGWINCH, resized)
