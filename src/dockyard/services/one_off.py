"""One-off commands (``dockyard run``): start, stream, record how they ended.

A run is recorded as an operation of type ``run`` (who ran what, and its
exit status, never its output) but is no part of the app's queue: it
neither waits for the app's operations nor holds them up. It runs the
current release's image with that release's configuration, without the
registry credentials, on the same runtime as the app.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockyard.domain import records
from dockyard.domain.configuration import ConfigChange, process_environment
from dockyard.domain.errors import DockyardError
from dockyard.domain.images import ImageReference
from dockyard.domain.operations import OperationStatus
from dockyard.domain.runs import (
    COMMAND_NOT_FOUND,
    NotDeployedForRun,
    OneOff,
    OneOffSpec,
    RunImageGone,
    check_command,
    describe_command,
    ended,
    init_failure,
)
from dockyard.services import apps
from dockyard.services.context import Platform
from dockyard.services.credentials import release_credentials_for

log = logging.getLogger("dockyard.runs")

# How often a run looks whether it was asked to stop (``operation:cancel``).
CANCEL_POLL_SECONDS = 1.0
# How much of a run's first output is held back to tell the init's own
# "exec failed" from the command's output.
_INIT_PREFIX = b"[FATAL tini ("
_HELD_AT_MOST = 4096


@dataclass(frozen=True)
class RunRequest:
    command: tuple[str, ...]
    env: tuple[str, ...] = ()  # KEY=VALUE, as config:set takes them
    tty: bool = False
    stdin: bool = False
    rows: int = 0
    columns: int = 0
    detach: bool = False


@dataclass
class Run:
    """A started run: its operation and its container."""

    platform: Platform
    operation: records.Operation
    container: OneOff
    # Set when the command could not be run at all (not in the image).
    error: str = ""
    cancelled: bool = field(default=False, init=False)
    # Why it was stopped from here (the client went away), if it was.
    stopped: str = field(default="", init=False)
    _finished: bool = field(default=False, init=False)
    _ended: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def output(self) -> Iterator[tuple[int, bytes]]:
        """The container's output as it comes, without the init's own refusal."""
        held: list[tuple[int, bytes]] = []
        deciding = True
        for stream, data in self.container.output():
            if not deciding:
                yield stream, data
                continue
            held.append((stream, data))
            joined = b"".join(d for _, d in held)
            if _INIT_PREFIX.startswith(joined) and len(joined) < len(_INIT_PREFIX):
                continue  # could still be the init's message
            waiting = b"\n" not in joined and len(joined) < _HELD_AT_MOST
            if joined.startswith(_INIT_PREFIX) and waiting:
                continue
            deciding = False
            told = init_failure(joined) if joined.startswith(_INIT_PREFIX) else None
            if told is not None:
                self.error = told
                continue
            yield from held
        if deciding and held:
            joined = b"".join(d for _, d in held)
            told = init_failure(joined)
            if told is not None:
                self.error = told
            else:
                yield from held

    def finish(self, status: int, why: str = "") -> records.Operation:
        """Record the exit status, remove the container; once, whoever calls it."""
        with self._lock:
            if self._finished:
                found = self.platform.store.get_operation(self.operation.id)
                return found or self.operation
            self._finished = True
        self._ended.set()
        try:
            self.container.remove()
        except Exception:
            log.exception("removing the one-off container of run %s failed", self.operation.id)
        message = ended(status)
        why = why or self.stopped
        if self.error:
            message += f": {self.error}"
        elif why:
            message += f" ({why})"
        outcome = OperationStatus.SUCCEEDED if status == 0 else OperationStatus.FAILED
        if self.cancelled:
            message, outcome = f"cancelled while running ({message})", OperationStatus.CANCELLED
        store = self.platform.store
        store.append_log(self.operation.id, message[:1].upper() + message[1:])
        store.finish_run(self.operation.id, outcome, message, status)
        self.platform.events.operation_changed(self.operation.id)
        found = store.get_operation(self.operation.id)
        return found or self.operation

    def wait_and_finish(self) -> records.Operation:
        try:
            status = self.container.wait()
        except Exception:
            log.exception("waiting for the one-off container of run %s failed", self.operation.id)
            status = 1
        if self.error and status == 0:
            status = COMMAND_NOT_FOUND
        return self.finish(status)

    def watch_for_cancel(self) -> None:
        """Kill the command when ``operation:cancel`` asks the run to stop."""
        store = self.platform.store
        while not self._ended.wait(CANCEL_POLL_SECONDS):
            try:
                asked = store.cancel_requested(self.operation.id)
            except Exception:
                log.exception("reading whether run %s was cancelled failed", self.operation.id)
                continue
            if asked:
                self.cancelled = True
                self.container.signal("SIGKILL")
                return

    def stop(self, why: str) -> records.Operation:
        """The client went away: kill the command and record it."""
        self.stopped = why
        self.container.signal("SIGKILL")
        try:
            status = self.container.wait()
        except Exception:
            status = 137
        return self.finish(status, why)


def start(platform: Platform, user: records.User, handle: str, request: RunRequest) -> Run:
    """Check the request, record the run and start its container.

    Refused before anything is recorded: an app the user cannot see (not
    found), a bad command or ``--env``, an app never deployed.
    """
    app = apps.find(platform, user, handle)
    command = check_command(request.command)
    change = ConfigChange.from_arguments(request.env)
    if app.current_release_id is None:
        raise NotDeployedForRun(app.handle)
    release = platform.store.get_release(app.current_release_id)
    if release is None:
        raise NotDeployedForRun(app.handle)
    values = platform.store.configuration(app.id, release.config_version).values
    environment = process_environment(change.apply(values))
    _ensure_image(platform, app.id, release.image, release.number)
    payload = {
        "command": list(command),
        "release": release.number,
        "env_keys": sorted(set(change.set) | change.unset),
        "tty": request.tty,
        "detach": request.detach,
    }
    operation = platform.store.record_run(app, payload, user, platform.worker_id)
    platform.store.append_log(
        operation.id,
        f"Running {describe_command(command)} in a one-off container of release "
        f"{release.number} (run by {user.name})",
    )
    platform.events.operation_changed(operation.id)
    spec = OneOffSpec(
        app=app.handle,
        operation=operation.id,
        image=release.image,
        command=command,
        environment=environment,
        tty=request.tty and not request.detach,
        stdin=request.stdin and not request.detach,
        rows=request.rows,
        columns=request.columns,
    )
    try:
        container = platform.scheduler().one_off(spec, attach=not request.detach)
    except DockyardError as exc:
        _failed(platform, operation, exc.message)
        raise
    except Exception:
        _failed(platform, operation, "internal error: see the server log")
        raise
    run = Run(platform, operation, container)
    threading.Thread(
        target=run.watch_for_cancel, name=f"run-{operation.id}-cancel", daemon=True
    ).start()
    if request.detach:
        threading.Thread(
            target=run.wait_and_finish, name=f"run-{operation.id}", daemon=True
        ).start()
    return run


def _failed(platform: Platform, operation: records.Operation, message: str) -> None:
    platform.store.append_log(operation.id, f"ERROR: {message}")
    platform.store.finish_run(operation.id, OperationStatus.FAILED, message, None)
    platform.events.operation_changed(operation.id)


def _ensure_image(platform: Platform, app_id: int, image: str, number: int) -> None:
    """Pull the release's image if the engine lost it (on Swarm: if the manager never had it)."""
    images = platform.images()
    if images.has_image(image):
        return
    if image.startswith("sha256:"):
        raise RunImageGone(number)
    reference = ImageReference.parse(image)
    credentials = release_credentials_for(platform, app_id, reference.host, image=image)
    images.pull(reference, credentials)


def sweep(platform: Platform) -> list[str]:
    """Remove the containers of runs that ended without their waiter (a server stopped)."""

    def ended(operation_id: int) -> bool:
        found = platform.store.get_operation(operation_id)
        return found is None or found.status.finished

    removed = platform.scheduler().remove_ended_one_offs(ended)
    return [f"removed the container of run {operation}, which ended" for operation in removed]
