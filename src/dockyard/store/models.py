"""Tables. Secret values and operation payloads are stored encrypted."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID = BigInteger().with_variant(Integer, "sqlite")


def now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and read back timezone-aware on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class App(Base):
    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    handle: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The configuration version the app runs with; 0 before the first change.
    config_version: Mapped[int] = mapped_column(Integer, default=0)
    # The release serving now; None before the first successful deploy.
    current_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", ondelete="SET NULL", use_alter=True)
    )
    # Containers per service, e.g. {"web": 2}; services not named run one.
    scale: Mapped[str] = mapped_column(Text, default="{}")


class Grant(Base):
    __tablename__ = "grants"

    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class ConfigVersion(Base):
    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("app_id", "version"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    operation_id: Mapped[int | None] = mapped_column(
        ForeignKey("operations.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class ConfigEntry(Base):
    __tablename__ = "config_entries"

    config_version_id: Mapped[int] = mapped_column(
        ForeignKey("config_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Ciphertext when ``secret``; plain text otherwise.
    value: Mapped[str] = mapped_column(Text)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)


class Operation(Base):
    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_app_status", "app_id", "status"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="SET NULL"))
    app_handle: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Encrypted JSON: a payload may carry secret configuration values.
    payload: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(64))


class OperationLog(Base):
    __tablename__ = "operation_logs"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    line: Mapped[str] = mapped_column(Text)


class Worker(Base):
    """A server process that runs operations; its heartbeat shows it is alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (Index("uq_releases_app_number", "app_id", "number", unique=True),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    # The app's own numbering, from 1: what users see and name.
    number: Mapped[int] = mapped_column(Integer, server_default="0")
    # What made it: the type of the operation that created it.
    kind: Mapped[str] = mapped_column(String(16), server_default="deploy")
    # The branch pushed or the commitish deployed, for a release built from a commit.
    git_ref: Mapped[str | None] = mapped_column(Text)
    operation_id: Mapped[int | None] = mapped_column(
        ForeignKey("operations.id", ondelete="SET NULL")
    )
    # Pinned by digest: host/repository@sha256:...
    image: Mapped[str] = mapped_column(Text)
    # The reference the user gave, to pull "the current image again" later.
    source: Mapped[str] = mapped_column(Text)
    config_version: Mapped[int] = mapped_column(Integer)
    services: Mapped[str] = mapped_column(Text)  # JSON: [{"name":..., "command":...}]
    status: Mapped[str] = mapped_column(String(16))  # pending, active, failed, retired
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class RegistryCredential(Base):
    """Credentials an app's deploys use for one registry host."""

    __tablename__ = "registry_credentials"

    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    password: Mapped[str] = mapped_column(Text)  # encrypted
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Setting(Base):
    """Facts about this installation, e.g. its id (shared by all its processes)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RegistrySource(Base):
    """Where one registry host's credentials come from, for one app or for all (global)."""

    __tablename__ = "registry_sources"
    # One source per scope and host; ``scope`` is the app's id, or 0 for global
    # (a unique index over a NULL app_id would let globals repeat).
    __table_args__ = (UniqueConstraint("scope", "host"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    scope: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    app_id: Mapped[int | None] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    host: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    settings: Mapped[str] = mapped_column(Text)  # JSON, nothing secret
    secrets: Mapped[str] = mapped_column(Text)  # encrypted JSON
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Domain(Base):
    """A host name an app answers on besides ``<app>.<domain>``; one app holds each."""

    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(253), unique=True)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Certificate(Base):
    """The TLS certificate of one name: an app's domain, or a platform name (no app)."""

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    app_id: Mapped[int | None] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(16))  # acme | user | local
    chain: Mapped[str] = mapped_column(Text, default="")  # PEM, leaf first; public
    key: Mapped[str] = mapped_column(Text, default="")  # encrypted PEM
    issuer: Mapped[str] = mapped_column(Text, default="")
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    last_error: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class AppHttps(Base):
    """An app's HTTPS preferences: whether plain HTTP is redirected (308)."""

    __tablename__ = "app_https"

    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    force_https: Mapped[bool] = mapped_column(Boolean, default=False)
