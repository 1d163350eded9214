"""The release phase: before_release (.dockyard.yml/.aptible.yml) and Procfile release:.

One engine only (not on Swarm): the suite is near its time budget.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from tests.integration.conftest import ServerFactory
from tests.integration.gitpush import WorkingCopy
from tests.integration.registry import Registry, engine_client
from tests.integration.servers import Result, Server
from tests.integration.test_deploys import credentials, served, show
from tests.integration.test_git_deploys import _creds, remote, web
from tests.integration.test_releases import releases


def deploy(server: Server, app: str, image: str, *args: str) -> Result:
    return server.cli("deploy", "--app", app, "--docker-image", image, *args)


def release_command_containers(app: str) -> list[str]:
    with engine_client("sqlite") as client:
        found = client.containers.list(
            all=True, filters={"label": f"dockyard.release-command={app}"}
        )
        return [c.name for c in found]


def lines(result: Result) -> list[str]:
    """The operation's log lines, without their timestamps."""
    return [line.partition(" ")[2] for line in result.out.splitlines()]


def test_release_commands_run_before_the_new_containers(
    server: Server, registry: Registry, app: str
) -> None:
    result = deploy(
        server,
        app,
        registry.image("release:v1"),
        *credentials(registry),
        "GREETING=hello",
        "DB_PASSWORD=s3cret",
        f"API_PORT={server.port}",
    )
    assert result.code == 0, result.text
    log = lines(result)
    first = log.index(
        "Release phase 1/2: running 'echo migrating $GREETING with $DB_PASSWORD; echo registry "
        "vars: $(env | grep -c PRIVATE_REGISTRY); nc -w 1 127.0.0.1 $API_PORT </dev/null "
        "2>/dev/null && echo API reached || echo API unreachable' (from /.dockyard.yml) in a "
        "one-off "
        "container of release 1"
    )
    # The configuration (secrets masked in the log), never the registry's
    # credentials, and the app's own network: the host's loopback is not there.
    assert log[first + 1 : first + 5] == [
        "  | migrating hello with ********",
        "  | registry vars: 0",
        "  | API unreachable",
        "Release command 1 finished (exit status 0)",
    ], log
    second = log.index(
        "Release phase 2/2: running 'echo procfile release for $GREETING' "
        "(from /.dockyard/Procfile (release:)) in a one-off container of release 1"
    )
    assert log[second + 1] == "  | procfile release for hello"
    started = next(i for i, line in enumerate(log) if line.startswith("Started web.1 on "))
    assert first < second < started
    assert "s3cret" not in result.out
    # The Procfile's release: line is never a service.
    assert "Services from /.dockyard/Procfile: web" in log
    assert [c["service"] for c in show(server, app)["containers"]] == ["web"]
    assert served(server, app) == "released"
    assert release_command_containers(app) == []

    # Not on configuration changes or restarts.
    configured = server.cli("config:set", "--app", app, "GREETING=again")
    assert configured.code == 0 and "Release phase" not in configured.out, configured.text
    restarted = server.cli("restart", "--app", app)
    assert restarted.code == 0 and "Release phase" not in restarted.out, restarted.text


def test_a_failing_release_command_or_bad_file_keeps_the_old_release(
    server: Server, registry: Registry, app: str
) -> None:
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    before = show(server, app)

    failed = deploy(server, app, registry.image("release-fail:v1"), "GREETING=new")
    assert failed.code == 7, failed.text
    assert failed.err.splitlines()[-1].endswith(
        " failed: release command 'echo migration failed: no database; exit 4' "
        "(from /.aptible.yml) exited with status 4: no new container was started and the "
        "previous release keeps serving"
    ), failed.text
    assert "  | migration failed: no database" in lines(failed)
    assert not [line for line in lines(failed) if line.startswith("Started ")]

    bad = deploy(server, app, registry.image("release-bad:v1"))
    assert bad.code != 0, bad.text
    assert (
        "/.dockyard.yml is not valid: before_release must be a list of commands, "
        "not str 'migrate'; fix it and deploy again" in bad.err
    ), bad.text
    assert "Started " not in bad.out

    assert served(server, app) == "hello-v1"
    after = show(server, app)
    assert after["release"] == before["release"]
    assert [c["id"] for c in after["containers"]] == [c["id"] for c in before["containers"]]
    assert "GREETING" not in server.cli("config", "--app", app).out
    # The failed command's release failed; the bad file made none.
    assert [(r["number"], r["status"]) for r in releases(server, app)] == [
        (2, "failed"),
        (1, "active"),
    ]
    assert release_command_containers(app) == []


def test_a_release_command_that_never_ends_is_killed(
    backend: str, fresh_server: ServerFactory, registry: Registry
) -> None:
    server = fresh_server(extra_args=["--release-timeout", "2"])
    app = "slow"
    assert server.cli("apps:create", app).code == 0
    result = deploy(server, app, registry.image("release-slow:v1"), *credentials(registry))
    assert result.code == 7, result.text
    assert "  | waiting" in lines(result)
    assert result.err.splitlines()[-1].endswith(
        " failed: release command 'echo waiting; exec sleep 600' (from /.dockyard.yml) "
        "did not finish within 2 s (the server's --release-timeout) and was killed: no new "
        "container was started and the previous release keeps serving"
    ), result.text
    assert show(server, app)["containers"] == []
    assert release_command_containers(app) == []


