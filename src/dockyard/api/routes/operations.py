from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import (
    HandlePath,
    LogEvent,
    LogLineId,
    LogLineOut,
    OperationId,
    OperationOut,
)
from dockyard.domain import records
from dockyard.services import apps, operations
from dockyard.services.context import Platform

router = APIRouter(tags=["operations"])

# Followers poll the store this often too, for operations run by other processes.
FOLLOW_POLL_SECONDS = 0.5


@router.get("/apps/{handle}/operations", responses=responses(401, 404, 422))
def list_operations(
    handle: HandlePath, platform: PlatformDep, user: CurrentUser
) -> list[OperationOut]:
    app = apps.find(platform, user, handle)
    return [OperationOut.of(o) for o in operations.list_for_app(platform, app)]


@router.get("/operations/{operation_id}", responses=responses(401, 404, 422))
def show_operation(
    operation_id: OperationId, platform: PlatformDep, user: CurrentUser
) -> OperationOut:
    return OperationOut.of(operations.find(platform, user, operation_id))


@router.post("/operations/{operation_id}/cancel", responses=responses(401, 404, 409, 422))
def cancel_operation(
    operation_id: OperationId, platform: PlatformDep, user: CurrentUser
) -> OperationOut:
    return OperationOut.of(operations.cancel(platform, user, operation_id))


@router.get(
    "/operations/{operation_id}/logs",
    response_model=list[LogLineOut],
    responses={200: {"content": {"application/x-ndjson": {}}}, **responses(401, 404, 422)},
)
def operation_logs(
    operation_id: OperationId,
    platform: PlatformDep,
    user: CurrentUser,
    after: LogLineId = 0,
    follow: bool = False,
) -> list[LogLineOut] | StreamingResponse:
    """The operation's log; with ``follow``, NDJSON ``LogEvent``s until it ends."""
    operation = operations.find(platform, user, operation_id)
    if follow:
        return StreamingResponse(
            _follow(platform, operation, after), media_type="application/x-ndjson"
        )
    return [_line(line) for line in operations.logs(platform, operation, after)]


def _line(line: records.LogLine) -> LogLineOut:
    return LogLineOut(id=line.id, at=line.at, line=line.line)


async def _follow(
    platform: Platform, operation: records.Operation, after: int
) -> AsyncIterator[bytes]:
    while True:
        # Listen before reading so a change between the two is not missed.
        changed = platform.events.listen(operation.id)
        try:
            current, lines = await run_in_threadpool(
                platform.store.operation_with_logs, operation.id, after
            )
            for line in lines:
                after = line.id
                event = LogEvent(kind="log", id=line.id, at=line.at, line=line.line)
                yield event.model_dump_json(exclude_none=True).encode() + b"\n"
            if current is None or current.status.finished:
                final = current or operation
                end = LogEvent(kind="end", operation=OperationOut.of(final))
                yield end.model_dump_json(exclude_none=True).encode() + b"\n"
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), FOLLOW_POLL_SECONDS)
        finally:
            platform.events.forget(operation.id, changed)
