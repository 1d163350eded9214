"""Operations: logs, following, cancelling, ordering, and surviving a crash."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest

from dockyard.domain.operations import INTERRUPTED_MESSAGE
from tests.integration.servers import Server

ServerFactory = Callable[..., Server]


def wait_for_status(server: Server, operation_id: int, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(server.cli("operation:show", str(operation_id), "-o", "json").out)
        if shown["status"] == status:
            return dict(shown)
        time.sleep(0.05)
    raise AssertionError(f"operation {operation_id} never became {status}: {shown}")


def detach(server: Server, *args: str) -> int:
    result = server.cli(*args, "--detach")
    assert result.code == 0, result.text
    return int(result.out.strip())


def test_operation_records_who_what_and_when(server: Server, app: str) -> None:
    result = server.cli("config:set", "--app", app, "A=1", "-o", "json")
    assert result.code == 0, result.text
    operation = json.loads(result.out)
    assert operation["status"] == "succeeded"
    assert operation["type"] == "configure"
    assert operation["app"] == app
    assert operation["created_by"] == "admin"
    assert operation["created_at"] <= operation["started_at"] <= operation["finished_at"]

    listed = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    assert [o["id"] for o in listed] == [operation["id"]]
    table = server.cli("operations", "--app", app).out.splitlines()
    assert table[0].split() == ["ID", "TYPE", "STATUS", "BY", "CREATED"]
    assert table[1].split()[:4] == [str(operation["id"]), "configure", "succeeded", "admin"]

    logs = json.loads(server.cli("operation:logs", str(operation["id"]), "-o", "json").out)
    assert [line["line"] for line in logs] == [
        f"Updating the configuration of {app}: setting A",
        "Configuration version 1 is now current",
    ]
    text = server.cli("operation:logs", str(operation["id"])).out.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d Configuration version 1 is now current", text[1])


def test_detach_then_follow(server: Server, app: str) -> None:
    operation_id = detach(server, "config:set", "--app", app, "B=2")
    followed = server.run("operation:follow", str(operation_id))
    assert followed.code == 0, followed.text
    assert "Configuration version 1 is now current" in followed.out
    assert server.cli("operation:show", str(operation_id), "-o", "json").code == 0


def test_unknown_operation(server: Server) -> None:
    for command in ("operation:show", "operation:logs", "operation:follow", "operation:cancel"):
        result = server.cli(command, "999999")
        assert result.code == 4
        assert result.err.strip() == "Error: operation 999999 not found"


def test_cancelling_a_finished_operation_is_refused(server: Server, app: str) -> None:
    operation = json.loads(server.cli("config:set", "--app", app, "C=3", "-o", "json").out)
    result = server.cli("operation:cancel", str(operation["id"]))
    assert result.code == 5
    assert result.err.strip() == (
        f"Error: operation {operation['id']} has already succeeded; "
        "only queued or running operations can be cancelled"
    )
    shown = json.loads(server.cli("operation:show", str(operation["id"]), "-o", "json").out)
    assert shown["status"] == "succeeded"
    assert server.cli("config:get", "--app", app, "C").out.strip() == "3"


def test_other_users_operations_are_hidden(
    server: Server, app: str, user_token: Callable[[], tuple[str, str]]
) -> None:
    operation = json.loads(server.cli("config:set", "--app", app, "D=4", "-o", "json").out)
    _, token = user_token()
    for command in ("operation:show", "operation:logs", "operation:cancel"):
        result = server.cli(command, str(operation["id"]), token=token)
        assert result.code == 4
        assert result.err.strip() == f"Error: operation {operation['id']} not found"


def test_queued_operations_wait_cancel_and_survive_restart(
    fresh_server: ServerFactory,
) -> None:
    server = fresh_server(workers=0)  # this process runs no operations
    assert server.cli("apps:create", "queued").code == 0
    first = detach(server, "config:set", "--app", "queued", "FIRST=1")
    second = detach(server, "config:set", "--app", "queued", "SECOND=2")
    third = detach(server, "config:set", "--app", "queued", "THIRD=3")
    assert wait_for_status(server, first, "queued")

    cancelled = server.cli("operation:cancel", str(second), "-o", "json")
    assert cancelled.code == 0, cancelled.text
    assert json.loads(cancelled.out)["status"] == "cancelled"
    again = server.cli("operation:cancel", str(second))
    assert again.code == 5
    assert "has already cancelled" in again.err

    server.stop()
    server.start(workers=2)
    wait_for_status(server, first, "succeeded")
    wait_for_status(server, third, "succeeded")
    config = json.loads(server.cli("config", "--app", "queued", "-o", "json").out)
    assert config["values"] == {"FIRST": "1", "THIRD": "3"}
    assert config["version"] == 2
    follow = server.cli("operation:follow", str(second))
    assert follow.code == 7
    assert follow.err.strip() == (
        f"Error: operation {second} cancelled: cancelled before it started"
    )


def test_one_app_runs_in_order_others_in_parallel(fresh_server: ServerFactory) -> None:
    server = fresh_server(env={"DOCKYARD_OPERATION_HOLD_SECONDS": "1"})
    for handle in ("alpha", "beta"):
        assert server.cli("apps:create", handle).code == 0
    started = time.monotonic()
    a1 = detach(server, "config:set", "--app", "alpha", "N=1")
    a2 = detach(server, "config:set", "--app", "alpha", "N=2")
    b1 = detach(server, "config:set", "--app", "beta", "N=1")
    for operation_id in (a1, a2, b1):
        wait_for_status(server, operation_id, "succeeded")
    elapsed = time.monotonic() - started
    shows = {
        i: json.loads(server.cli("operation:show", str(i), "-o", "json").out) for i in (a1, a2, b1)
    }
    # alpha's second change started only after its first finished...
    assert shows[a2]["started_at"] >= shows[a1]["finished_at"]
    # ...while beta's ran beside alpha's first.
    assert shows[b1]["started_at"] < shows[a1]["finished_at"]
    assert elapsed < 10
    alpha = json.loads(server.cli("config", "--app", "alpha", "-o", "json").out)
    assert alpha == {"version": 2, "values": {"N": "2"}, "masked": False}


def test_cancel_a_running_operation(fresh_server: ServerFactory) -> None:
    server = fresh_server(env={"DOCKYARD_OPERATION_HOLD_SECONDS": "30"})
    assert server.cli("apps:create", "slow").code == 0
    operation_id = detach(server, "config:set", "--app", "slow", "NEVER=set")
    wait_for_status(server, operation_id, "running")
    result = server.cli("operation:cancel", str(operation_id))
    assert result.code == 0, result.text
    assert result.out.strip() == f"Operation {operation_id} is running; asked it to stop"
    wait_for_status(server, operation_id, "cancelled")
    assert server.cli("config", "--app", "slow").out == ""
    logs = server.cli("operation:logs", str(operation_id)).out
    assert logs.splitlines()[-1].endswith("Cancelled")


def test_killed_server_fails_running_and_keeps_queued(fresh_server: ServerFactory) -> None:
    server = fresh_server(env={"DOCKYARD_OPERATION_HOLD_SECONDS": "30"})
    assert server.cli("apps:create", "crashy").code == 0
    running = detach(server, "config:set", "--app", "crashy", "LOST=1")
    queued = detach(server, "config:set", "--app", "crashy", "KEPT=1")
    wait_for_status(server, running, "running")

    server.kill()
    server.env = {}  # the restarted server runs operations without holding them
    server.start()

    interrupted = wait_for_status(server, running, "failed")
    assert interrupted["message"] == INTERRUPTED_MESSAGE
    logs = json.loads(server.cli("operation:logs", str(running), "-o", "json").out)
    assert logs[-1]["line"] == INTERRUPTED_MESSAGE
    wait_for_status(server, queued, "succeeded")
    config = json.loads(server.cli("config", "--app", "crashy", "-o", "json").out)
    assert config["values"] == {"KEPT": "1"}
    follow = server.run("operation:follow", str(running))
    assert follow.code == 7
    assert f"operation {running} failed: interrupted" in follow.err


@pytest.mark.parametrize(
    "command",
    [
        ["apps"],
        ["users"],
        ["operations", "--app", "{app}"],
        ["apps:show", "--app", "{app}"],
        ["config", "--app", "{app}"],
        ["config:get", "--app", "{app}", "J"],
        ["operation:show", "{op}"],
        ["operation:logs", "{op}"],
        ["operation:follow", "{op}"],
    ],
)
def test_json_output_everywhere(server: Server, app: str, command: list[str]) -> None:
    operation = json.loads(server.cli("config:set", "--app", app, "J=1", "-o", "json").out)
    args = [part.format(app=app, op=operation["id"]) for part in command]
    result = server.cli(*args, "--output", "json")
    assert result.code == 0, result.text
    parsed = json.loads(result.out)
    expected = list if command[0] in ("apps", "users", "operations", "operation:logs") else dict
    assert isinstance(parsed, expected)


def test_a_revoked_user_no_longer_sees_the_operations_they_started(
    server: Server, app: str, user_token: Callable[[], tuple[str, str]]
) -> None:
    name, token = user_token()
    assert server.cli("apps:grant", "--app", app, name).code == 0
    started = json.loads(
        server.cli("config:set", "--app", app, "E=5", "-o", "json", token=token).out
    )
    assert started["created_by"] == name
    with server.http(token) as http:
        assert http.get(f"/operations/{started['id']}").status_code == 200
        assert [o["id"] for o in http.get(f"/apps/{app}/operations").json()] == [started["id"]]

    assert server.cli("apps:revoke", "--app", app, name).code == 0
    with server.http(token) as http:
        for method, path in (
            ("GET", f"/operations/{started['id']}"),
            ("GET", f"/operations/{started['id']}/logs"),
            ("GET", f"/operations/{started['id']}/logs?follow=true"),
            ("POST", f"/operations/{started['id']}/cancel"),
        ):
            response = http.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json()["message"] == f"operation {started['id']} not found"
        listed = http.get(f"/apps/{app}/operations")
        assert listed.status_code == 404
        assert listed.json()["message"] == f"app {app!r} not found"
    # The admin still sees it, unchanged.
    shown = json.loads(server.cli("operation:show", str(started["id"]), "-o", "json").out)
    assert shown["created_by"] == name
    assert shown["cancel_requested"] is False
