"""Operations: every change to an app, and the states they move through."""

from __future__ import annotations

import enum


class OperationType(enum.StrEnum):
    CONFIGURE = "configure"
    DEPLOY = "deploy"
    RESTART = "restart"
    SCALE = "scale"
    ROLLBACK = "rollback"
    DEPROVISION = "deprovision"
    # A one-off command (``dockyard run``): recorded, never queued.
    RUN = "run"
    # The platform restarted a container that died (``domain.recovery``): recorded.
    RECOVER = "recover"


class OperationStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED})

INTERRUPTED_MESSAGE = "interrupted: the server stopped while this operation was running"


class OperationCancelled(Exception):
    """Raised inside a running operation that was asked to stop."""
