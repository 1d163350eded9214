"""What the store hands back: plain, immutable views of stored rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dockyard.domain.operations import OperationStatus, OperationType


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class App:
    id: int
    handle: str
    created_at: datetime
    config_version: int
    current_release_id: int | None = None
    scale: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    id: int
    app_id: int | None
    app_handle: str
    type: OperationType
    status: OperationStatus
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str
    cancel_requested: bool
    payload: dict[str, Any]


@dataclass(frozen=True)
class LogLine:
    id: int
    at: datetime
    line: str


@dataclass(frozen=True)
class ConfigVersion:
    version: int
    values: dict[str, str]
    created_at: datetime | None
