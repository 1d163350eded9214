# ruff: noqa: E501  (the table of cases reads best one case a line)
"""Inputs that once answered 500: each now gets a clear 4xx and changes nothing.

And a 500, should one still happen, ends its connection cleanly: the client
reads a JSON error and ``Connection: close``, never a reset on its next request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import uvicorn

from dockyard.api.app import create_api
from dockyard.services.context import Platform
from tests.integration.servers import Server, free_port

HANDLE_RULE = (
    "use 1-63 lowercase letters, digits and hyphens, starting with a letter "
    "and not ending with a hyphen"
)
USER_RULE = "use 1-63 lowercase letters, digits, '.', '_' and '-', starting with a letter"
KEY_RULE = "use letters, digits and underscores, not starting with a digit"
SURROGATE = "not valid Unicode: holds a lone surrogate (such as \\ud800)"
TOO_BIG = "Input should be less than or equal to 9223372036854775807"
NOT_JSON = "invalid request: the body is not valid JSON (UTF-8)"
NUL_URL = "invalid request: the URL contains a NUL character (%00)"

# (method, path, raw JSON body or None, expected message); every answer is a 422.
# ``{app}`` is an app of the test's own; bodies are raw so that lone surrogates
# and invalid UTF-8 reach the server exactly as an attacker would send them.
CASES: list[tuple[str, str, bytes | None, str]] = [
    ("GET", "/operations/99999999999999999999", None, f"invalid request: path.operation_id: {TOO_BIG}"),
    ("GET", "/operations/9223372036854775808", None, f"invalid request: path.operation_id: {TOO_BIG}"),
    ("GET", "/operations/0", None, "invalid request: path.operation_id: Input should be greater than or equal to 1"),
    ("POST", "/operations/99999999999999999999/cancel", None, f"invalid request: path.operation_id: {TOO_BIG}"),
    ("GET", "/operations/99999999999999999999/logs", None, f"invalid request: path.operation_id: {TOO_BIG}"),
    ("GET", "/operations/1/logs?after=99999999999999999999", None, f"invalid request: query.after: {TOO_BIG}"),
    ("GET", "/apps/{app}/logs?tail=99999999999999999999", None, f"invalid request: query.tail: {TOO_BIG}"),
    ("POST", "/apps/{app}/configuration", rb'{"set": {"A": "\ud800"}}', f"invalid request: set.A: {SURROGATE}"),
    ("POST", "/apps/{app}/configuration", b'{"set": {"A": "\xed\xa0\x80"}}', f"invalid request: set.A: {SURROGATE}"),
    ("POST", "/apps/{app}/configuration", rb'{"set": {"A": "x\u0000y"}}', "invalid request: set.A: contains a NUL character"),
    ("POST", "/apps/{app}/configuration", rb'{"set": {"A\u0000": "x"}}', f"invalid configuration key 'A\\x00': {KEY_RULE}"),
    ("POST", "/apps/{app}/configuration", rb'{"unset": ["\ud800"]}', f"invalid configuration key '\\ud800': {KEY_RULE}"),
    ("POST", "/apps/{app}/configuration", b'{"set": {"A": "\xff"}}', NOT_JSON),
    ("POST", "/apps/{app}/configuration", b"[" * 100_000, NOT_JSON),
    ("POST", "/apps/{app}/configuration", b"not json", NOT_JSON),
    ("POST", "/apps/{app}/configuration", b"[]", "invalid request: the body must be a JSON object"),
    ("POST", "/apps/{app}/deploy", rb'{"docker_image": "a\u0000"}', "invalid request: docker_image: contains a NUL character"),
    ("POST", "/apps/{app}/deploy", rb'{"docker_image": "x", "private_registry_username": "\ud800", "private_registry_password": "p"}', f"invalid request: private_registry_username: {SURROGATE}"),
    ("POST", "/apps/{app}/deploy", rb'{"git_commitish": "main\u0000"}', "invalid request: git_commitish: contains a NUL character"),
    ("POST", "/apps/{app}/scale", b'{"service": "web", "container_count": 99999999999999999999}', "--container-count must be at most 32, not 99999999999999999999"),
    ("POST", "/apps/{app}/scale", b'{"service": "web", "container_count": -1}', "--container-count must be 0 or more, not -1"),
    ("POST", "/apps/{app}/scale", rb'{"service": "w\u0000", "container_count": 1}', "invalid request: service: contains a NUL character"),
    ("POST", "/apps/{app}/grants", rb'{"user": "\ud800"}', f"invalid user name '\\ud800': {USER_RULE}"),
    ("POST", "/apps/{app}/grants", rb'{"user": "a\u0000"}', f"invalid user name 'a\\x00': {USER_RULE}"),
    ("DELETE", "/apps/{app}/grants/a%00", None, NUL_URL),
    ("GET", "/apps/a%00", None, NUL_URL),
    ("GET", "/apps/{app}/configuration/A%00", None, NUL_URL),
    ("POST", "/apps/a%00/git-deploys?commit=0&branch=main", b"", NUL_URL),
    ("GET", "/git/a%00.git/info/refs?service=git-upload-pack", None, NUL_URL),
    ("GET", "/apps/" + "a" * 300, None, f"invalid app handle {'a' * 300!r}: {HANDLE_RULE}"),
    ("GET", "/apps/Web", None, f"invalid app handle 'Web': {HANDLE_RULE}"),
    ("POST", "/apps", rb'{"handle": "\ud800"}', f"invalid app handle '\\ud800': {HANDLE_RULE}"),
    ("POST", "/apps", b'{"handle": ""}', f"invalid app handle '': {HANDLE_RULE}"),
    ("POST", "/apps", ('{"handle": "' + "a" * 100_000 + '"}').encode(), f"invalid app handle {'a' * 100_000!r}: {HANDLE_RULE}"),
    ("POST", "/users", rb'{"name": "a\u0000"}', f"invalid user name 'a\\x00': {USER_RULE}"),
]  # fmt: skip


def _snapshot(http: httpx.Client, app: str) -> dict[str, Any]:
    """What a bad request must not change: apps, users, the app's configuration and operations."""
    return {
        "apps": http.get("/apps").json(),
        "users": http.get("/users").json(),
        "configuration": http.get(f"/apps/{app}/configuration", params={"reveal": "true"}).json(),
        "operations": http.get(f"/apps/{app}/operations").json(),
    }


