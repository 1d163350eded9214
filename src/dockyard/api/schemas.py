"""Request and response bodies; OpenAPI is generated from these.

Every string a request carries is ``Text`` or a stricter kind: no NUL (which
PostgreSQL refuses) and no lone surrogate (which no database can encode). The
JSON Schema of each field states the rule that is enforced, here or by the
domain check named beside it, so the document tells clients the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from dockyard.domain import records
from dockyard.domain.building import validate_commitish
from dockyard.domain.configuration import validate_key
from dockyard.domain.errors import InvalidInput
from dockyard.domain.names import validate_handle, validate_user_name
from dockyard.domain.registries import HOST_PATTERN, validate_host
from dockyard.domain.releases import Release
from dockyard.services.scaling import MAX_CONTAINERS

# The type of a validation error whose message is a domain rule's, shown as it is.
DOMAIN_ERROR = "dockyard"
# Ids are the databases' 64-bit integers: a larger one names nothing and is refused.
MAX_ID = 2**63 - 1


def _plain_text(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("text", "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "text", "not valid Unicode: holds a lone surrogate (such as \\ud800)"
        ) from None
    return value


def _ruled(check: Callable[[str], object]) -> AfterValidator:
    """Validate with a domain rule; its message (which may echo a name) is the answer."""

    def run(value: str) -> str:
        try:
            check(value)
        except InvalidInput as exc:
            raise PydanticCustomError(DOMAIN_ERROR, "{message}", {"message": exc.message}) from None
        return value

    return AfterValidator(run)


def _schema(**keywords: Any) -> Any:
    return Field(json_schema_extra=keywords)


_NO_NUL = "^[^\\x00]*$"

Text = Annotated[str, AfterValidator(_plain_text), _schema(pattern=_NO_NUL)]
Handle = Annotated[
    str,
    _ruled(validate_handle),
    _schema(pattern="^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$", minLength=1, maxLength=63),
]
UserName = Annotated[
    str,
    _ruled(validate_user_name),
    _schema(pattern="^[a-z][a-z0-9._-]{0,62}$", minLength=1, maxLength=63),
]
# Keys are stored in a 255-character column.
ConfigKey = Annotated[
    str,
    _ruled(validate_key),
    _schema(pattern="^[A-Za-z_][A-Za-z0-9_]*$", minLength=1, maxLength=255),
]
# The value's size limit (in UTF-8 bytes) is the domain's, checked after this.
ConfigValue = Text
ConfigValues = Annotated[
    dict[ConfigKey, ConfigValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "minLength": 1,
                "maxLength": 255,
            },
            "additionalProperties": {"type": "string", "pattern": _NO_NUL},
        }
    ),
]
Commitish = Annotated[
    str,
    AfterValidator(_plain_text),
    _schema(pattern="^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$", minLength=1, maxLength=200),
]
ServiceName = Annotated[
    str,
    AfterValidator(_plain_text),
    _schema(pattern="^[a-z][a-z0-9_-]{0,29}$", minLength=1, maxLength=30),
]

# Path and query parameters.
HandlePath = Annotated[Handle, Path(description="The app's handle")]
UserNamePath = Annotated[UserName, Path(description="A user's name")]
ConfigKeyPath = Annotated[ConfigKey, Path(description="A configuration key")]
OperationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The operation's id")]
# Release numbers are 32-bit integers in the store.
MAX_RELEASE_NUMBER = 2**31 - 1
ReleaseNumber = Annotated[
    int, Path(ge=1, le=MAX_RELEASE_NUMBER, description="The release's number")
]
LogLineId = Annotated[int, Query(ge=0, le=MAX_ID, description="Only lines after this log line id")]
TailLines = Annotated[int, Query(ge=0, le=MAX_ID, description="Lines to show first")]


class ErrorOut(BaseModel):
    """Every error answer: a stable code and a message a user can act on."""

    error: str
    message: str


class _In(BaseModel):
    """A request body: strict, so ``0`` is no boolean and ``"1"`` no integer, as the schema says."""

    model_config = ConfigDict(strict=True)


class UserIn(_In):
    name: UserName
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


class AppIn(_In):
    handle: Handle


class AppOut(BaseModel):
    handle: str
    created_at: datetime
    config_version: int
    git_remote: str


class ReleaseOut(BaseModel):
    id: int  # the store's id, as container labels carry it
    number: int  # the app's own numbering, from 1
    image: str
    source: str
    config_version: int
    services: list[str]


class ReleaseSummary(BaseModel):
    """One of an app's releases, as ``releases`` lists them."""

    number: int
    source: str  # as the user wrote it, or git:<short sha> (ref)
    image: str  # pinned to its digest, or a local image id
    digest: str
    config_version: int
    kind: str  # what made it: deploy, configure, restart, scale, rollback
    created_by: str
    created_at: datetime | None
    status: str  # pending, active, failed, retired
    current: bool
    git_commit: str | None
    git_ref: str | None

    @classmethod
    def of(cls, release: Release, current_id: int | None) -> ReleaseSummary:
        return cls(
            number=release.number,
            source=release.source_text(),
            image=release.image,
            digest=release.digest(),
            config_version=release.config_version,
            kind=release.kind,
            created_by=release.created_by,
            created_at=release.created_at,
            status=release.status,
            current=release.id == current_id,
            git_commit=release.source[4:] if release.from_commit else None,
            git_ref=release.git_ref,
        )


