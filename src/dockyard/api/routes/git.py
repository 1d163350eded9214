"""Smart HTTP for ``git push`` and ``git fetch``; the API token is the password."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.schemas import OperationOut
from dockyard.domain import records
from dockyard.domain.errors import NotFound, Unauthorized
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


@router.api_route("/git/{repository}/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def git_http(repository: str, path: str, request: Request, platform: PlatformDep) -> Response:
    if not repository.endswith(".git"):
        return Response("not a git repository\n", 404)
    handle = repository.removesuffix(".git")
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

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk

    answer = await http_backend(
        root=git.root,
        path_info=f"/{repository}/{path}",
        method=request.method,
        query=request.url.query,
        headers=request.headers,
        body=body(),
        environment={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(git.root),
            # For the push hook: it acts for the pushing user, through the API.
            "DOCKYARD_URL": platform.internal_url,
            "DOCKYARD_TOKEN": token,
            "DOCKYARD_APP": handle,
        },
    )
    return StreamingResponse(answer.body, answer.status, headers=dict(answer.headers))


@router.post("/apps/{handle}/git-deploys", status_code=202)
async def git_deploy(
    handle: str,
    request: Request,
    platform: PlatformDep,
    user: CurrentUser,
    commit: Annotated[str, Query()],
    branch: Annotated[str, Query()],
) -> OperationOut:
    """Deploy a pushed commit; the body is its tree as a tar (what the hook sends)."""
    archive = await request.body()
    operation = await run_in_threadpool(
        lambda: releases.start_git_push(
            platform, user, handle, commit=commit, branch=branch, archive=archive
        )
    )
    return OperationOut.of(operation)