@pytest.mark.parametrize(("method", "path", "body", "message"), CASES)
def test_bad_input_is_refused_and_changes_nothing(
    server: Server, app: str, method: str, path: str, body: bytes | None, message: str
) -> None:
    with server.http() as http:
        before = _snapshot(http, app)
        headers = {} if body is None else {"Content-Type": "application/json"}
        response = http.request(method, path.format(app=app), content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json() == {"error": "invalid", "message": message}
        assert _snapshot(http, app) == before


def test_wrong_content_type_is_named(server: Server, app: str) -> None:
    with server.http() as http:
        response = http.post(
            f"/apps/{app}/configuration",
            content=b'{"set": {"A": "b"}}',
            headers={"Content-Type": "text/plain"},
        )
        assert response.status_code == 422
        assert response.json() == {
            "error": "invalid",
            "message": "invalid request: send a JSON body with Content-Type: application/json",
        }
        assert http.get(f"/apps/{app}/operations").json() == []


def test_largest_id_is_simply_not_found(server: Server) -> None:
    with server.http() as http:
        response = http.get(f"/operations/{2**63 - 1}")
    assert response.status_code == 404
    assert response.json()["message"] == f"operation {2**63 - 1} not found"


# A 500 on a live uvicorn, with each HTTP implementation the server may use.


@pytest.fixture(params=["h11", "httptools"])
def failing_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The real API app with one extra route that always fails, served by uvicorn."""
    # The routes used here never reach the platform; create_api reads only its limits.
    platform = SimpleNamespace(limits=SimpleNamespace(request_body=1 << 20))
    api = create_api(cast(Platform, platform))

    @api.get("/fail")
    def fail() -> None:
        raise RuntimeError("forced failure for the test")

    config = uvicorn.Config(
        api, host="127.0.0.1", port=free_port(), http=request.param, ws="none", log_level="critical"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(10)


def test_a_500_answers_json_and_closes_the_connection(failing_server: str) -> None:
    port = int(failing_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /fail HTTP/1.1\r\nHost: dockyard\r\n\r\n")
        received = b""
        while chunk := conn.recv(65536):  # ends only when the server closes
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert lines[0] == "HTTP/1.1 500 Internal Server Error"
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "error": "internal",
        "message": "internal error: see the server log",
    }


def test_a_client_goes_on_after_a_500(failing_server: str) -> None:
    with httpx.Client(base_url=failing_server, timeout=5) as client:
        for _ in range(3):
            failed = client.get("/fail")
            assert failed.status_code == 500
            assert failed.json()["message"] == "internal error: see the server log"
            assert client.get("/healthz").status_code == 200
