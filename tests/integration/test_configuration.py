"""Configuration in Aptible's grammar, versions, secrets and bad input."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.servers import DOCKYARD, Server

SECRET = "s3cr3t-Xq9-" + "vZ7kPw2"


def config(server: Server, app: str, *extra: str) -> dict[str, str]:
    result = server.cli("config", "--app", app, "--output", "json", *extra)
    assert result.code == 0, result.text
    values: dict[str, str] = json.loads(result.out)["values"]
    return values


def operation_count(server: Server, app: str) -> int:
    return len(json.loads(server.cli("operations", "--app", app, "-o", "json").out))


def test_set_get_unset_in_aptible_grammar(server: Server, app: str) -> None:
    result = server.cli("config:set", "--app", app, "FOO=bar", "EMPTY_LATER=x", "URL=a=b=c")
    assert result.code == 0, result.text
    assert "setting EMPTY_LATER, FOO, URL" in result.out
    assert server.cli("config", "--app", app).out == "EMPTY_LATER=x\nFOO=bar\nURL=a=b=c\n"
    assert server.cli("config:get", "--app", app, "URL").out == "a=b=c\n"

    assert server.cli("config:set", "--app", app, "EMPTY_LATER=").code == 0  # K= unsets
    assert server.cli("config:add", "--app", app, "ADDED=1").code == 0
    assert server.cli("config:unset", "--app", app, "FOO").code == 0
    assert server.cli("config:rm", "--app", app, "ADDED").code == 0
    assert config(server, app) == {"URL": "a=b=c"}

    missing = server.cli("config:get", "--app", app, "FOO")
    assert missing.code == 4
    assert missing.err.strip() == f"Error: FOO is not set on app {app!r}"


def test_every_change_makes_a_version(server: Server, app: str) -> None:
    for n in range(3):
        assert server.cli("config:set", "--app", app, f"N={n}").code == 0
    shown = json.loads(server.cli("apps:show", "--app", app, "-o", "json").out)
    assert shown["config_version"] == 3
    with server.http() as http:
        assert http.get(f"/apps/{app}/configuration-versions").json() == [1, 2, 3]


def test_unicode_and_multiline_values(server: Server, app: str) -> None:
    value = "héllo wörld ✓\nsecond line"
    assert server.cli("config:set", "--app", app, f"GREETING={value}").code == 0
    assert config(server, app)["GREETING"] == value


KEY_RULE = "(letters, digits and underscores, not starting with a digit)"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("NOT VALID", "invalid argument 'NOT VALID': expected KEY=VALUE"),
        ("=x", f"invalid argument '=x': '' is not a valid key {KEY_RULE}"),
        ("1A=b", f"invalid argument '1A=b': '1A' is not a valid key {KEY_RULE}"),
        ("A-B=c", f"invalid argument 'A-B=c': 'A-B' is not a valid key {KEY_RULE}"),
        ("GOOD=2", "GOOD is given more than once: give each key once"),
        ("GOOD=", "GOOD is given more than once: give each key once"),
    ],
)
def test_malformed_arguments_change_nothing(
    server: Server, app: str, argument: str, message: str
) -> None:
    server.cli("config:set", "--app", app, "KEEP=me")
    before = operation_count(server, app)
    result = server.run("config:set", "--app", app, "GOOD=1", argument)
    assert result.code == 6, result.text
    assert result.err == f"Error: {message}\n"
    assert result.out == ""
    assert config(server, app) == {"KEEP": "me"}
    assert operation_count(server, app) == before


def test_api_rejects_malformed_keys_too(server: Server, app: str) -> None:
    with server.http() as http:
        response = http.post(f"/apps/{app}/configuration", json={"set": {"1A": "b"}})
        assert response.status_code == 422
        assert response.json()["error"] == "invalid"
        assert "'1A'" in response.json()["message"]
        response = http.post(f"/apps/{app}/configuration", json={"set": {}, "unset": []})
        assert response.status_code == 422
    assert operation_count(server, app) == 0


def test_value_over_the_limit_changes_nothing(server: Server, app: str) -> None:
    assert server.cli("config:set", "--app", app, "BIG=" + "x" * 65536).code == 0
    result = server.cli("config:set", "--app", app, "BIG=" + "y" * 65537)
    assert result.code == 6
    assert result.err.strip() == (
        "Error: the value of BIG is 65537 bytes; the limit is 65536 bytes"
    )
    assert config(server, app)["BIG"] == "x" * 65536
    # Through the API, past the CLI's own check, the answer is the same.
    with server.http() as http:
        response = http.post(f"/apps/{app}/configuration", json={"set": {"BIG": "é" * 32769}})
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid",
        "message": "the value of BIG is 65538 bytes; the limit is 65536 bytes",
    }
    assert config(server, app)["BIG"] == "x" * 65536


def test_secrets_are_masked_unless_revealed(server: Server, app: str) -> None:
    secrets = {
        "DB_PASSWORD": SECRET + "1",
        "API_TOKEN": SECRET + "2",
        "AWS_SECRET_ACCESS_KEY": SECRET + "3",
        "DOCKYARD_PRIVATE_REGISTRY_PASSWORD": SECRET + "4",
        "APTIBLE_PRIVATE_REGISTRY_PASSWORD": SECRET + "5",
    }
    args = [f"{k}={v}" for k, v in secrets.items()]
    result = server.cli("config:set", "--app", app, "PLAIN=visible", *args)
    assert result.code == 0, result.text
    shown = server.cli("config", "--app", app).out
    assert "PLAIN=visible" in shown
    for key in secrets:
        assert f"{key}=********" in shown
    assert SECRET not in shown
    assert server.cli("config:get", "--app", app, "DB_PASSWORD").out.strip() == "********"
    assert config(server, app, "--reveal") == {"PLAIN": "visible", **secrets}
    revealed = server.cli("config:get", "--app", app, "API_TOKEN", "--reveal").out
    assert revealed.strip() == SECRET + "2"


def test_secret_never_leaks(server: Server, app: str) -> None:
    secret = SECRET + "-leakcheck"
    result = server.run("config:set", "--app", app, f"DB_PASSWORD={secret}", "PLAIN=ok")
    assert result.code == 0, result.text
    assert secret not in result.text
    # A failing change does not echo the secret either.
    bad = server.run("config:set", "--app", app, f"DB_PASSWORD={secret}", "1BAD=x")
    assert bad.code == 6
    assert secret not in bad.text
    operations = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    for operation in operations:
        assert secret not in json.dumps(operation)
        logs = server.cli("operation:logs", str(operation["id"]), "-o", "json").out
        assert secret not in logs
        assert "DB_PASSWORD" in logs
    assert secret not in server.cli("apps:show", "--app", app, "-o", "json").out
    assert secret.encode() not in server.database_bytes()
    assert secret not in server.log()
    # ...while the value itself is intact.
    assert config(server, app, "--reveal")["DB_PASSWORD"] == secret


def test_twenty_concurrent_changes_all_land(server: Server, app: str) -> None:
    def set_one(n: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKYARD, "config:set", "--app", app, f"VAR_{n:02d}=value-{n}"],
            env=server.environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(set_one, range(20)))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results]
    values = config(server, app)
    assert values == {f"VAR_{n:02d}": f"value-{n}" for n in range(20)}
    with server.http() as http:
        assert http.get(f"/apps/{app}/configuration-versions").json() == list(range(1, 21))
    operations = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    assert len(operations) == 20
    assert {o["status"] for o in operations} == {"succeeded"}
