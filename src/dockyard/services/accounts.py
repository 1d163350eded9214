"""Users, API tokens and the admin created at first start."""

from __future__ import annotations

import time

from dockyard.crypto.keys import hash_token, new_token
from dockyard.domain import records
from dockyard.domain.errors import (
    AdminRequired,
    InvalidInput,
    InvalidToken,
    UserExists,
    UserNotFound,
)
from dockyard.domain.names import validate_user_name
from dockyard.domain.watching import SYSTEM_USER
from dockyard.services.context import Platform

TOKEN_CACHE_SECONDS = 10.0


def cached_user(platform: Platform, token: str | None) -> records.User | None:
    """The token's user if this process checked it in the last few seconds."""
    if not token:
        return None
    hit = platform.token_cache.get(token)
    if hit is None or hit[1] < time.monotonic():
        return None
    return hit[0]


def authenticate(platform: Platform, token: str | None) -> records.User:
    if not token:
        raise InvalidToken()
    user = cached_user(platform, token)
    if user is not None:
        return user
    user = platform.store.user_for_token(hash_token(token))
    if user is None:
        raise InvalidToken()
    if len(platform.token_cache) > 10_000:
        platform.token_cache.clear()
    platform.token_cache[token] = (user, time.monotonic() + TOKEN_CACHE_SECONDS)
    return user


def require_admin(user: records.User) -> None:
    if not user.is_admin:
        raise AdminRequired()


def create_user(
    platform: Platform, actor: records.User, name: str, *, is_admin: bool = False
) -> tuple[records.User, str]:
    """Create a user and return it with its token, the only time it is shown."""
    require_admin(actor)
    validate_user_name(name)
    if name == SYSTEM_USER:
        raise InvalidInput(
            f"{name!r} names the platform itself (it starts automatic rollbacks): choose another"
        )
    token = new_token()
    user = platform.store.create_user(name, is_admin=is_admin, token_hash=hash_token(token))
    return user, token


def list_users(platform: Platform, actor: records.User) -> list[records.User]:
    require_admin(actor)
    return platform.store.list_users()


def find_user(platform: Platform, name: str) -> records.User:
    user = platform.store.find_user(name)
    if user is None:
        raise UserNotFound(name)
    return user


def bootstrap_admin(platform: Platform) -> str | None:
    """Create the ``admin`` user on an empty database; return its token."""
    if platform.store.count_users():
        return None
    token = new_token()
    try:
        platform.store.create_user("admin", is_admin=True, token_hash=hash_token(token))
    except UserExists:  # another server process sharing the database was first
        return None
    return token
