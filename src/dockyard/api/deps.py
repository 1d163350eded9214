"""Dependencies shared by every route: the platform and the calling user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from dockyard.domain import records
from dockyard.domain.errors import InvalidInput
from dockyard.services import accounts
from dockyard.services.context import Platform

_bearer = HTTPBearer(auto_error=False)


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def get_user(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> records.User:
    return await user_of(platform, credentials.credentials if credentials else None)


async def user_of(platform: Platform, token: str | None) -> records.User:
    """The token's user; async, with a cache in front of the store: no thread hop on
    the hot path. Requests (``get_user``) and WebSockets (``run``) both ask here."""
    user = accounts.cached_user(platform, token)
    if user is not None:
        return user
    return await run_in_threadpool(accounts.authenticate, platform, token)


CurrentUser = Annotated[records.User, Depends(get_user)]


async def refuse_nul(request: HTTPConnection) -> None:
    """No NUL in a path or query: no name holds one, and PostgreSQL refuses them.

    An ``HTTPConnection``, not a ``Request``: WebSocket routes (``run``) get it too.
    """
    query = request.query_params.multi_items()
    if "\x00" in request.url.path or any("\x00" in k + v for k, v in query):
        raise InvalidInput("invalid request: the URL contains a NUL character (%00)")
