"""Release commands: one-off containers on an engine, on the app's own network.

Both backends run them here, on the engine Dockyard talks to (on Swarm, the
manager, where the release's image was pulled or built), in the app's
network as its builds are: never the host's. The container has the
release's environment and no registry credentials (the image is on the
engine already), and is removed however it ends. It carries the
installation's label and a label of its own, not ``dockyard.app``, so that
nothing takes it for one of the app's containers; and, as a one-off run's
container does (``one_off``), the app's and its operation's, so that one
a dead server left is removed once that operation has ended, and with its
app.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from docker.errors import APIError, NotFound
from docker.types import LogConfig

from dockyard.domain.containers import ContainerSpec
from dockyard.domain.errors import ContainerRefused
from dockyard.domain.refusals import explain_refusal
from dockyard.runtime.engine import LABEL_INSTALLATION, LABEL_RELEASE, Engine
from dockyard.runtime.one_off import LABEL_RUN, LABEL_RUN_APP

LABEL_RELEASE_COMMAND = "dockyard.release-command"
POLL_SECONDS = 0.05
# Output still in flight once the container has exited.
LOGS_GRACE_SECONDS = 5.0


def run_release_command(
    engine: Engine,
    spec: ContainerSpec,
    *,
    operation: int,
    port: int,
    timeout: float,
    on_line: Callable[[str], None],
    checkpoint: Callable[[], None],
) -> int | None:
    """Run the command; its exit status, or None when killed at ``timeout``."""
    assert spec.command
    api = engine.client.api
    created = engine.client.containers.create(
        spec.image,
        command=["/bin/sh", "-c", spec.command],
        name=f"dy-{engine.installation}.{spec.app}.release.r{spec.release}",
        network=engine.network(spec.app),
        init=True,
        environment={**spec.environment, "PORT": str(port)},
        labels={
            LABEL_INSTALLATION: engine.installation,
            LABEL_RELEASE_COMMAND: spec.app,
            LABEL_RELEASE: str(spec.release),
            LABEL_RUN_APP: spec.app,
            LABEL_RUN: str(operation),
        },
        log_config=LogConfig(type="json-file", config={"max-size": "10m"}),
    )
    container_id = str(created.id)
    status: int | None = None
    try:
        try:
            created.start()
        except APIError as exc:  # the engine's own words on the user's image
            told = explain_refusal(str(exc.explanation or "")) or str(exc.explanation or exc)
            raise ContainerRefused(f"the release command could not start: {told}") from None
        reader = threading.Thread(
            target=_follow, args=(api, container_id, on_line), name="release-logs", daemon=True
        )
        reader.start()
        deadline = time.monotonic() + timeout
        while True:
            state = api.inspect_container(container_id)["State"]
            if not state.get("Running"):
                status = int(state.get("ExitCode", 0))
                break
            if time.monotonic() >= deadline:
                api.kill(container_id)
                break
            checkpoint()
            time.sleep(POLL_SECONDS)
        reader.join(LOGS_GRACE_SECONDS)
        return status
    finally:
        with contextlib.suppress(NotFound, APIError):
            api.remove_container(container_id, force=True)


def _follow(api: Any, container_id: str, on_line: Callable[[str], None]) -> None:
    """Send the container's output to ``on_line``, line by line, until it ends."""
    pending = b""
    try:
        for chunk in api.logs(container_id, stream=True, follow=True):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                on_line(line.decode("utf-8", "replace").rstrip("\r"))
    except (APIError, NotFound):
        pass  # removed meanwhile
    if pending:
        on_line(pending.decode("utf-8", "replace"))
