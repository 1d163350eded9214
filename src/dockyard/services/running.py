"""A claimed operation as its handler sees it: its app, its log, its cancel flag."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dockyard.domain import records
from dockyard.domain.errors import DockyardError
from dockyard.domain.operations import OperationCancelled
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
        self.platform.events.operation_changed(self.operation.id)

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
