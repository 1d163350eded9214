"""Apps, users, tokens and grants, through the real CLI against a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
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
    assert result.err.strip() == (
        "Error: missing or invalid API token: log in with `dockyard login --url URL --token TOKEN`"
    )
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


def test_login_takes_a_url_without_its_scheme(server: Server) -> None:
    variables = {"DOCKYARD_URL": "", "DOCKYARD_TOKEN": ""}
    bare = server.url.removeprefix("http://")
    result = server.cli("login", "--url", bare + "/", "--token", server.token, **variables)
    assert result.code == 0, result.text
    saved = server.data_dir.parent / "cli-config" / "config.json"
    assert json.loads(saved.read_text())["url"] == server.url
    assert server.cli("apps", **variables).code == 0
    assert server.cli("apps", DOCKYARD_URL=bare).code == 0  # and in DOCKYARD_URL


def test_a_mistyped_command_or_app_gets_the_closest_one(server: Server) -> None:
    result = server.cli("confg", "--app", "x")
    assert (result.code, result.out) == (2, "")
    assert result.err == "Error: no such command 'confg'; did you mean 'config'?\n"
    handle = "storefront-" + os.urandom(3).hex()
    assert server.cli("apps:create", handle).code == 0
    typo = handle.replace("storefront", "storfront")
    result = server.cli("config", "--app", typo)
    assert result.code == 4
    assert result.err == f"Error: app {typo!r} not found; did you mean {handle!r}?\n"


def test_the_app_comes_from_this_directorys_git_remote(server: Server, tmp_path: Path) -> None:
    first, second = ("here-" + os.urandom(3).hex() for _ in range(2))
    for handle in (first, second):
        assert server.cli("apps:create", handle).code == 0
    assert server.cli("config:set", "--app", first, "WHERE=here").code == 0
    repository = tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    remote = f"{server.url.replace('http://', 'http://git:token@')}/git/{first}.git"
    subprocess.run(["git", "-C", str(repository), "remote", "add", "dockyard", remote], check=True)
    subprocess.run(["git", "-C", str(repository), "remote", "add", "github",
                    "https://github.com/acme/shop.git"], check=True)  # fmt: skip
    result = server.run("config", cwd=repository)
    assert (result.code, result.out) == (0, "WHERE=here\n"), result.text
    # Two apps of this server: which one is not guessed.
    subprocess.run(["git", "-C", str(repository), "remote", "add", "staging",
                    f"{server.url}/git/{second}.git"], check=True)  # fmt: skip
    result = server.run("config", cwd=repository)
    assert result.code == 2
    assert result.err.strip() == (
        f"Error: this directory's git remotes point at several apps ({first}, {second}): "
        "pick one with --app"
    )
    assert server.run("config", "--app", second, cwd=repository).code == 0
    # Outside any repository, --app is missing as before.
    result = server.run("config", cwd=tmp_path)
    assert result.code == 2 and "Missing option '--app'" in result.err


def test_deprovision_asks_for_the_handle_again(server: Server, app: str) -> None:
    result = server.cli("apps:deprovision", "--app", app)
    assert result.code == 2
    assert result.err.strip() == (
        f"Error: this deletes {app} and everything it has: pass --confirm {app}, "
        "or run it on a terminal to be asked"
    )
    result = server.cli("apps:deprovision", "--app", app, "--confirm", app + "x")
    assert result.code == 6
    assert result.err.strip() == (
        f"Error: '{app}x' is not the app's handle '{app}': nothing was deleted"
    )
    assert server.cli("apps:show", "--app", app).code == 0  # still there
    shown = server.run("apps:deprovision", "--help")
    for removed in ("containers", "certificates", "configuration", "images built for it",
                    "git", "grants"):  # fmt: skip
        assert removed in shown.out, removed
    assert server.cli("apps:deprovision", "--app", app, "--confirm", app).code == 0
    assert server.cli("apps:show", "--app", app).code == 4


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
    assert server.cli("apps:deprovision", "--app", handle, "--confirm", handle).code == 0


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
        ["apps:deprovision", "--app", "no-such-app", "--confirm", "no-such-app"],
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
    assert server.cli("apps:deprovision", "--app", app, "--confirm", app, token=token).code == 4
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
    result = server.cli("apps:deprovision", "--app", app, "--confirm", app)
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
