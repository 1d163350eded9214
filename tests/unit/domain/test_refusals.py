"""The engine's refusals to start a container, told as the user's to fix."""

from __future__ import annotations

import pytest

from dockyard.domain.refusals import explain_refusal

OCI = "failed to create shim task: OCI runtime create failed: runc create failed: "
START = OCI + "unable to start container process: "


@pytest.mark.parametrize(
    ("explanation", "told"),
    [
        (
            "No command specified",
            "the image has no CMD or ENTRYPOINT: set one in the Dockerfile, "
            "or give each service its command in a Procfile",
        ),
        (
            START + 'exec: "nosuchcmd": executable file not found in $PATH: unknown',
            "the image's command 'nosuchcmd' is not in the image (not found in its PATH): "
            "fix CMD or ENTRYPOINT, or the Procfile",
        ),
        (
            START + 'exec: "/app/run": stat /app/run: no such file or directory: unknown',
            "the image's command '/app/run' does not exist in the image: "
            "fix CMD or ENTRYPOINT, or the Procfile",
        ),
        (
            START + 'exec: "/app/run": permission denied: unknown',
            "the image's command '/app/run' is not executable (chmod +x it)",
        ),
        (
            START + 'exec: "/app/run": exec format error: unknown',
            "the image's command cannot run on this machine (exec format error): "
            "it was built for another CPU architecture, or a script lacks its #! line",
        ),
    ],
)
def test_the_users_refusals_are_told_as_theirs(explanation: str, told: str) -> None:
    assert explain_refusal(explanation) == told


@pytest.mark.parametrize(
    "explanation",
    ["driver failed programming external connectivity", "network dy-x not found", ""],
)
def test_the_platforms_own_failures_are_not_explained(explanation: str) -> None:
    assert explain_refusal(explanation) is None
