"""The engine's events, read for the app containers that exit on their own.

An app container dies; the engine starts it again (its restart policy). The
events say which: ``die`` with its ``exitCode``, after ``oom`` when the
kernel killed it for memory. A container Dockyard (or anyone) stopped gets a
``kill`` event first: that one is no recovery. Only containers of this
installation's apps are read (one-off runs and release commands are not
labelled as services).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from docker.errors import DockerException

from dockyard.domain.recovery import Exit
from dockyard.runtime.engine import (
    LABEL_APP,
    LABEL_INDEX,
    LABEL_INSTALLATION,
    LABEL_RELEASE,
    LABEL_SERVICE,
    Engine,
)

KILL_SEEN_SECONDS = 60.0  # a stop's kill, then its die: up to the grace period apart


def engine_exits(engine: Engine, stop: threading.Event) -> Iterator[Exit]:
    """Exits of app containers that nobody stopped, as they happen, until ``stop`` is set."""
    filters = {
        "type": "container",
        "event": ["kill", "oom", "die"],
        "label": [f"{LABEL_INSTALLATION}={engine.installation}", LABEL_INDEX],
    }
    killed: dict[str, float] = {}
    oom: set[str] = set()
    while not stop.is_set():
        try:
            stream = engine.client.events(decode=True, filters=filters)
        except DockerException:
            stop.wait(2)  # the engine is restarting: read again
            continue
        closer = threading.Thread(target=_close_when, args=(stop, stream), daemon=True)
        closer.start()
        try:
            for event in stream:
                found = _exit_of(event, killed, oom)
                if found is not None:
                    yield found
        except (DockerException, OSError, ValueError):
            pass  # the connection broke, or was closed on stop
        finally:
            stream.close()
        stop.wait(1)


def _close_when(stop: threading.Event, stream: Any) -> None:
    stop.wait()
    stream.close()


def _exit_of(event: dict[str, Any], killed: dict[str, float], oom: set[str]) -> Exit | None:
    container = str(event.get("id", ""))
    action = str(event.get("Action") or event.get("status") or "")
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    now = time.monotonic()
    if action == "kill":
        killed[container] = now
        return None
    if action == "oom":
        oom.add(container)
        return None
    if action != "die":
        return None
    stopped = now - killed.pop(container, -KILL_SEEN_SECONDS * 2) < KILL_SEEN_SECONDS
    out_of_memory = container in oom
    oom.discard(container)
    if stopped and not out_of_memory:
        return None
    try:
        return Exit(
            app=str(attributes[LABEL_APP]),
            release=int(attributes.get(LABEL_RELEASE, "0")),
            service=str(attributes[LABEL_SERVICE]),
            index=int(attributes[LABEL_INDEX]),
            exit_code=int(attributes.get("exitCode", "0")),
            out_of_memory=out_of_memory,
        )
    except (KeyError, ValueError):
        return None
