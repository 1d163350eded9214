"""Request and response bodies; OpenAPI is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from dockyard.domain import records


class ErrorOut(BaseModel):
    error: str
    message: str


class UserIn(BaseModel):
    name: str
    admin: bool = False


class UserOut(BaseModel):
    name: str
    admin: bool
    created_at: datetime

    @classmethod
    def of(cls, user: records.User) -> UserOut:
        return cls(name=user.name, admin=user.is_admin, created_at=user.created_at)


class UserCreated(UserOut):
    token: str


class AppIn(BaseModel):
    handle: str


class AppOut(BaseModel):
    handle: str
    created_at: datetime
    config_version: int
    git_remote: str


class ReleaseOut(BaseModel):
    id: int
    image: str
    source: str
    config_version: int
    services: list[str]


class ContainerOut(BaseModel):
    id: str
    service: str
    index: int
    release: int
    address: str
    port: int
    state: str


class AppDetail(AppOut):
    members: list[str]
    url: str
    release: ReleaseOut | None
    containers: list[ContainerOut]
    registry_hosts: list[str]


class ScaleIn(BaseModel):
    service: str
    container_count: int


class DeployIn(BaseModel):
    docker_image: str | None = None
    git_commitish: str | None = None
    private_registry_username: str | None = None
    private_registry_password: str | None = None
    set: dict[str, str] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)


class GrantIn(BaseModel):
    user: str


class ConfigOut(BaseModel):
    version: int
    values: dict[str, str]
    masked: bool


class ConfigValueOut(BaseModel):
    key: str
    value: str
    masked: bool


class ConfigChangeIn(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)


class OperationOut(BaseModel):
    id: int
    app: str
    type: str
    status: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str
    cancel_requested: bool

    @classmethod
    def of(cls, operation: records.Operation) -> OperationOut:
        return cls(
            id=operation.id,
            app=operation.app_handle,
            type=operation.type.value,
            status=operation.status.value,
            created_by=operation.created_by,
            created_at=operation.created_at,
            started_at=operation.started_at,
            finished_at=operation.finished_at,
            message=operation.message,
            cancel_requested=operation.cancel_requested,
        )


class LogLineOut(BaseModel):
    id: int
    at: datetime
    line: str


class LogEvent(BaseModel):
    """One line of a followed log stream (NDJSON)."""

    kind: Literal["log", "end"]
    id: int | None = None
    at: datetime | None = None
    line: str | None = None
    operation: OperationOut | None = None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
