"""Request bodies, bounded: JSON bodies by a middleware, uploads spooled to disk.

A JSON body above the server's limit is answered 413 before it is parsed: at
once from its ``Content-Length``, or as soon as a chunked body passes the
limit. Git pushes and git-deploy archives are larger by nature; their routes
spool them to a private file in the data directory with ``spool``, which
stops at the first byte beyond their own limit. Neither ever holds more
than a small buffer of a body in memory.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.domain.errors import InvalidInput
from dockyard.domain.limits import TooLarge, human

# Routes that bound (and stream) their bodies themselves.
_SPOOLED = re.compile(r"/git/.*|/apps/[^/]+/git-deploys")
_WRITE_BYTES = 1024 * 1024
_READ_BYTES = 256 * 1024


class BodyLimit:
    """ASGI middleware: refuse a request body above ``limit`` bytes with 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _SPOOLED.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None:
            # The server never passes on more than Content-Length announces.
            if length.strip().isdigit() and int(length) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            await self.app(scope, receive, send)
            return
        # Chunked: take the body in up to the limit, then hand it on.
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(scope, receive, send)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "error": TooLarge.kind,
                "message": f"the request body is larger than the limit of {human(self.limit)}",
            },
            413,
            # The rest of the body is never read: the connection cannot be reused.
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


async def spool(request: Request, directory: Path, limit: int, what: str) -> Path:
    """Write the request's body to a new 0600 file in ``directory``; return its path.

    Raises ``TooLarge`` (and removes the file) at the first byte beyond ``limit``.
    """
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} is larger than the limit of {human(limit)}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"upload-{uuid.uuid4().hex}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            pending = bytearray()
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise TooLarge(f"{what} is larger than the limit of {human(limit)}")
                pending += chunk
                if len(pending) >= _WRITE_BYTES:
                    await anyio.to_thread.run_sync(file.write, pending)
                    pending.clear()
            if pending:
                await anyio.to_thread.run_sync(file.write, pending)
    except ClientDisconnect:
        path.unlink(missing_ok=True)
        raise InvalidInput(f"the connection closed before {what} was complete") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def read_file(path: Path, *, remove: bool = False) -> AsyncIterator[bytes]:
    """A spooled body, chunk by chunk, read off the event loop.

    With ``remove``, the file's name is gone at once: whatever happens to the
    request, nothing is left on disk once the file is closed.
    """
    file = path.open("rb")
    if remove:
        path.unlink()

    async def chunks() -> AsyncIterator[bytes]:
        with file:
            while chunk := await anyio.to_thread.run_sync(file.read, _READ_BYTES):
                yield chunk

    return chunks()