def test_a_malformed_dockyard_yml_in_the_repository_rejects_the_push(
    server: Server, registry: Registry, app: str, tmp_path: Path
) -> None:
    repo = WorkingCopy(tmp_path / "work", remote(server, app))
    repo.commit({**web(registry, "never"), ".dockyard.yml": "before_release:\n  - a: b\n"})
    pushed = repo.push("main")
    assert pushed.code != 0, pushed.output
    assert (
        "remote: ERROR: .dockyard.yml is not valid: before_release item 1 is a mapping, not a "
        "command (a command with ': ' in it must be quoted); fix it and deploy again"
    ) in pushed.output, pushed.output
    assert "Step 1/" not in pushed.output  # refused before the build
    operations = json.loads(server.cli("operations", "--app", app, "-o", "json").out)
    assert [o["status"] for o in operations] == ["failed"]


# --- automatic rollback (RELEASE_WATCH_SECONDS) ---


def _operations(server: Server, app: str) -> list[dict]:
    return list(json.loads(server.cli("operations", "--app", app, "-o", "json").out))


def test_a_crash_looping_release_is_rolled_back_automatically(
    server: Server, registry: Registry, app: str
) -> None:
    # Release 1 has release commands: the rollback to it runs them again.
    first = deploy(
        server, app, registry.image("release:v1"), *credentials(registry), "GREETING=one"
    )
    assert first.code == 0, first.text
    # Answers its health check, then exits after 4 s, again and again.
    flaky = deploy(server, app, registry.image("flaky:v1"), "RELEASE_WATCH_SECONDS=20")
    assert flaky.code == 0, flaky.text  # the deploy returns once live
    assert "Release 2 is live" in flaky.out
    assert (
        "Watching release 2 for 20 s (RELEASE_WATCH_SECONDS): it is rolled back if a container "
        "exits, restarts or keeps failing its health check" in lines(flaky)
    ), flaky.out

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rollbacks = [o for o in _operations(server, app) if o["type"] == "rollback"]
        if rollbacks and rollbacks[0]["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no automatic rollback: {_operations(server, app)}")
    assert len(rollbacks) == 1 and rollbacks[0]["created_by"] == "dockyard", rollbacks
    assert rollbacks[0]["status"] == "succeeded", rollbacks
    logged = server.cli("operation:logs", str(rollbacks[0]["id"]))
    assert logged.code == 0, logged.text
    log = lines(logged)
    assert re.fullmatch(
        r"Automatic rollback of release 2: cmd\.1 was restarted by the runtime \(1 time\) "
        r"[3-9] s after it went live \(watched for 20 s, RELEASE_WATCH_SECONDS\)",
        log[0],
    ), log
    assert "Rolling" in log[1] and "back to release 1" in log[1], log
    assert "  | procfile release for one" in log  # its release phase ran again
    assert "Release 3 (release 1 again) is live" in " ".join(log)
    assert not [line for line in log if line.startswith("Watching release")]

    assert served(server, app) == "released"
    after = releases(server, app)
    assert [(r["number"], r["kind"], r["current"]) for r in after] == [
        (3, "rollback", True),
        (2, "deploy", False),
        (1, "deploy", False),
    ]
    assert after[0]["created_by"] == "dockyard"
    assert "RELEASE_WATCH_SECONDS" not in server.cli("config", "--app", app).out


def test_a_pushed_repository_s_release_commands_run_on_deploy_and_rollback(
    server: Server, registry: Registry, app: str, tmp_path: Path
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo = WorkingCopy(tmp_path / "work", remote(server, app))
    repo.commit(
        {
            **web(registry, f"built-{uuid.uuid4().hex}"),  # a build of its own
            ".aptible.yml": "before_release:\n  - echo before from git\n",
            "Procfile": "web: exec httpd -f -p $PORT -h /www\nrelease: echo release from git\n",
        }
    )
    pushed = repo.push("main")
    assert pushed.code == 0, pushed.output
    log = [line.removeprefix("remote: ").rstrip() for line in pushed.output.splitlines()]
    assert (
        "Release commands: 'echo before from git' (.aptible.yml), 'echo release from git' "
        "(Procfile (release:))" in log
    ), pushed.output
    before = log.index("  | before from git")
    after = log.index("  | release from git")
    started = next(i for i, line in enumerate(log) if line.startswith("Started web.1 on "))
    assert before < after < started, pushed.output
    assert "Services from the repository's Procfile: web" in log

    assert deploy(server, app, registry.image("web:v2"), *credentials(registry)).code == 0
    # The rollback reads the commit's files from the app's repository again.
    rolled = server.cli("rollback", "--app", app)
    assert rolled.code == 0, rolled.text
    assert lines(rolled).index("  | before from git") < lines(rolled).index(
        "  | release from git"
    ), rolled.out
    assert [c["service"] for c in show(server, app)["containers"]] == ["web"]


def test_no_user_may_take_the_platforms_name(server: Server) -> None:
    taken = server.cli("users:create", "dockyard")
    assert taken.code == 6, taken.text
    assert "'dockyard' names the platform itself" in taken.err
