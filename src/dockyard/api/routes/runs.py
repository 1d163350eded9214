"""One-off commands over a WebSocket: ``/apps/{handle}/run``.

The client authenticates as for any request (``Authorization: Bearer``)
and sends one JSON text message, the request::

    {"command": ["sh", "-c", "..."], "env": ["K=V"], "tty": false,
     "stdin": true, "rows": 24, "columns": 80, "detach": false}

The server answers one JSON text message: ``{"kind": "started",
"operation": {...}}`` or ``{"kind": "error", "status": 404, "error": ...,
"message": ...}`` (the HTTP status the same mistake gets elsewhere). Then
the command's output comes as binary messages, each a stream number (1
stdout, 2 stderr) followed by the bytes; the client sends its input as
binary messages and, as JSON text, ``{"kind": "resize", "rows": R,
"columns": C}``, ``{"kind": "eof"}`` or ``{"kind": "signal", "name":
"SIGINT"}``. The end is ``{"kind": "exit", "status": N, "error": "...",
"operation": {...}}``. A detached run ends at ``started``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from dockyard.api.deps import user_of
from dockyard.api.errors import INTERNAL_ERROR, STATUS
from dockyard.api.schemas import OperationOut
from dockyard.domain import errors
from dockyard.domain.records import User
from dockyard.services import one_off
from dockyard.services.context import Platform

router = APIRouter(tags=["runs"])

_SIGNALS = frozenset({"SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGKILL"})
_OUTPUT_QUEUE = 64  # messages in flight to a slow client before the container waits


class _BadRequest(errors.InvalidInput):
    pass


def _status(exc: errors.DockyardError) -> int:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 422 if isinstance(exc, errors.ContainerRefused) else 500


def _request(message: Any) -> one_off.RunRequest:
    try:
        body = json.loads(message)
    except (TypeError, ValueError):
        raise _BadRequest("invalid request: the first message must be a JSON object") from None
    if not isinstance(body, dict):
        raise _BadRequest("invalid request: the first message must be a JSON object")
    command, env = body.get("command"), body.get("env", [])
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise _BadRequest("invalid request: command must be a list of strings")
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise _BadRequest("invalid request: env must be a list of KEY=VALUE strings")
    sizes = [body.get("rows", 0), body.get("columns", 0)]
    if not all(isinstance(n, int) and 0 <= n <= 10_000 for n in sizes):
        raise _BadRequest("invalid request: rows and columns must be integers from 0 to 10000")
    return one_off.RunRequest(
        command=tuple(command),
        env=tuple(env),
        tty=bool(body.get("tty", False)),
        stdin=bool(body.get("stdin", False)),
        rows=sizes[0],
        columns=sizes[1],
        detach=bool(body.get("detach", False)),
    )


async def _user(platform: Platform, websocket: WebSocket) -> User:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    return await user_of(platform, token.strip() if scheme.lower() == "bearer" else None)


@router.websocket("/apps/{handle}/run")
async def run_command(websocket: WebSocket, handle: str) -> None:
    platform: Platform = websocket.app.state.platform
    await websocket.accept()
    try:
        user = await _user(platform, websocket)
        first = await websocket.receive()
        if first["type"] == "websocket.disconnect":
            return
        request = _request(first.get("text"))
        started = await run_in_threadpool(one_off.start, platform, user, handle, request)
    except WebSocketDisconnect:
        return
    except errors.DockyardError as exc:
        await _refuse(websocket, _status(exc), exc.kind, exc.message)
        return
    except Exception:
        await _refuse(websocket, 500, "internal", INTERNAL_ERROR)
        raise
    shown = OperationOut.of(started.operation).model_dump(mode="json")
    await websocket.send_json({"kind": "started", "operation": shown})
    if request.detach:
        await websocket.close()
        return
    await _attach(websocket, started)


async def _refuse(websocket: WebSocket, status: int, kind: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_json(
            {"kind": "error", "status": status, "error": kind, "message": message}
        )
        await websocket.close()


async def _attach(websocket: WebSocket, started: one_off.Run) -> None:
    """Stream output out and input in until the command exits or the client goes."""
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes | None] = asyncio.Queue(_OUTPUT_QUEUE)

    pumping: asyncio.Future[None] = loop.create_future()

    def pump() -> None:
        try:
            for stream, data in started.output():
                asyncio.run_coroutine_threadsafe(output.put(bytes([stream]) + data), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(output.put(None), loop).result()
            loop.call_soon_threadsafe(pumping.set_result, None)

    # A thread of its own for as long as the command runs: a pool's threads
    # (the loop's default executor has a handful) would cap the runs at once.
    threading.Thread(target=pump, name=f"run-{started.operation.id}-output", daemon=True).start()
    receiving = asyncio.create_task(_receive(websocket, started))
    try:
        while (chunk := await output.get()) is not None:
            await websocket.send_bytes(chunk)
    except Exception:  # the client went away while we wrote
        receiving.cancel()
        await run_in_threadpool(started.stop, "the client went away")
        await _drain(output, pumping)
        return
    if receiving.done() and not receiving.cancelled() and receiving.result() == "gone":
        await pumping
        return
    receiving.cancel()
    await pumping
    operation = await run_in_threadpool(started.wait_and_finish)
    payload = operation.payload
    end = {
        "kind": "exit",
        "status": payload.get("exit_status"),
        "error": started.error,
        "operation": OperationOut.of(operation).model_dump(mode="json"),
    }
    with contextlib.suppress(Exception):
        await websocket.send_json(end)
        await websocket.close()


async def _drain(output: asyncio.Queue[bytes | None], pumping: asyncio.Future[None]) -> None:
    """Let the pump finish: nobody reads what it still puts."""
    while not pumping.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(output.get(), 0.1)
    await pumping


async def _receive(websocket: WebSocket, started: one_off.Run) -> str:
    """The client's input and controls; ``gone`` when it disconnected."""
    container = started.container
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            await run_in_threadpool(started.stop, "the client went away")
            return "gone"
        data = message.get("bytes")
        if data is not None:
            await run_in_threadpool(container.write, data)
            continue
        try:
            control = json.loads(message.get("text") or "")
        except ValueError:
            continue
        if not isinstance(control, dict):
            continue
        kind = control.get("kind")
        if kind == "eof":
            await run_in_threadpool(container.close_input)
        elif kind == "resize":
            rows, columns = control.get("rows"), control.get("columns")
            if isinstance(rows, int) and isinstance(columns, int):
                await run_in_threadpool(container.resize, rows, columns)
        elif kind == "signal" and control.get("name") in _SIGNALS:
            await run_in_threadpool(container.signal, str(control["name"]))
