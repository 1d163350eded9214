"""One-off commands: ``dockyard run`` and ``dockyard ssh``, on one engine.

The real ``dockyard`` executable against the session's server: its exit
status is the command's, its output streams, input reaches the command,
and the container it ran in is gone afterwards. Not on Swarm (the suite's
time budget): there a run goes to the manager's engine the same way.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.registry import Registry, docker_client
from tests.integration.servers import DOCKYARD, Result, Server
from tests.integration.test_deploys import credentials, deploy

SECRET_VALUE = "s3cr3t-value-" + uuid.uuid4().hex[:6]


def dockyard(server: Server, *args: str, given: str = "", token: str | None = None) -> Result:
    """The real CLI with ``given`` as its stdin (a pipe, not a terminal)."""
    done = subprocess.run(
        [DOCKYARD, *args],
        env=server.environment(token),
        input=given,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def one_offs(server: Server) -> list[dict]:
    """This server's one-off containers on the engine, running or not."""
    client = docker_client()
    try:
        return client.api.containers(
            all=True,
            filters={"label": [f"dockyard.installation={server.installation()}", "dockyard.run"]},
        )
    finally:
        client.close()


def wait_for_no_one_offs(server: Server, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while one_offs(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert one_offs(server) == []


def operations(server: Server, app: str) -> list[dict]:
    result = server.cli("operations", "--app", app, "-o", "json")
    assert result.code == 0, result.text
    return list(json.loads(result.out))


@pytest.fixture(scope="module")
def deployed(server: Server, registry: Registry) -> Iterator[str]:
    """An app of the image web:v1, with plain and secret configuration and registry keys."""
    handle = "run-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", handle).code == 0
    done = deploy(
        server,
        handle,
        registry.image("web:v1"),
        *credentials(registry),
        "GREETING=hello",
        f"DB_PASSWORD={SECRET_VALUE}",
        f"DOCKYARD_PRIVATE_REGISTRY_USERNAME={registry.user}",
        f"DOCKYARD_PRIVATE_REGISTRY_PASSWORD={registry.password}",
    )
    assert done.code == 0, done.text
    yield handle
    server.cli("apps:deprovision", "--app", handle, "--confirm", handle)


def test_run_streams_output_takes_input_and_exits_with_the_commands_status(
    server: Server, registry: Registry, deployed: str
) -> None:
    script = "read line; echo got-$line; echo out-$GREETING; echo err-line >&2; env; exit 3"
    ran = dockyard(server, "run", "--app", deployed, "--", "sh", "-c", script, given="typed\n")
    assert ran.code == 3, ran.text
    assert "got-typed" in ran.out and "out-hello" in ran.out
    assert "err-line" in ran.err and "err-line" not in ran.out
    assert f"DB_PASSWORD={SECRET_VALUE}" in ran.out  # the app's configuration, secrets too
    assert "PRIVATE_REGISTRY" not in ran.out and registry.password not in ran.text
    wait_for_no_one_offs(server, timeout=5)

    # --env adds to the configuration (and KEY= takes away) for this run only.
    extra = dockyard(
        server,
        "run",
        "--app",
        deployed,
        "--env",
        "EXTRA=1",
        "-e",
        "GREETING=",
        "--",
        "sh",
        "-c",
        'echo "extra=$EXTRA greeting=${GREETING:-none}"',
    )
    assert extra.code == 0 and "extra=1 greeting=none" in extra.out, extra.text

    # Recorded: who ran what, and its exit status; never its output.
    found = [o for o in operations(server, deployed) if o["type"] == "run"]
    assert [o["exit_status"] for o in found[:2]] == [0, 3]
    assert [o["status"] for o in found[:2]] == ["succeeded", "failed"]
    assert {o["created_by"] for o in found} == {"admin"}
    assert found[1]["message"] == "exited with status 3"
    log = server.cli("operation:logs", str(found[1]["id"]))
    assert log.code == 0 and "read line; echo got-$line" in log.out, log.text
    assert "got-typed" not in log.out and "out-hello" not in log.out
    assert "exited with status 3" in log.out.lower()
    shown = json.loads(server.cli("operation:show", str(found[1]["id"]), "-o", "json").out)
    assert shown["exit_status"] == 3 and shown["type"] == "run"


def test_detached_run_has_the_configuration_never_the_registry_password_and_goes_away(
    server: Server, registry: Registry, deployed: str
) -> None:
    started = dockyard(server, "run", "--app", deployed, "--detach", "--", "sleep", "4")
    assert started.code == 0, started.text
    operation = int(started.out.strip())
    running = one_offs(server)
    assert [c["Labels"]["dockyard.run"] for c in running] == [str(operation)]
    client = docker_client()
    try:
        inspected = client.api.inspect_container(running[0]["Id"])
    finally:
        client.close()
    environment = inspected["Config"]["Env"]
    assert "GREETING=hello" in environment
    assert not [e for e in environment if "PRIVATE_REGISTRY" in e]
    assert registry.password not in json.dumps(inspected)
    network = inspected["HostConfig"]["NetworkMode"]
    assert network.endswith(f"-{deployed}") and network != "host"

    # A run holds up none of the app's operations (nor waits for them).
    changed = server.cli("config:set", "--app", deployed, "--detach", "LATER=1")
    assert changed.code == 0, changed.text
    followed = server.cli("operation:follow", changed.out.strip())
    assert followed.code == 0, followed.text
    assert [c["Labels"]["dockyard.run"] for c in one_offs(server)] == [str(operation)]

    wait_for_no_one_offs(server)
    shown = json.loads(server.cli("operation:show", str(operation), "-o", "json").out)
    assert (shown["type"], shown["status"], shown["exit_status"]) == ("run", "succeeded", 0)


def test_run_refuses_bad_input_with_one_line(
    server: Server, deployed: str, app: str, user_token
) -> None:
    never = dockyard(server, "run", "--app", app, "--", "true")
    assert never.code == 6, never.text
    assert never.err.strip().splitlines() == [
        f"Error: app {app!r} has never been deployed: deploy it before running commands in it"
    ]

    missing = dockyard(server, "run", "--app", deployed, "--", "no-such-command", "x")
    assert missing.code == 127, missing.text
    assert "command not found in the image: 'no-such-command'" in missing.err
    assert "tini" not in missing.text

    _, token = user_token()
    stranger = dockyard(server, "run", "--app", deployed, "--", "true", token=token)
    assert stranger.code == 4, stranger.text
    assert stranger.err.strip() == f"Error: app {deployed!r} not found"

    for bad in ("NOEQUALS", "1BAD=x", "A=1"):
        given = ["--env", bad] + (["--env", "A=2"] if bad == "A=1" else [])
        refused = dockyard(server, "run", "--app", deployed, *given, "--", "true")
        assert refused.code == 6, refused.text
        assert len(refused.err.strip().splitlines()) == 1 and "Error:" in refused.err
    wait_for_no_one_offs(server, timeout=5)
    runs = [o for o in operations(server, deployed) if o["type"] == "run"]
    assert runs[0]["exit_status"] == 127  # the refusals before it were not recorded


def test_a_run_stops_on_ctrl_c_or_operation_cancel(server: Server, deployed: str) -> None:
    # Without a terminal, the CLI passes Ctrl-C (SIGINT) on to the command.
    script = 'trap "echo trapped; exit 9" INT; echo ready; sleep 30 & wait'
    cli = subprocess.Popen(
        [DOCKYARD, "run", "--app", deployed, "--", "sh", "-c", script],
        env=server.environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert cli.stdout is not None
    assert cli.stdout.readline() == b"ready\n"
    time.sleep(0.3)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=20)
    assert cli.returncode == 9, (out, err)
    assert out == b"trapped\n"

    # A detached run is stopped by cancelling its operation.
    started = dockyard(server, "run", "--app", deployed, "--detach", "--", "sleep", "60")
    assert started.code == 0, started.text
    cancelled = server.cli("operation:cancel", started.out.strip())
    assert cancelled.code == 0, cancelled.text
    wait_for_no_one_offs(server, timeout=10)
    shown = json.loads(server.cli("operation:show", started.out.strip(), "-o", "json").out)
    assert (shown["status"], shown["exit_status"]) == ("cancelled", 137), shown


def test_a_client_that_goes_away_ends_its_run(server: Server, deployed: str) -> None:
    from websockets.sync.client import connect

    url = server.url.replace("http://", "ws://") + f"/apps/{deployed}/run"
    with connect(url, additional_headers={"Authorization": f"Bearer {server.token}"}) as ws:
        ws.send(json.dumps({"command": ["sleep", "60"], "stdin": True}))
        started = json.loads(ws.recv())
        assert started["kind"] == "started", started
        time.sleep(0.3)
    wait_for_no_one_offs(server, timeout=10)
    shown = json.loads(
        server.cli("operation:show", str(started["operation"]["id"]), "-o", "json").out
    )
    assert (shown["status"], shown["exit_status"]) == ("failed", 137), shown
    assert shown["message"] == "exited with status 137 (the client went away)"


def test_runs_at_once_are_not_capped_by_a_thread_pool(server: Server, deployed: str) -> None:
    # All of them wait for input at once: were each run's output held by a
    # thread of a small pool (6 on 2 cores), the last ones would never start.
    clis = [
        subprocess.Popen(
            [
                DOCKYARD,
                "run",
                "--app",
                deployed,
                "--",
                "sh",
                "-c",
                "echo ready; read x; echo got-$x",
            ],
            env=server.environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    for cli in clis:
        assert cli.stdout is not None
        assert _read_until(cli.stdout.fileno(), b"ready\n", timeout=30) == b"ready\n"
    for n, cli in enumerate(clis):
        out, err = cli.communicate(f"{n}\n".encode(), timeout=30)
        assert (cli.returncode, out) == (0, f"got-{n}\n".encode()), err
    wait_for_no_one_offs(server, timeout=10)


def _read_until(fd: int, wanted: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"never saw {wanted!r} in {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    assert wanted in seen, seen[-500:]
    return seen


def test_interactive_ssh_through_a_pseudo_terminal(server: Server, deployed: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: dockyard ssh, its stdin a terminal
        os.execve(DOCKYARD, [DOCKYARD, "ssh", "--app", deployed], server.environment())
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        _read_until(fd, b"# ")  # the shell's prompt: what is typed now goes to it
        time.sleep(0.3)
        os.write(fd, b"echo typed-$((6*7)); stty size\n")
        seen = _read_until(fd, b"typed-42")
        seen += _read_until(fd, b"33 101") if b"33 101" not in seen else b""
        os.write(fd, b"sleep 30\n")
        time.sleep(0.5)
        os.write(fd, b"\x03")  # Ctrl-C reaches the command, not the CLI
        os.write(fd, b"echo after-$GREETING\n")
        _read_until(fd, b"after-hello")
        os.write(fd, b"exit 5\n")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 5
    wait_for_no_one_offs(server, timeout=5)


def test_a_run_whose_server_died_is_marked_interrupted_and_its_container_removed(
    backend: str, fresh_server, registry: Registry
) -> None:
    if backend != "sqlite":
        pytest.skip("the recovery is the store's and the reconciler's: one backend shows it")
    server = fresh_server()
    handle = "run-" + uuid.uuid4().hex[:8]
    assert server.cli("apps:create", handle).code == 0
    done = deploy(server, handle, registry.image("web:v1"), *credentials(registry))
    assert done.code == 0, done.text
    started = dockyard(server, "run", "--app", handle, "--detach", "--", "sleep", "120")
    assert started.code == 0, started.text
    assert len(one_offs(server)) == 1
    server.kill()
    server.start()
    wait_for_no_one_offs(server)
    shown = json.loads(server.cli("operation:show", started.out.strip(), "-o", "json").out)
    assert (shown["status"], shown["exit_status"]) == ("failed", None)
    assert "interrupted" in shown["message"]

    # Deprovisioning an app with a run going ends the run: its network goes too.
    again = dockyard(server, "run", "--app", handle, "--detach", "--", "sleep", "120")
    assert again.code == 0 and len(one_offs(server)) == 1, again.text
    gone = server.cli("apps:deprovision", "--app", handle, "--confirm", handle)
    assert gone.code == 0, gone.text
    assert one_offs(server) == []
