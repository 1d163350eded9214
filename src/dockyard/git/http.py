"""Smart HTTP through git's own CGI program, ``git http-backend``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]


async def http_backend(
    *,
    root: Path,
    path_info: str,
    method: str,
    query: str,
    headers: Mapping[str, str],
    body: AsyncIterator[bytes],
    environment: Mapping[str, str],
) -> CgiResponse:
    """Run ``git http-backend`` for one request and stream its answer."""
    env = {
        **environment,
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "CONTENT_TYPE": headers.get("content-type", ""),
        "REMOTE_ADDR": "127.0.0.1",
    }
    for header, variable in (
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-length", "CONTENT_LENGTH"),
    ):
        if header in headers:
            env[variable] = headers[header]
    process = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    # The program may stop reading (and exit) before the whole body is sent.
    gone = (BrokenPipeError, ConnectionResetError, RuntimeError)

    async def feed() -> None:
        try:
            async for chunk in body:
                if chunk:
                    stdin.write(chunk)
                    await stdin.drain()
        except gone:
            pass
        finally:
            with contextlib.suppress(*gone):
                stdin.close()

    feeding = asyncio.create_task(feed())
    status, response_headers = 200, []
    while True:
        line = (await stdout.readline()).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            response_headers.append((name.strip(), value.strip()))

    async def stream() -> AsyncIterator[bytes]:
        try:
            while chunk := await stdout.read(65536):
                yield chunk
        finally:
            await feeding
            await process.wait()

    return CgiResponse(status, response_headers, stream())