class ReleaseDetail(ReleaseSummary):
    services: list[str]
    configuration: dict[str, str]
    masked: bool


class RollbackIn(_In):
    release: Annotated[int, Field(ge=1, le=MAX_RELEASE_NUMBER)] | None = None


class ContainerOut(BaseModel):
    id: str
    service: str
    index: int
    release: int  # the store's id, as the container's label carries it
    release_number: int | None  # the app's number for it
    address: str
    port: int
    state: str


class AppDetail(AppOut):
    members: list[str]
    url: str
    release: ReleaseOut | None
    containers: list[ContainerOut]
    registry_hosts: list[str]


class ScaleIn(_In):
    service: ServiceName
    # The bounds are the domain's (``check_scale``), with its messages.
    container_count: Annotated[int, _schema(minimum=0, maximum=MAX_CONTAINERS)]


class DeployIn(_In):
    docker_image: Text | None = None
    git_commitish: Annotated[Commitish, _ruled(validate_commitish)] | None = None
    private_registry_username: Text | None = None
    private_registry_password: Text | None = None
    set: ConfigValues = Field(default_factory=dict)
    unset: list[ConfigKey] = Field(default_factory=list)


class GrantIn(_In):
    user: UserName


class ConfigOut(BaseModel):
    version: int
    values: dict[str, str]
    masked: bool


class ConfigValueOut(BaseModel):
    key: str
    value: str
    masked: bool


class ConfigChangeIn(_In):
    set: ConfigValues = Field(default_factory=dict)
    unset: list[ConfigKey] = Field(default_factory=list)


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
    # A run's (``dockyard run``) command's exit status, once it has ended.
    exit_status: int | None = None

    @classmethod
    def of(cls, operation: records.Operation) -> OperationOut:
        exit_status = operation.payload.get("exit_status") if operation.type == "run" else None
        return cls(
            exit_status=exit_status if isinstance(exit_status, int) else None,
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


RegistryHost = Annotated[
    str, _ruled(validate_host), _schema(pattern=f"^{HOST_PATTERN}$", minLength=1, maxLength=255)
]


class RegistrySourceIn(_In):
    """A credential source for one registry host; exactly one kind's fields."""

    host: RegistryHost
    app: Handle | None = None
    username: Text | None = None
    password: Text | None = None
    aws_ecr: bool = False
    aws_region: Text | None = None
    aws_access_key_id: Text | None = None
    aws_secret_access_key: Text | None = None
    aws_role_arn: Text | None = None
    aws_endpoint_url: Text | None = None
    credential_helper: Text | None = None
    cache_seconds: int | None = None


class RegistrySourceOut(BaseModel):
    """A source as anyone may see it: never a password, token or secret key."""

    host: str
    kind: str
    scope: str  # "global" or "app"
    app: str | None
    settings: dict[str, str]
    created_by: str
    created_at: datetime | None
    last_fetched_at: datetime | None
    expires_at: datetime | None
    last_error: str
    stored_by_deploy: bool


class RegistryCheckIn(_In):
    app: Handle | None = None
    image: Text | None = None


class RegistryRefreshIn(_In):
    app: Handle | None = None
    host: RegistryHost | None = None


class RegistryFetchOut(BaseModel):
    """What a fetch just now gave: where from, until when, or the source's error."""

    source: RegistrySourceOut
    fetched: str  # "credentials for HOST from ..., fetched 12:03, expire 00:03"
    found: bool
    expires_at: datetime | None
    error: str
    checked: str = ""
    replaced: bool = False


class RegistryRemovedOut(BaseModel):
    source: RegistrySourceOut
    used_by: list[str]


DomainName = Annotated[
    str,
    _schema(
        pattern=r"^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\.?$",
        minLength=3,
        maxLength=254,
    ),
]


class DomainsIn(_In):
    """Names to add; all are added or none."""

    hosts: list[DomainName] = Field(min_length=1, max_length=100)


class DomainsOut(BaseModel):
    app: str
    default: str  # <app>.<domain>, which the app always answers on
    hosts: list[str]
    added: list[str]  # of the hosts asked for, the ones the app did not hold yet


# --- HTTPS certificates ---


class CertificateIn(_In):
    """A certificate (PEM, the leaf first, then its chain) and its private key (PEM)."""

    certificate: str = Field(min_length=1, max_length=65536)
    private_key: str = Field(min_length=1, max_length=65536)
    name: DomainName | None = None  # one of the app's domains; default: all it covers


class CertificateOut(BaseModel):
    name: str
    source: str  # acme | user | local, "" while none is stored
    status: str  # pending | issued | failed | manual | none
    issuer: str
    not_after: datetime | None
    last_error: str
    next_attempt_at: datetime | None


class CertificatesAdded(BaseModel):
    app: str
    names: list[str]


class HttpsIn(_In):
    force_https: bool


class HttpsOut(BaseModel):
    app: str
    force_https: bool
