"""Names users choose: app handles (DNS labels) and user names."""

from __future__ import annotations

import re

from dockyard.domain.errors import InvalidHandle, InvalidUserName

_HANDLE = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_USER = re.compile(r"[a-z][a-z0-9._-]{0,62}")


def validate_handle(handle: str) -> str:
    """Return ``handle`` if it is a DNS label, else raise ``InvalidHandle``.

    Bad names are rejected, never silently cleaned: the handle becomes a host
    name (``<app>.<domain>``) and a git remote path.
    """
    if not _HANDLE.fullmatch(handle):
        raise InvalidHandle(handle)
    return handle


def validate_user_name(name: str) -> str:
    if not _USER.fullmatch(name):
        raise InvalidUserName(name)
    return name
