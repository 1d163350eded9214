"""Dependencies shared by every route: the platform and the calling user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dockyard.domain import records
from dockyard.services import accounts
from dockyard.services.context import Platform

_bearer = HTTPBearer(auto_error=False)


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_user(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> records.User:
    return accounts.authenticate(platform, credentials.credentials if credentials else None)


CurrentUser = Annotated[records.User, Depends(get_user)]
