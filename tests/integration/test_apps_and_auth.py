"""Apps, users, tokens and grants, through the real CLI against a real server."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import Server

UserMaker = Callable[[], tuple[str, str]]


def test_health_and_openapi_need_no_token(server: Server) -> None:
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/apps/{handle}/configuration" in spec["paths"]


def test_first_start_writes_private_admin_token_and_key(server: Server) -> None:
    for name in ("admin-token", "master.key"):
        mode = stat.S_IMODE((server.data_dir / name).stat().st_mode)
        assert mode == 0o600, name
    assert server.token.startswith("dky_")
    assert server.cli("apps").code == 0


@pytest.mark.parametrize("token", ["", "dky_wrong"])
def test_missing_or_wrong_token_is_refused(server: Server, token: str, tmp_path: Path) -> None:
    before = server.cli("apps", "-o", "json").out
    no_login = str(tmp_path / "no-login")
    result = server.cli("apps:create", "never-made", token=token, DOCKYARD_CONFIG_DIR=no_login)
    assert result.code == 3
    assert result.err.strip() == "Error: missing or invalid API token"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(server.url + "/apps", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "missing or invalid API token"}
    assert server.cli("apps", "-o", "json").out == before


def test_login_saves_url_and_token_privately(server: Server) -> None:
    variables = {"DOCKYARD_URL": "", "DOCKYARD_TOKEN": ""}
    result = server.cli("login", "--url", server.url, "--token", server.token, **variables)
    assert result.code == 0, result.text
    saved = server.data_dir.parent / "cli-config" / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"url": server.url, "token": server.token}
    # Later commands use the saved login; DOCKYARD_TOKEN still overrides it.
    assert server.cli("apps", **variables).code == 0
    assert server.cli("apps", token="dky_wrong", DOCKYARD_URL="").code == 3


def test_login_with_a_wrong_token_saves_nothing(server: Server) -> None:
    config = str(server.data_dir.parent / "other-config")
    result = server.cli(
        "login", "--url", server.url, "--token", "dky_nope", DOCKYARD_CONFIG_DIR=config
    )
    assert result.code == 3
    assert "missing or invalid API token" in result.err
    assert not (server.data_dir.parent / "other-config" / "config.json").exists()


def test_create_list_show_app(server: Server, handle: str) -> None:
    created = server.run("apps:create", handle)
    assert created.code == 0, created.text
    assert created.out.strip() == f"{server.url}/git/{handle}.git"
    listed = json.loads(server.cli("apps", "--output", "json").out)
    assert handle in [a["handle"] for a in listed]
    shown = json.loads(server.cli("apps:show", "--app", handle, "-o", "json").out)
    assert shown["handle"] == handle
    assert shown["git_remote"] == f"{server.url}/git/{handle}.git"
    assert shown["config_version"] == 0
    text = server.cli("apps:show", "--app", handle).out
    assert f"Handle:        {handle}" in text


@pytest.mark.parametrize(
    "bad", ["Web", "1web", "-web", "web-", "we_b", "web.app", "a" * 64, "wéb", ""]
)
def test_bad_handles_are_rejected(server: Server, bad: str) -> None:
    before = server.cli("apps", "-o", "json").out
    result = server.cli("apps:create", "--", bad)
    assert result.code == 6, result.text
    assert result.err.startswith(f"Error: invalid app handle {bad!r}: use 1-63 lowercase")
    assert server.cli("apps", "-o", "json").out == before


def test_longest_handle_is_accepted(server: Server) -> None:
    handle = "a" + "b" * 62
    assert server.cli("apps:create", handle).code == 0
    assert server.cli("apps:deprovision", "--app", handle).code == 0


def test_duplicate_handle_is_a_conflict(server: Server, app: str) -> None:
    server.cli("config:set", "--app", app, "KEPT=yes")
    result = server.cli("apps:create", app)
    assert result.code == 5
    assert result.err.strip() == f"Error: an app named {app!r} already exists"
    handles = [a["handle"] for a in json.loads(server.cli("apps", "-o", "json").out)]
    assert handles.count(app) == 1
    assert server.cli("config:get", "--app", app, "KEPT").out.strip() == "yes"


def test_unknown_app_is_not_found(server: Server) -> None:
    for command in (
        ["apps:show", "--app", "no-such-app"],
        ["config", "--app", "no-such-app"],
        ["config:set", "--app", "no-such-app", "A=b"],
        ["operations", "--app", "no-such-app"],
        ["apps:deprovision", "--app", "no-such-app"],
    ):
        result = server.cli(*command)
        assert result.code == 4, command
        assert result.err.strip() == "Error: app 'no-such-app' not found"


def test_users_are_admin_business(server: Server, user_token: UserMaker) -> None:
    name, token = user_token()
    assert name in [u["name"] for u in json.loads(server.cli("users", "-o", "json").out)]
    result = server.cli("users:create", "sneaky", token=token)
    assert result.code == 3
    assert result.err.strip() == "Error: this needs an admin token"
    assert "sneaky" not in server.cli("users").out
    duplicate = server.cli("users:create", name)
    assert duplicate.code == 5
    assert duplicate.err.strip() == f"Error: a user named {name!r} already exists"


def test_users_create_prints_a_working_token(server: Server) -> None:
    result = server.run("users:create", "carol-" + server.token[-6:].lower().replace("_", "x"))
    assert result.code == 0, result.text
    token = result.out.strip()
    assert token.startswith("dky_")
    assert server.cli("apps", token=token).code == 0


def test_non_admin_sees_only_granted_apps(server: Server, app: str, user_token: UserMaker) -> None:
    name, token = user_token()
    server.cli("config:set", "--app", app, "OWNER=admin")

    # Another user's app answers exactly like a missing one.
    hidden = server.cli("apps:show", "--app", app, token=token)
    missing = server.cli("apps:show", "--app", "no-such-app", token=token)
    assert hidden.code == missing.code == 4
    assert hidden.err.replace(app, "X") == missing.err.replace("no-such-app", "X")
    assert app not in server.cli("apps", token=token).out
    changed = server.cli("config:set", "--app", app, "OWNER=mallory", token=token)
    assert changed.code == 4
    assert server.cli("operations", "--app", app, token=token).code == 4
    assert server.cli("apps:deprovision", "--app", app, token=token).code == 4
    assert server.cli("config:get", "--app", app, "OWNER").out.strip() == "admin"

    # Granting is for admins only.
    assert server.cli("apps:grant", "--app", app, name, token=token).code == 4
    assert server.cli("apps:grant", "--app", app, name).code == 0
    assert app in server.cli("apps", token=token).out
    assert server.cli("config:set", "--app", app, "OWNER=user", token=token).code == 0
    assert name in json.loads(server.cli("apps:show", "--app", app, "-o", "json").out)["members"]

    assert server.cli("apps:revoke", "--app", app, name).code == 0
    assert server.cli("apps:show", "--app", app, token=token).code == 4


def test_grant_to_unknown_user(server: Server, app: str) -> None:
    result = server.cli("apps:grant", "--app", app, "nobody-here")
    assert result.code == 4
    assert result.err.strip() == "Error: user 'nobody-here' not found"


def test_non_admin_creates_and_owns_an_app(
    server: Server, handle: str, user_token: UserMaker
) -> None:
    _, token = user_token()
    _, other = user_token()
    assert server.cli("apps:create", handle, token=token).code == 0
    assert handle in server.cli("apps", token=token).out
    assert handle not in server.cli("apps", token=other).out
    assert server.cli("apps:show", "--app", handle).code == 0  # admins see everything


def test_deprovision_removes_app_and_frees_handle(server: Server, app: str) -> None:
    server.cli("config:set", "--app", app, "GONE=soon")
    result = server.cli("apps:deprovision", "--app", app)
    assert result.code == 0, result.text
    assert f"{app} is deprovisioned" in result.out
    assert server.cli("apps:show", "--app", app).code == 4
    assert server.cli("apps:create", app).code == 0
    assert server.cli("config", "--app", app).out == ""


def test_help_everywhere(server: Server) -> None:
    for command in ([], ["config:set"], ["server"], ["operation:follow"]):
        result = server.run(*command, "--help")
        assert result.code == 0
        assert "Usage: dockyard" in result.out
