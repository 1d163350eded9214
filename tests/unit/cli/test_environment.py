from __future__ import annotations

import io
import stat
from pathlib import Path

from dockyard.cli.environment import Environment
from dockyard.cli.main import main


def env(tmp_path: Path, **variables: str) -> Environment:
    base = {"DOCKYARD_CONFIG_DIR": str(tmp_path / "cfg")}
    return Environment(stdout=io.StringIO(), stderr=io.StringIO(), variables={**base, **variables})


def test_variables_override_saved_login(tmp_path: Path) -> None:
    e = env(tmp_path)
    path = e.save_login("http://saved:1", "dky_saved")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (e.api_url(), e.api_token()) == ("http://saved:1", "dky_saved")
    e2 = env(tmp_path, DOCKYARD_URL="http://env:2/", DOCKYARD_TOKEN="dky_env")
    assert (e2.api_url(), e2.api_token()) == ("http://env:2", "dky_env")


def test_default_url(tmp_path: Path) -> None:
    assert env(tmp_path).api_url() == "http://127.0.0.1:8800"


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    e = env(tmp_path, DOCKYARD_URL="http://127.0.0.1:9", DOCKYARD_TOKEN="dky_x")
    assert main(["apps"], e) == 8
    err = e.stderr.getvalue()  # type: ignore[attr-defined]
    assert err.startswith("Error: cannot reach the Dockyard server at http://127.0.0.1:9")
    assert err.count("\n") == 1


def test_bad_arguments_fail_before_any_request(tmp_path: Path) -> None:
    e = env(tmp_path, DOCKYARD_URL="http://127.0.0.1:9", DOCKYARD_TOKEN="dky_x")
    assert main(["config:set", "--app", "web", "1A=b"], e) == 6
    assert "'1A' is not a valid key" in e.stderr.getvalue()  # type: ignore[attr-defined]
    assert main(["config:set", "--app", "web"], env(tmp_path)) == 2
