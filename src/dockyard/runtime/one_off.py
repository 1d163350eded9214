"""One-off containers (``dockyard run``) on one engine, on the app's own network.

Both backends run them on the engine they talk to: the ``docker`` runtime's
one host, or the Swarm manager, itself a node of the swarm. A one-off is
never on the host's network (see ``docker.py``): it is the app's code,
with the app's configuration, as hostile as its services.

The container is created with its stdin open, attached to before it
starts (so no output is lost), and removed by whoever waited for it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from docker.errors import APIError, NotFound
from docker.utils.socket import frames_iter

from dockyard.domain.errors import ContainerRefused
from dockyard.domain.refusals import explain_refusal
from dockyard.domain.runs import OneOffSpec
from dockyard.runtime.engine import LABEL_INSTALLATION, Engine

LABEL_RUN = "dockyard.run"  # the operation that records the run
LABEL_RUN_APP = "dockyard.app.run"  # the app it ran for (not LABEL_APP: see below)


class EngineOneOff:
    """A one-off container on the engine, and the socket attached to it."""

    def __init__(self, engine: Engine, container_id: str, attached: Any, tty: bool) -> None:
        self.id = container_id
        self._api = engine.client.api
        self._attached = attached
        self._tty = tty
        self._lock = threading.Lock()
        self._removed = False

    def output(self) -> Iterator[tuple[int, bytes]]:
        if self._attached is None:
            return
        try:
            for stream, data in frames_iter(self._attached, self._tty):  # type: ignore[no-untyped-call]
                if data:
                    yield (stream or 1), bytes(data)
        except OSError:
            return  # the socket was closed under us: the run is being ended

    def write(self, data: bytes) -> None:
        if self._attached is not None:
            with contextlib.suppress(OSError):
                _raw(self._attached).sendall(data)

    def close_input(self) -> None:
        if self._attached is not None:
            with contextlib.suppress(OSError):
                _raw(self._attached).shutdown(socket.SHUT_WR)

    def resize(self, rows: int, columns: int) -> None:
        if self._tty and rows > 0 and columns > 0:
            with contextlib.suppress(NotFound, APIError):
                self._api.resize(self.id, height=rows, width=columns)

    def signal(self, name: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self._api.kill(self.id, signal=name)

    def wait(self) -> int:
        found = self._api.wait(self.id)
        return int(found.get("StatusCode", 1))

    def remove(self) -> None:
        with self._lock:
            if self._removed:
                return
            self._removed = True
        if self._attached is not None:
            with contextlib.suppress(OSError):
                self._attached.close()
        with contextlib.suppress(NotFound):
            try:
                self._api.remove_container(self.id, force=True)
            except APIError as exc:
                if exc.status_code != 409:  # being removed already
                    raise


def _raw(attached: Any) -> socket.socket:
    """The socket under the SDK's attach stream (a SocketIO over it)."""
    return attached._sock  # type: ignore[no-any-return]


def start_one_off(engine: Engine, spec: OneOffSpec, *, attach: bool = True) -> EngineOneOff:
    """Create, attach to (unless detached) and start the one-off.

    The engine has its image already.
    """
    api = engine.client.api
    host_config = api.create_host_config(
        network_mode=engine.network(spec.app),
        # docker-init forwards signals (Ctrl-C on a TTY reaches the command,
        # not an init-less PID 1 that ignores it) and reaps what it leaves.
        init=True,
    )
    created = api.create_container(
        spec.image,
        command=list(spec.command),
        environment=dict(spec.environment),
        tty=spec.tty,
        stdin_open=spec.stdin,
        labels={
            LABEL_INSTALLATION: engine.installation,
            # Not LABEL_APP: a one-off is none of the app's services, and
            # the reconciler must neither route it nor count it.
            LABEL_RUN_APP: spec.app,
            LABEL_RUN: str(spec.operation),
        },
        name=f"dy-{engine.installation}.{spec.app}.run.{spec.operation}",
        host_config=host_config,
    )
    container_id = str(created["Id"])
    attached: Any = None
    try:
        if attach:
            attached = api.attach_socket(
                container_id,
                params={"stdin": 1 if spec.stdin else 0, "stdout": 1, "stderr": 1, "stream": 1},
            )
        started = EngineOneOff(engine, container_id, attached, spec.tty)
        if spec.tty and spec.rows and spec.columns:
            # Set before it starts too, so the command's first read sees it.
            with contextlib.suppress(APIError):
                api.resize(container_id, height=spec.rows, width=spec.columns)
        api.start(container_id)
    except APIError as exc:
        if attached is not None:
            with contextlib.suppress(OSError):
                attached.close()
        with contextlib.suppress(NotFound, APIError):
            api.remove_container(container_id, force=True)
        told = explain_refusal(str(exc.explanation or ""))
        if told is None:
            raise
        raise ContainerRefused(told) from None
    except BaseException:
        with contextlib.suppress(NotFound, APIError):
            api.remove_container(container_id, force=True)
        raise
    if spec.tty and spec.rows and spec.columns:
        started.resize(spec.rows, spec.columns)
    return started


def remove_ended_one_offs(engine: Engine, ended: Callable[[int], bool]) -> list[int]:
    """Remove the one-offs whose run ``ended`` says is over; their runs' operation ids.

    Those are the runs of a server that stopped while they ran: whoever
    waited for them removed the others.
    """
    api = engine.client.api
    found = api.containers(
        all=True, filters={"label": [f"{LABEL_INSTALLATION}={engine.installation}", LABEL_RUN]}
    )
    removed = []
    for container in found:
        try:
            operation = int(container["Labels"].get(LABEL_RUN, ""))
        except ValueError:
            continue
        if ended(operation):
            with contextlib.suppress(NotFound, APIError):
                api.remove_container(container["Id"], force=True)
            removed.append(operation)
    return removed


def remove_app_one_offs(engine: Engine, app: str) -> None:
    """Remove the app's one-offs, running or not: it is being deprovisioned.

    Its network cannot go while a container is on it. Their runs end as
    killed ones (their waiters see them go).
    """
    api = engine.client.api
    found = api.containers(
        all=True,
        filters={
            "label": [f"{LABEL_INSTALLATION}={engine.installation}", f"{LABEL_RUN_APP}={app}"]
        },
    )
    for container in found:
        with contextlib.suppress(NotFound, APIError):
            api.remove_container(container["Id"], force=True)
