"""A bounded schemathesis run against a live server: as admin and as a non-admin.

Every check (``--checks all``) over the server's own /openapi.json, a few
hundred generated requests per identity, with a fixed seed so a failure can be
replayed. Nothing may answer 5xx, and what the document promises must hold.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.servers import Server

ST = str(Path(sys.executable).with_name("st"))
MAX_EXAMPLES = 8  # per operation and phase: a few hundred requests per identity
SEED = 9

# Where schemathesis' own rules do not fit this API (the rest of ``--checks all``
# applies everywhere):
# - Some well-formed requests are refused because of the app's state, with the
#   domain's 422 that the CLI shows (``never been deployed: nothing to scale``,
#   an empty configuration change, a commit that is not 40 hex digits, a
#   rollback on an app with fewer than two releases that went live): a
#   schema cannot say "only once the app has a release", so 422 is an expected
#   answer to schema-valid data on these operations.
# - ``POST /apps/{handle}/grants`` answers 404 when the *user* named in the body
#   does not exist; schemathesis' stateful check ``ensure_resource_availability``
#   reads any 404 there as the app just created being gone, and the stateful
#   phase takes no per-operation setting, so that check is left out.
# - ``DELETE /apps/{handle}`` answers 202: it queues a ``deprovision``
#   operation (as Aptible's), and the app is there until that has run, so the
#   check ``use_after_free`` (a deleted resource must answer 404 at once) is
#   left out too.
STATEFUL = "deploy|scale|restart|logs|configuration|git-deploys|releases"
# - ``/registries``: a source has exactly one kind (``--username``, ``--aws-ecr``
#   or ``--credential-helper``), is fetched before it is stored, and global ones
#   are for admins: well-formed requests get the domain's 403, 404 or 422.
# - Left out: the operations that make the engine or the server contact a host
#   the request names (an image deploy resolves its image at its registry; a
#   registry source is fetched when added, tested or refreshed). Generated
#   hosts are anywhere, and tests send traffic only to loopback and to their
#   own networks; test_deploys and test_registry_sources cover those routes.
# - ``/apps/{handle}/domains``: a name another app holds is a 409, and one
#   under the platform's own domain, longer than 253 characters or ending in
#   an all-digit label (an IP address) is the domain's 422. ``certs``: a
#   certificate is checked (PEM, its key, its names, its dates) beyond what a
#   schema says; ``https``: a server without an HTTPS listener refuses it.
OFFLINE = r"/apps/[^/]+/deploy|/registries(/refresh|/[^/]+/test)?"
# As TOML writes it: ``\\{`` is a regex's ``\{``.
DISABLED = "^POST /(apps/\\\\{handle\\\\}/deploy|registries(/refresh|/\\\\{host\\\\}/test)?)$"
CONFIG = f"""
[[operations]]
include-name-regex = "{DISABLED}"
enabled = false

[[operations]]
include-path-regex = "^/apps/\\\\{{handle\\\\}}/({STATEFUL})$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path-regex = "^/registries"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-path-regex = "^/apps/\\\\{{handle\\\\}}/(domains|certs|https)"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


# One worker: hypothesis' lambda-source cache is not thread-safe (two workers
# end in "Runtime Error: AST constructor recursion depth mismatch").
def _run(server: Server, token: str, tmp_path: Path, name: str) -> str:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / f"{name}.ndjson"
    command = [ST, "--config-file", str(config), "run", f"{server.url}/openapi.json"]
    command += [
        "--checks",
        "all",
        "--exclude-checks",
        "ensure_resource_availability,use_after_free",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
    ]
    command += ["--header", f"Authorization: Bearer {token}", "--workers", "1"]
    command += ["--request-timeout", "10", "--no-color", "--report", "ndjson"]
    command += ["--report-ndjson-path", str(report)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis as {name} failed:\n{output[-20000:]}"
    statuses = [
        int(match)
        for line in report.read_text().splitlines()
        for match in _statuses(json.loads(line))
    ]
    assert statuses, "schemathesis sent no request"
    events = [json.loads(line) for line in report.read_text().splitlines()]
    posted = {path for event in events for path in _posted(event)}
    assert "/apps" in posted, "the report's requests were not found"
    offline = [p for p in posted if re.fullmatch(OFFLINE, p)]
    assert not offline, offline
    assert not [s for s in statuses if s >= 500], output[-20000:]
    return output


def _posted(event: object) -> set[str]:
    """The paths of every POST request recorded in one report event."""
    found: set[str] = set()
    stack = [event]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            uri = item.get("uri") or item.get("url")
            if item.get("method") == "POST" and isinstance(uri, str):
                found.add("/" + uri.split("/", 3)[-1].split("?")[0])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _statuses(event: object) -> list[int]:
    """Every ``status_code`` recorded in one report event, however deep."""
    found: list[int] = []
    stack = [event]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            code = item.get("status_code")
            if isinstance(code, int):
                found.append(code)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_5xx_and_no_broken_promise(
    fresh_server: Callable[..., Server], tmp_path: Path
) -> None:
    # A server of its own: the run creates, deploys and deprovisions apps at random.
    server = fresh_server()
    started = time.monotonic()
    assert server.cli("apps:create", "fuzzed").code == 0
    created = server.cli("users:create", "fuzzer", "--output", "json")
    assert created.code == 0, created.text
    assert server.cli("apps:grant", "--app", "fuzzed", "fuzzer").code == 0
    _run(server, server.token, tmp_path, "admin")
    _run(server, json.loads(created.out)["token"], tmp_path, "user")
    assert time.monotonic() - started < 170
