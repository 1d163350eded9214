"""Apps: create, list, show, grant and revoke, deprovision."""

from __future__ import annotations

from dockyard.domain import records
from dockyard.domain.errors import AppNotFound
from dockyard.domain.names import validate_handle
from dockyard.domain.operations import OperationType
from dockyard.services import accounts
from dockyard.services.context import Platform
from dockyard.services.operations import start


def find(platform: Platform, user: records.User, handle: str) -> records.App:
    """The app, or ``AppNotFound`` when it is missing *or* not the user's."""
    app = platform.store.find_app(handle, user)
    if app is None:
        raise AppNotFound(handle)
    return app


def create(platform: Platform, user: records.User, handle: str) -> records.App:
    app = platform.store.create_app(validate_handle(handle), user)
    if platform.repositories is not None:
        platform.repositories.remove(handle)  # a deprovisioned namesake's code is gone
        platform.repositories.ensure(handle)
    return app


def list_visible(platform: Platform, user: records.User) -> list[records.App]:
    return platform.store.list_apps(user)


def deprovision(platform: Platform, user: records.User, handle: str) -> records.Operation:
    app = find(platform, user, handle)
    return start(platform, app, OperationType.DEPROVISION, {}, user)


def grant(platform: Platform, actor: records.User, handle: str, user_name: str) -> None:
    app = find(platform, actor, handle)
    accounts.require_admin(actor)
    platform.store.grant(app, accounts.find_user(platform, user_name))


def revoke(platform: Platform, actor: records.User, handle: str, user_name: str) -> None:
    app = find(platform, actor, handle)
    accounts.require_admin(actor)
    platform.store.revoke(app, accounts.find_user(platform, user_name))


def members(platform: Platform, app: records.App) -> list[str]:
    return platform.store.members(app)
