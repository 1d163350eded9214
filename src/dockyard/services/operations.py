"""Operations as users see them: start, list, read logs, cancel."""

from __future__ import annotations

from typing import Any

from dockyard.domain import records
from dockyard.domain.errors import OperationFinished, OperationNotFound
from dockyard.domain.operations import OperationType
from dockyard.services.context import Platform


def start(
    platform: Platform,
    app: records.App,
    type: OperationType,
    payload: dict[str, Any],
    user: records.User,
) -> records.Operation:
    operation = platform.store.enqueue(
        app, type, payload, user, queue_limit=platform.limits.queued_operations
    )
    platform.events.operation_queued()
    return operation


def find(platform: Platform, user: records.User, operation_id: int) -> records.Operation:
    """The operation, if the user may see its app now.

    Starting an operation gives no lasting right to it: once a grant is revoked
    the user sees none of that app's operations. A deprovision outlives its
    app, so the user who started it may still read how it ended.
    """
    operation = platform.store.get_operation(operation_id)
    if operation is None:
        raise OperationNotFound(operation_id)
    if user.is_admin:
        return operation
    if operation.app_id is None:
        started_it = operation.created_by == user.name
        if started_it and operation.type is OperationType.DEPROVISION:
            return operation
        raise OperationNotFound(operation_id)
    if not platform.store.can_see_app(operation.app_id, user):
        raise OperationNotFound(operation_id)
    return operation


def list_for_app(platform: Platform, app: records.App) -> list[records.Operation]:
    return platform.store.list_operations(app.id)


def logs(platform: Platform, operation: records.Operation, after: int = 0) -> list[records.LogLine]:
    return platform.store.operation_logs(operation.id, after)


def cancel(platform: Platform, user: records.User, operation_id: int) -> records.Operation:
    operation = find(platform, user, operation_id)
    if operation.status.finished:
        raise OperationFinished(operation_id, operation.status.value)
    previous = platform.store.request_cancel(operation_id)
    if previous.finished:
        raise OperationFinished(operation_id, previous.value)
    platform.events.operation_changed(operation_id)
    refreshed = platform.store.get_operation(operation_id)
    assert refreshed is not None
    return refreshed
