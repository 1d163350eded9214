"""An app's configuration: read it, change it (through a ``configure`` operation)."""

from __future__ import annotations

from dockyard.domain import records
from dockyard.domain.configuration import ConfigChange, masked
from dockyard.domain.errors import ConfigKeyNotFound, InvalidConfigArgument
from dockyard.domain.operations import OperationType
from dockyard.domain.releases import HealthCheck
from dockyard.services import apps
from dockyard.services.context import Platform
from dockyard.services.operations import start


def current(
    platform: Platform, user: records.User, handle: str, *, reveal: bool = False
) -> records.ConfigVersion:
    app = apps.find(platform, user, handle)
    config = platform.store.configuration(app.id, app.config_version)
    if reveal:
        return config
    return records.ConfigVersion(
        version=config.version, values=masked(config.values), created_at=config.created_at
    )


def get(
    platform: Platform, user: records.User, handle: str, key: str, *, reveal: bool = False
) -> str:
    values = current(platform, user, handle, reveal=reveal).values
    if key not in values:
        raise ConfigKeyNotFound(handle, key)
    return values[key]


def change(
    platform: Platform, user: records.User, handle: str, change: ConfigChange
) -> records.Operation:
    app = apps.find(platform, user, handle)
    if change.empty:
        raise InvalidConfigArgument("no configuration changes given: pass KEY=VALUE arguments")
    HealthCheck.from_configuration(change.set)  # refuse a bad setting before queueing
    # Checked again when the operation runs: changes queued together may add up.
    platform.limits.check_change(platform.store.configuration(app.id).values, change)
    return start(
        platform,
        app,
        OperationType.CONFIGURE,
        {"set": dict(change.set), "unset": sorted(change.unset)},
        user,
    )


def change_from_payload(payload: dict[str, object]) -> ConfigChange:
    values = payload.get("set") or {}
    unset = payload.get("unset") or []
    assert isinstance(values, dict) and isinstance(unset, list)
    return ConfigChange(set=values, unset=frozenset(unset))


def history(platform: Platform, user: records.User, handle: str) -> list[int]:
    app = apps.find(platform, user, handle)
    return platform.store.config_versions(app.id)
