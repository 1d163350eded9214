"""What each kind of operation does once a worker has claimed it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.domain import records
from dockyard.domain.errors import DockyardError
from dockyard.domain.operations import OperationCancelled, OperationType
from dockyard.services.configuration import change_from_payload
from dockyard.services.context import Platform


class AppGone(DockyardError):
    def __init__(self, handle: str) -> None:
        super().__init__(f"app {handle!r} was deprovisioned before this operation ran")


@dataclass
class OperationRun:
    """A running operation's handle on its log and its cancellation flag."""

    platform: Platform
    operation: records.Operation

    def log(self, line: str) -> None:
        self.platform.store.append_log(self.operation.id, line)
        self.platform.events.operation_changed()

    def hold(self) -> None:
        """Wait ``hold_seconds`` (a test setting), staying cancellable.

        Lets tests interrupt or cancel an operation while it is running.
        """
        deadline = time.monotonic() + self.platform.hold_seconds
        while time.monotonic() < deadline:
            self.check_cancelled()
            time.sleep(0.05)

    def check_cancelled(self) -> None:
        if self.platform.store.cancel_requested(self.operation.id):
            raise OperationCancelled()

    def app(self) -> records.App:
        operation = self.operation
        app = None
        if operation.app_id is not None:
            app = self.platform.store.find_app_by_id(operation.app_id)
        if app is None:
            raise AppGone(operation.app_handle)
        return app


def configure(run: OperationRun) -> str:
    app = run.app()
    change = change_from_payload(run.operation.payload)
    run.log(f"Updating the configuration of {app.handle}: {change.summary()}")
    run.hold()
    current = run.platform.store.configuration(app.id, app.config_version)
    run.check_cancelled()
    version = run.platform.store.save_configuration(
        app.id, change.apply(current.values), run.operation.id
    )
    run.log(f"Configuration version {version} is now current")
    return f"configuration version {version}"


def deprovision(run: OperationRun) -> str:
    app = run.app()
    run.log(f"Deprovisioning {app.handle}")
    run.hold()
    run.check_cancelled()
    run.platform.store.delete_app(app.id)
    run.log(f"{app.handle} is deprovisioned: its configuration and grants are deleted")
    return f"{app.handle} deprovisioned"


HANDLERS: dict[OperationType, Callable[[OperationRun], str]] = {
    OperationType.CONFIGURE: configure,
    OperationType.DEPROVISION: deprovision,
}


def execute(run: OperationRun) -> str:
    """Run the operation; return its result message or raise why it failed."""
    return HANDLERS[run.operation.type](run)
