"""Smart HTTP for ``git push`` and ``git fetch``; the API token is the password."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.limits import read_file, spool
from dockyard.api.schemas import OperationOut
from dockyard.domain import records
from dockyard.domain.errors import InvalidHandle, NotFound, Unauthorized
from dockyard.domain.names import validate_handle
from dockyard.git.http import http_backend
from dockyard.services import accounts, apps, releases
from dockyard.services.context import Platform

router = APIRouter(tags=["git"])

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Dockyard"'}


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().partition(":")[2] or None
        except ValueError:
            return None
    if scheme.lower() == "bearer":
        return value or None
    return None


def _member(platform: Platform, token: str | None, repository: str) -> records.User:
    user = accounts.authenticate(platform, token)
    apps.find(platform, user, repository.removesuffix(".git"))
    return user


# What ``git http-backend`` serves, in canonical form only: no ``..``, no ``//``.
_GIT_PATH = re.compile(
    r"info/refs|HEAD|git-upload-pack|git-receive-pack"
    r"|objects/info/(?:alternates|http-alternates|packs)"
    r"|objects/[0-9a-f]{2}/[0-9a-f]{38,62}"
    r"|objects/pack/pack-[0-9a-f]{40,64}\.(?:pack|idx)"
)


def _is_handle(name: str) -> bool:
    try:
        validate_handle(name)
    except InvalidHandle:
        return False
    return True


@router.api_route("/git/{repository}/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def git_http(repository: str, path: str, request: Request, platform: PlatformDep) -> Response:
    handle = repository.removesuffix(".git")
    if not repository.endswith(".git") or not _is_handle(handle):
        return Response(f"not a Dockyard git repository: /git/{repository}\n", 404)
    if not _GIT_PATH.fullmatch(path):
        return Response(f"not a git path: {path!r} (in /git/{repository}/)\n", 404)
    token = _token(request)
    try:
        await run_in_threadpool(_member, platform, token, repository)
    except Unauthorized as exc:
        return Response(exc.message + "\n", 401, headers=_CHALLENGE)
    except NotFound:
        return Response(f"repository {repository} not found\n", 404)
    assert token is not None
    git = platform.git()
    await run_in_threadpool(git.ensure, handle)
    limit = platform.limits.archive_bytes
    # The body goes to disk first, bounded: git is not run for a push over the limit.
    headers = {k: v for k, v in request.headers.items() if k != "transfer-encoding"}
    body = _nothing()
    if request.method == "POST":
        spooled = await spool(request, platform.builds_dir, limit, "the push")
        headers["content-length"] = str(spooled.stat().st_size)
        body = read_file(spooled, remove=True)
    answer = await http_backend(
        root=git.root,
        path_info=f"/{repository}/{path}",
        method=request.method,
        query=request.url.query,
        headers=headers,
        body=body,
        environment={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(git.root),
            # For the push hook: it acts for the pushing user, through the API.
            "DOCKYARD_URL": platform.internal_url,
            "DOCKYARD_TOKEN": token,
            "DOCKYARD_APP": handle,
            # receive-pack refuses a pack that inflates beyond the limit too.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "receive.maxInputSize",
            "GIT_CONFIG_VALUE_0": str(limit),
        },
    )
    return StreamingResponse(answer.body, answer.status, headers=dict(answer.headers))


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


@router.post("/apps/{handle}/git-deploys", status_code=202)
async def git_deploy(
    handle: str,
    request: Request,
    platform: PlatformDep,
    user: CurrentUser,
    commit: Annotated[str, Query()],
    branch: Annotated[str, Query()],
) -> OperationOut:
    """Deploy a pushed commit; the body is its tree as a tar (what the hook sends).

    The tar may be gzip-compressed. It is streamed to disk, never held in
    memory, and refused (413) at the first byte beyond the server's limit, or
    when it would unpack beyond its limits of size and entries.
    """
    await run_in_threadpool(releases.git_push_target, platform, user, handle, commit)
    archive = await spool(
        request, platform.builds_dir, platform.limits.archive_bytes, "the git-deploy body"
    )
    operation = await run_in_threadpool(
        lambda: releases.start_git_push(
            platform, user, handle, commit=commit, branch=branch, archive=archive
        )
    )
    return OperationOut.of(operation)
