"""The store: every query Dockyard makes, as methods that return domain records."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from dockyard.domain import records
from dockyard.domain.certificates import ACME as CERT_ACME
from dockyard.domain.certificates import FAILED as CERT_FAILED
from dockyard.domain.certificates import ISSUED as CERT_ISSUED
from dockyard.domain.certificates import MANUAL as CERT_MANUAL
from dockyard.domain.certificates import PENDING as CERT_PENDING
from dockyard.domain.certificates import WILDCARD_NEEDS_USER, Certificate, Issued
from dockyard.domain.configuration import is_secret
from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.domains import DomainTaken, TooManyDomains
from dockyard.domain.errors import HandleTaken, UserExists
from dockyard.domain.limits import TooManyQueued
from dockyard.domain.operations import OperationStatus, OperationType
from dockyard.domain.ports import Cipher
from dockyard.domain.registries import NewSource, Source, SourceKind
from dockyard.domain.releases import Release, Service
from dockyard.domain.text import plain
from dockyard.domain.watching import SYSTEM_USER
from dockyard.store import models
from dockyard.store.database import make_engine, migrate
from dockyard.store.models import now

HEARTBEAT_STALE_AFTER = timedelta(seconds=15)
_UNFINISHED = (OperationStatus.QUEUED.value, OperationStatus.RUNNING.value)

# Runnable: queued, and first among its app's unfinished operations. Built
# once: building it (and its cache key) costs more than running it.
_earlier = aliased(models.Operation)
_CLAIMABLE = (
    select(models.Operation.id)
    .where(
        models.Operation.status == OperationStatus.QUEUED.value,
        ~exists().where(
            _earlier.app_id == models.Operation.app_id,
            _earlier.status.in_(_UNFINISHED),
            _earlier.id < models.Operation.id,
            # One-off runs are recorded as operations but are no part of the queue.
            _earlier.type != OperationType.RUN.value,
        ),
    )
    .order_by(models.Operation.id)
    .limit(8)
    .with_for_update(skip_locked=True)
)
_APP_COLUMNS = (
    models.App.id,
    models.App.handle,
    models.App.created_at,
    models.App.config_version,
    models.App.current_release_id,
    models.App.scale,
)


def _user(row: models.User) -> records.User:
    return records.User(id=row.id, name=row.name, is_admin=row.is_admin, created_at=row.created_at)


def _app(row: models.App) -> records.App:
    return records.App(
        id=row.id,
        handle=row.handle,
        created_at=row.created_at,
        config_version=row.config_version,
        current_release_id=row.current_release_id,
        scale=json.loads(row.scale or "{}"),
    )


def _release(row: models.Release, created_by: str | None = None) -> Release:
    return Release(
        id=row.id,
        app_id=row.app_id,
        image=row.image,
        source=row.source,
        config_version=row.config_version,
        services=tuple(Service(s["name"], s["command"]) for s in json.loads(row.services)),
        status=row.status,
        number=row.number,
        kind=row.kind,
        git_ref=row.git_ref,
        created_at=row.created_at,
        created_by=created_by or "",
    )


# A release with the name of who started the operation that made it.
_RELEASE_WITH_CREATOR = select(models.Release, models.Operation.created_by).outerjoin(
    models.Operation, models.Operation.id == models.Release.operation_id
)


class Store:
    def __init__(self, url: str, cipher: Cipher) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._cipher = cipher
        self._reader_engine = make_engine(url)
        self._writer_engine = (
            make_engine(url, writer=True) if self.dialect == "sqlite" else self._reader_engine
        )
        self._reader = sessionmaker(self._reader_engine, expire_on_commit=False)
        self._writer = sessionmaker(self._writer_engine, expire_on_commit=False)
        # Bumped after every write of this process that may change what
        # GET /apps shows. With SQLite this process is the only writer, so an
        # unchanged generation means an unchanged app list.
        self.generation = 0

    @property
    def single_writer(self) -> bool:
        return self.dialect == "sqlite"

    def migrate(self) -> None:
        migrate(self._writer_engine)

    def close(self) -> None:
        self._reader_engine.dispose()
        self._writer_engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def _write(self, *, changes_apps: bool = True) -> Iterator[Session]:
        try:
            with self._writer() as session, session.begin():
                yield session
        finally:
            if changes_apps:
                self.generation += 1

    def installation_id(self) -> str:
        """This installation's id, made at first start and shared by its processes."""
        try:
            with self._write() as s:
                row = s.get(models.Setting, "installation_id")
                if row is None:
                    row = models.Setting(key="installation_id", value=uuid.uuid4().hex[:12])
                    s.add(row)
                return row.value
        except IntegrityError:  # another process made it first: use theirs
            return self.installation_id()

    # users and tokens

    def count_users(self) -> int:
        with self._read() as s:
            return s.scalar(select(func.count(models.User.id))) or 0

    def create_user(self, name: str, *, is_admin: bool, token_hash: str) -> records.User:
        try:
            with self._write(changes_apps=False) as s:
                if s.scalar(select(models.User.id).where(models.User.name == name)):
                    raise UserExists(name)
                user = models.User(name=name, is_admin=is_admin, created_at=now())
                s.add(user)
                s.flush()
                s.add(models.ApiToken(user_id=user.id, token_hash=token_hash, created_at=now()))
                return _user(user)
        except IntegrityError as exc:
            raise UserExists(name) from exc

    def user_for_token(self, token_hash: str) -> records.User | None:
        with self._read() as s:
            row = s.scalar(
                select(models.User)
                .join(models.ApiToken, models.ApiToken.user_id == models.User.id)
                .where(models.ApiToken.token_hash == token_hash)
            )
            return _user(row) if row else None

    def find_user(self, name: str) -> records.User | None:
        with self._read() as s:
            row = s.scalar(select(models.User).where(models.User.name == name))
            return _user(row) if row else None

    def list_users(self) -> list[records.User]:
        with self._read() as s:
            return [_user(r) for r in s.scalars(select(models.User).order_by(models.User.name))]

    # apps and grants

    def create_app(self, handle: str, creator: records.User) -> records.App:
        try:
            with self._write() as s:
                if s.scalar(select(models.App.id).where(models.App.handle == handle)):
                    raise HandleTaken(handle)
                app = models.App(handle=handle, created_by_id=creator.id, created_at=now())
                s.add(app)
                s.flush()
                if not creator.is_admin:
                    s.add(models.Grant(app_id=app.id, user_id=creator.id))
                return _app(app)
        except IntegrityError as exc:
            raise HandleTaken(handle) from exc

    @staticmethod
    def _visible_apps(user: records.User) -> Any:
        query = select(models.App)
        if not user.is_admin:
            query = query.join(models.Grant, models.Grant.app_id == models.App.id).where(
                models.Grant.user_id == user.id
            )
        return query

    def find_app(self, handle: str, user: records.User) -> records.App | None:
        """The app, if it exists and ``user`` may see it."""
        with self._read() as s:
            row = s.scalar(self._visible_apps(user).where(models.App.handle == handle))
            return _app(row) if row else None

    def find_app_by_id(self, app_id: int) -> records.App | None:
        with self._read() as s:
            row = s.get(models.App, app_id)
            return _app(row) if row else None

    def can_see_app(self, app_id: int, user: records.User) -> bool:
        with self._read() as s:
            return s.scalar(self._visible_apps(user).where(models.App.id == app_id)) is not None

    def list_apps(self, user: records.User) -> list[records.App]:
        # Plain columns, not ORM objects: this is the API's busiest read.
        query = select(*_APP_COLUMNS).order_by(models.App.handle)
        if not user.is_admin:
            query = query.join(models.Grant, models.Grant.app_id == models.App.id).where(
                models.Grant.user_id == user.id
            )
        with self._read() as s:
            return [
                records.App(
                    id=row.id,
                    handle=row.handle,
                    created_at=row.created_at,
                    config_version=row.config_version,
                    current_release_id=row.current_release_id,
                    scale=json.loads(row.scale or "{}"),
                )
                for row in s.execute(query)
            ]

    def delete_app(self, app_id: int) -> None:
        with self._write() as s:
            s.execute(delete(models.App).where(models.App.id == app_id))

    def grant(self, app: records.App, user: records.User) -> None:
        with self._write() as s:
            s.merge(models.Grant(app_id=app.id, user_id=user.id))

    def revoke(self, app: records.App, user: records.User) -> None:
        with self._write() as s:
            s.execute(
                delete(models.Grant).where(
                    models.Grant.app_id == app.id, models.Grant.user_id == user.id
                )
            )

    def members(self, app: records.App) -> list[str]:
        with self._read() as s:
            rows = s.scalars(
                select(models.User.name)
                .join(models.Grant, models.Grant.user_id == models.User.id)
                .where(models.Grant.app_id == app.id)
                .order_by(models.User.name)
            )
            return list(rows)

    # configuration

    def configuration(self, app_id: int, version: int | None = None) -> records.ConfigVersion:
        """A version of the app's configuration (the current one by default)."""
        with self._read() as s:
            return self._configuration(s, app_id, version)

    def _configuration(self, s: Session, app_id: int, version: int | None) -> records.ConfigVersion:
        if version is None:
            version = s.scalar(select(models.App.config_version).where(models.App.id == app_id))
        if not version:
            return records.ConfigVersion(version=0, values={}, created_at=None)
        row = s.scalar(
            select(models.ConfigVersion).where(
                models.ConfigVersion.app_id == app_id, models.ConfigVersion.version == version
            )
        )
        if row is None:
            return records.ConfigVersion(version=0, values={}, created_at=None)
        entries = s.scalars(
            select(models.ConfigEntry).where(models.ConfigEntry.config_version_id == row.id)
        )
        values = {e.key: self._cipher.decrypt(e.value) if e.secret else e.value for e in entries}
        return records.ConfigVersion(version=version, values=values, created_at=row.created_at)

    def config_versions(self, app_id: int) -> list[int]:
        with self._read() as s:
            rows = s.scalars(
                select(models.ConfigVersion.version)
                .where(models.ConfigVersion.app_id == app_id)
                .order_by(models.ConfigVersion.version)
            )
            return list(rows)

    def save_configuration(
        self, app_id: int, values: dict[str, str], operation_id: int | None
    ) -> int:
        """Store ``values`` as the app's next version and make it current."""
        with self._write() as s:
            version = self._add_version(s, app_id, values, operation_id)
            s.execute(
                update(models.App).where(models.App.id == app_id).values(config_version=version)
            )
            return version

    @staticmethod
    def _current_version(s: Session, app_id: int) -> int:
        return s.scalar(select(models.App.config_version).where(models.App.id == app_id)) or 0

    def _add_version(
        self, s: Session, app_id: int, values: dict[str, str], operation_id: int | None
    ) -> int:
        latest = s.scalar(
            select(func.max(models.ConfigVersion.version)).where(
                models.ConfigVersion.app_id == app_id
            )
        )
        version = (latest or 0) + 1
        row = models.ConfigVersion(
            app_id=app_id, version=version, operation_id=operation_id, created_at=now()
        )
        s.add(row)
        s.flush()
        s.add_all(
            models.ConfigEntry(
                config_version_id=row.id,
                key=key,
                value=self._cipher.encrypt(value) if is_secret(key) else value,
                secret=is_secret(key),
            )
            for key, value in values.items()
        )
        return version

    # operations

    def _operation(self, row: models.Operation) -> records.Operation:
        return records.Operation(
            id=row.id,
            app_id=row.app_id,
            app_handle=row.app_handle,
            type=OperationType(row.type),
            status=OperationStatus(row.status),
            created_by=row.created_by,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            message=row.message,
            cancel_requested=row.cancel_requested,
            payload=json.loads(self._cipher.decrypt(row.payload)),
        )

    def enqueue(
        self,
        app: records.App,
        type: OperationType,
        payload: dict[str, Any],
        user: records.User,
        *,
        queue_limit: int | None = None,
    ) -> records.Operation:
        """Queue an operation; refuse it if the app already has ``queue_limit`` queued."""
        sealed = self._cipher.encrypt(json.dumps(payload))  # before the write lock is taken
        with self._write(changes_apps=False) as s:
            if queue_limit is not None:
                # The app's row lock orders concurrent enqueues on PostgreSQL;
                # SQLite's writer transactions are serial already.
                s.execute(select(models.App.id).where(models.App.id == app.id).with_for_update())
                queued = s.scalar(
                    select(func.count(models.Operation.id)).where(
                        models.Operation.app_id == app.id,
                        models.Operation.status == OperationStatus.QUEUED.value,
                    )
                )
                if queued is not None and queued >= queue_limit:
                    raise TooManyQueued(app.handle, queued, queue_limit)
            row = _new_operation(s, app, type, OperationStatus.QUEUED, user.id, user.name, sealed)
            return self._operation(row)

    def record_run(
        self, app: records.App, payload: dict[str, Any], user: records.User, worker_id: str
    ) -> records.Operation:
        """Record a one-off run as running now, outside the app's queue.

        It carries ``worker_id`` (a worker of the process that runs it), so
        that a server that dies with runs going has them marked interrupted.
        """
        sealed = self._cipher.encrypt(json.dumps(payload))
        with self._write(changes_apps=False) as s:
            row = _new_operation(
                s, app, OperationType.RUN, OperationStatus.RUNNING, user.id, user.name, sealed,
                started=True, worker_id=worker_id or None,
            )  # fmt: skip
            return self._operation(row)

    def record_recovery(self, app: records.App, line: str) -> records.Operation:
        """A ``recover`` operation, finished as it is made: the platform restarted a container."""
        sealed = self._cipher.encrypt("{}")
        with self._write(changes_apps=False) as s:
            row = _new_operation(
                s, app, OperationType.RECOVER, OperationStatus.SUCCEEDED, None, SYSTEM_USER,
                sealed, started=True, finished=True, message=line,
            )  # fmt: skip
            s.add(models.OperationLog(operation_id=row.id, line=line, at=row.created_at))
            return self._operation(row)

    def finish_run(
        self, operation_id: int, status: OperationStatus, message: str, exit_status: int | None
    ) -> None:
        """End a run's operation, keeping its command's exit status with it."""
        with self._write(changes_apps=False) as s:
            row = s.get(models.Operation, operation_id, with_for_update=True)
            if row is None or row.status != OperationStatus.RUNNING.value:
                return  # marked interrupted meanwhile
            payload = json.loads(self._cipher.decrypt(row.payload))
            payload["exit_status"] = exit_status
            row.payload = self._cipher.encrypt(json.dumps(payload))
            row.status = status.value
            row.message = message
            row.finished_at = now()

    def get_operation(self, operation_id: int) -> records.Operation | None:
        with self._read() as s:
            row = s.get(models.Operation, operation_id)
            return self._operation(row) if row else None

    def list_operations(self, app_id: int, limit: int = 100) -> list[records.Operation]:
        with self._read() as s:
            rows = s.scalars(
                select(models.Operation)
                .where(models.Operation.app_id == app_id)
                .order_by(models.Operation.id.desc())
                .limit(limit)
            )
            return [self._operation(r) for r in rows]

    def operation_logs(self, operation_id: int, after: int = 0) -> list[records.LogLine]:
        with self._read() as s:
            rows = s.scalars(
                select(models.OperationLog)
                .where(
                    models.OperationLog.operation_id == operation_id,
                    models.OperationLog.id > after,
                )
                .order_by(models.OperationLog.id)
            )
            return [records.LogLine(id=r.id, at=r.at, line=r.line) for r in rows]

    def operation_with_logs(
        self, operation_id: int, after: int = 0
    ) -> tuple[records.Operation | None, list[records.LogLine]]:
        """The operation as it is now and its log lines after ``after``, in one read."""
        with self._read() as s:
            row = s.get(models.Operation, operation_id)
            lines = s.scalars(
                select(models.OperationLog)
                .where(
                    models.OperationLog.operation_id == operation_id,
                    models.OperationLog.id > after,
                )
                .order_by(models.OperationLog.id)
            )
            logs = [records.LogLine(id=r.id, at=r.at, line=r.line) for r in lines]
            return (self._operation(row) if row else None), logs

    def append_log(self, operation_id: int, line: str) -> None:
        """One line of the operation's log, without terminal escapes (``domain.text``)."""
        with self._write(changes_apps=False) as s:
            s.add(models.OperationLog(operation_id=operation_id, line=plain(line), at=now()))

    def claim_next(self, worker_id: str) -> records.Operation | None:
        """Mark the oldest runnable operation as running by ``worker_id``.

        Runnable: queued, and first among its app's unfinished operations, so
        an app's operations run one at a time in the order they were made.
        Several workers (threads or processes) may claim at once: ``SKIP
        LOCKED`` lets each pass over rows another is claiming, and the
        conditional update makes a claim count only once.
        """
        with self._write(changes_apps=False) as s:
            candidates = s.scalars(_CLAIMABLE).all()
            for operation_id in candidates:
                claimed = s.execute(
                    update(models.Operation)
                    .where(
                        models.Operation.id == operation_id,
                        models.Operation.status == OperationStatus.QUEUED.value,
                    )
                    .values(
                        status=OperationStatus.RUNNING.value,
                        started_at=now(),
                        worker_id=worker_id,
                    )
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    row = s.get(models.Operation, operation_id)
                    assert row is not None
                    s.refresh(row)
                    return self._operation(row)
            return None

    def finish(self, operation_id: int, status: OperationStatus, message: str = "") -> None:
        with self._write(changes_apps=False) as s:
            s.execute(
                update(models.Operation)
                .where(models.Operation.id == operation_id)
                .values(status=status.value, message=message, finished_at=now())
            )

    def request_cancel(self, operation_id: int) -> OperationStatus:
        """Cancel a queued operation now, or ask a running one to stop.

        Returns the status the operation had; finished ones are left alone.
        """
        with self._write(changes_apps=False) as s:
            row = s.get(models.Operation, operation_id, with_for_update=True)
            assert row is not None
            status = OperationStatus(row.status)
            if status is OperationStatus.QUEUED:
                row.status = OperationStatus.CANCELLED.value
                row.finished_at = now()
                row.message = "cancelled before it started"
            elif status is OperationStatus.RUNNING:
                row.cancel_requested = True
            return status

    def cancel_requested(self, operation_id: int) -> bool:
        with self._read() as s:
            return bool(
                s.scalar(
                    select(models.Operation.cancel_requested).where(
                        models.Operation.id == operation_id
                    )
                )
            )

    # workers and recovery

    def register_worker(self, worker_id: str) -> None:
        with self._write(changes_apps=False) as s:
            s.add(
                models.Worker(
                    id=worker_id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=now(),
                    heartbeat_at=now(),
                )
            )

    def heartbeat(self, worker_id: str) -> None:
        with self._write(changes_apps=False) as s:
            s.execute(
                update(models.Worker)
                .where(models.Worker.id == worker_id)
                .values(heartbeat_at=now())
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self._write(changes_apps=False) as s:
            s.execute(delete(models.Worker).where(models.Worker.id == worker_id))

    def fail_interrupted(
        self,
        worker_id: str,
        message: str,
        *,
        only_local_dead: Callable[[str, int], bool] | None = None,
        everyone_else: bool = False,
    ) -> list[int]:
        """Fail running operations whose worker is gone; return their ids.

        A worker is gone when its heartbeat is stale, when it is missing, when
        ``everyone_else`` is set (a single-process database such as SQLite,
        at start), or when ``only_local_dead(hostname, pid)`` says its
        process on this host has exited.
        """
        cutoff = now() - HEARTBEAT_STALE_AFTER
        with self._write(changes_apps=False) as s:
            workers = {w.id: w for w in s.scalars(select(models.Worker))}
            dead = {
                w.id
                for w in workers.values()
                if w.id != worker_id
                and (
                    everyone_else
                    or w.heartbeat_at < cutoff
                    or (only_local_dead is not None and only_local_dead(w.hostname, w.pid))
                )
            }
            rows = s.scalars(
                select(models.Operation).where(
                    models.Operation.status == OperationStatus.RUNNING.value
                )
            ).all()
            failed = []
            for row in rows:
                if row.worker_id == worker_id:
                    continue
                if row.worker_id in dead or row.worker_id not in workers:
                    row.status = OperationStatus.FAILED.value
                    row.message = message
                    row.finished_at = now()
                    s.add(models.OperationLog(operation_id=row.id, line=message, at=now()))
                    failed.append(row.id)
            if dead:
                s.execute(delete(models.Worker).where(models.Worker.id.in_(dead)))
            return failed

    # releases

    def create_release(
        self,
        app_id: int,
        *,
        image: str,
        source: str,
        config_version: int,
        services: list[Service],
        operation_id: int,
        kind: str,
        git_ref: str | None = None,
    ) -> Release:
        """A pending release, numbered next among the app's.

        An app's operations run one at a time, so no two number at once; the
        unique (app_id, number) index would refuse the second if they did.
        """
        with self._write(changes_apps=False) as s:
            latest = s.scalar(
                select(func.max(models.Release.number)).where(models.Release.app_id == app_id)
            )
            row = models.Release(
                app_id=app_id,
                number=(latest or 0) + 1,
                kind=kind,
                git_ref=git_ref,
                operation_id=operation_id,
                image=image,
                source=source,
                config_version=config_version,
                services=json.dumps([{"name": v.name, "command": v.command} for v in services]),
                status="pending",
                created_at=now(),
            )
            s.add(row)
            s.flush()
            return _release(row)

    def get_release(self, release_id: int) -> Release | None:
        with self._read() as s:
            row = s.get(models.Release, release_id)
            return _release(row) if row else None

    def release_by_number(self, app_id: int, number: int) -> Release | None:
        with self._read() as s:
            found = s.execute(
                _RELEASE_WITH_CREATOR.where(
                    models.Release.app_id == app_id, models.Release.number == number
                )
            ).first()
            return _release(*found) if found else None

    def fail_release(self, release_id: int) -> None:
        with self._write(changes_apps=False) as s:
            s.execute(
                update(models.Release)
                .where(models.Release.id == release_id)
                .values(status="failed")
            )

    def activate_release(
        self,
        app_id: int,
        release_id: int,
        *,
        config: tuple[dict[str, str], int] | None,
        credentials: RegistryCredentials | None,
        config_version: int | None = None,
    ) -> int:
        """Make the release current, with its new configuration and credentials.

        All or nothing: a deploy's configuration and credentials are kept only
        together with the release they came with. ``config_version`` makes an
        existing version current again (a rollback). Returns the config version.
        """
        with self._write() as s:
            version = self._current_version(s, app_id)
            if config_version is not None:
                version = config_version
            elif config is not None:
                values, operation_id = config
                version = self._add_version(s, app_id, values, operation_id)
            s.execute(
                update(models.Release)
                .where(models.Release.app_id == app_id, models.Release.status == "active")
                .values(status="retired")
            )
            s.execute(
                update(models.Release)
                .where(models.Release.id == release_id)
                .values(status="active", config_version=version)
            )
            s.execute(
                update(models.App)
                .where(models.App.id == app_id)
                .values(current_release_id=release_id, config_version=version)
            )
            if credentials is not None:
                self._save_credentials(s, app_id, credentials)
            return version

    def set_scale(self, app_id: int, scale: dict[str, int]) -> None:
        with self._write() as s:
            s.execute(
                update(models.App).where(models.App.id == app_id).values(scale=json.dumps(scale))
            )

    def releases(self, app_id: int) -> list[Release]:
        """The app's releases, newest first."""
        with self._read() as s:
            rows = s.execute(
                _RELEASE_WITH_CREATOR.where(models.Release.app_id == app_id).order_by(
                    models.Release.number.desc()
                )
            )
            return [_release(row, created_by) for row, created_by in rows]

    def live_releases(self, handle: str | None = None) -> dict[str, Release]:
        """Every app's current release (or one app's), by app handle."""
        query = select(models.App.handle, models.Release).join(
            models.Release, models.Release.id == models.App.current_release_id
        )
        if handle is not None:
            query = query.where(models.App.handle == handle)
        with self._read() as s:
            return {found: _release(release) for found, release in s.execute(query)}

    def busy_apps(self) -> set[str]:
        """Handles of apps with an operation running now."""
        with self._read() as s:
            rows = s.scalars(
                select(models.Operation.app_handle).where(
                    models.Operation.status == OperationStatus.RUNNING.value,
                    models.Operation.type != OperationType.RUN.value,  # runs change nothing
                )
            )
            return set(rows)

    # registry credentials

    def credentials(self, app_id: int, host: str) -> RegistryCredentials | None:
        with self._read() as s:
            row = s.get(models.RegistryCredential, (app_id, host))
            if row is None:
                return None
            return RegistryCredentials(host, row.username, self._cipher.decrypt(row.password))

    def credential_hosts(self, app_id: int) -> list[str]:
        with self._read() as s:
            rows = s.scalars(
                select(models.RegistryCredential.host)
                .where(models.RegistryCredential.app_id == app_id)
                .order_by(models.RegistryCredential.host)
            )
            return list(rows)

    def _save_credentials(self, s: Session, app_id: int, credentials: RegistryCredentials) -> None:
        # Credentials a deploy gave are the app's static source: they replace
        # whatever source the app had for that host.
        s.execute(
            delete(models.RegistrySource).where(
                models.RegistrySource.scope == app_id,
                models.RegistrySource.host == credentials.host,
            )
        )
        s.merge(
            models.RegistryCredential(
                app_id=app_id,
                host=credentials.host,
                username=credentials.username,
                password=self._cipher.encrypt(credentials.password),
                updated_at=now(),
            )
        )

    # registry credential sources

    def _source(self, row: models.RegistrySource, handle: str | None) -> Source:
        return Source(
            id=row.id,
            host=row.host,
            kind=SourceKind(row.kind),
            app_id=row.app_id,
            app_handle=handle,
            settings=json.loads(row.settings),
            secrets=json.loads(self._cipher.decrypt(row.secrets)),
            created_by=row.created_by,
            created_at=row.created_at,
            last_fetched_at=row.last_fetched_at,
            expires_at=row.expires_at,
            last_error=row.last_error,
        )

    def _deploy_source(self, row: models.RegistryCredential, handle: str | None) -> Source:
        """Credentials stored by an image deploy, shown as the app's static source."""
        return Source(
            host=row.host,
            kind=SourceKind.STATIC,
            app_id=row.app_id,
            app_handle=handle,
            settings={"username": row.username},
            secrets={"password": self._cipher.decrypt(row.password)},
            created_at=row.updated_at,
            from_deploy=True,
        )

    def add_source(self, new: NewSource, app: records.App | None, created_by: str) -> Source:
        """Store a source, replacing the one its scope had for the host (if any)."""
        scope = app.id if app else 0
        sealed = self._cipher.encrypt(json.dumps(new.secrets))
        with self._write(changes_apps=False) as s:
            s.execute(
                delete(models.RegistrySource).where(
                    models.RegistrySource.scope == scope, models.RegistrySource.host == new.host
                )
            )
            if app is not None:
                s.execute(
                    delete(models.RegistryCredential).where(
                        models.RegistryCredential.app_id == app.id,
                        models.RegistryCredential.host == new.host,
                    )
                )
            row = models.RegistrySource(
                scope=scope,
                app_id=app.id if app else None,
                host=new.host,
                kind=new.kind.value,
                settings=json.dumps(new.settings, sort_keys=True),
                secrets=sealed,
                created_by=created_by,
                created_at=now(),
                last_error="",
            )
            s.add(row)
            s.flush()
            return self._source(row, app.handle if app else None)

    def sources(self, app: records.App | None) -> list[Source]:
        """The global sources, or one app's (those stored by its deploys too), by host."""
        with self._read() as s:
            rows = s.scalars(
                select(models.RegistrySource).where(
                    models.RegistrySource.scope == (app.id if app else 0)
                )
            )
            found = [self._source(r, app.handle if app else None) for r in rows]
            if app is not None:
                stored = s.scalars(
                    select(models.RegistryCredential).where(
                        models.RegistryCredential.app_id == app.id
                    )
                )
                found += [self._deploy_source(r, app.handle) for r in stored]
        return sorted(found, key=lambda source: source.host)

    def source(self, app_id: int | None, host: str) -> Source | None:
        """The source of this scope for the host: an app's, or with None the global one."""
        with self._read() as s:
            row = s.scalars(
                select(models.RegistrySource).where(
                    models.RegistrySource.scope == (app_id or 0),
                    models.RegistrySource.host == host,
                )
            ).first()
            if row is not None:
                return self._source(row, None)
            if app_id is None:
                return None
            stored = s.get(models.RegistryCredential, (app_id, host))
            return self._deploy_source(stored, None) if stored is not None else None

    def remove_source(self, app_id: int | None, host: str) -> bool:
        with self._write(changes_apps=False) as s:
            removed = s.execute(
                delete(models.RegistrySource).where(
                    models.RegistrySource.scope == (app_id or 0),
                    models.RegistrySource.host == host,
                )
            ).rowcount  # type: ignore[attr-defined]
            if app_id is not None:
                removed += s.execute(
                    delete(models.RegistryCredential).where(
                        models.RegistryCredential.app_id == app_id,
                        models.RegistryCredential.host == host,
                    )
                ).rowcount  # type: ignore[attr-defined]
            return bool(removed)

    def record_fetch(
        self,
        source_id: int,
        *,
        fetched_at: datetime | None = None,
        expires_at: datetime | None = None,
        error: str = "",
    ) -> None:
        """What the source's last fetch gave: when, until when, or its error."""
        values: dict[str, Any] = {"last_error": error}
        if fetched_at is not None:
            values.update(last_fetched_at=fetched_at, expires_at=expires_at)
        with self._write(changes_apps=False) as s:
            s.execute(
                update(models.RegistrySource)
                .where(models.RegistrySource.id == source_id)
                .values(**values)
            )

    def apps_pulling_from(self, host: str, app_id: int | None = None) -> list[str]:
        """Handles of apps whose current release pulls its image from ``host``
        with this scope's source (an app's, or with None the global one)."""
        query = select(models.App.handle, models.Release.image).join(
            models.Release, models.Release.id == models.App.current_release_id
        )
        if app_id is not None:
            query = query.where(models.App.id == app_id)
        else:  # the global source serves only apps without a source of their own
            query = query.where(
                ~exists().where(
                    models.RegistrySource.app_id == models.App.id,
                    models.RegistrySource.host == host,
                ),
                ~exists().where(
                    models.RegistryCredential.app_id == models.App.id,
                    models.RegistryCredential.host == host,
                ),
            )
        with self._read() as s:
            rows = list(s.execute(query))
        prefix = host + "/"
        return sorted(handle for handle, image in rows if image.startswith(prefix))

    # --- custom domains ---

    def domains(self, app_id: int | None = None) -> dict[str, list[str]]:
        """Handle -> the app's custom domains, sorted (one app's, given ``app_id``)."""
        query = select(models.App.handle, models.Domain.host).join(
            models.App, models.App.id == models.Domain.app_id
        )
        if app_id is not None:
            query = query.where(models.Domain.app_id == app_id)
        found: dict[str, list[str]] = {}
        with self._read() as s:
            for handle, host in s.execute(query.order_by(models.Domain.host)):
                found.setdefault(handle, []).append(host)
        return found

    def add_domains(self, app: records.App, hosts: list[str], by: str, limit: int) -> list[str]:
        """Give the app these names, all or none; returns the ones it did not hold yet."""
        try:
            with self._write() as s:
                rows = s.execute(
                    select(models.Domain.host, models.App.handle)
                    .join(models.App, models.App.id == models.Domain.app_id)
                    .where(models.Domain.host.in_(hosts))
                )
                held = {str(host): str(handle) for host, handle in rows}
                for host in hosts:
                    if held.get(host, app.handle) != app.handle:
                        raise DomainTaken(host, held[host])
                new = [h for h in hosts if h not in held]
                count = s.scalar(select(func.count()).where(models.Domain.app_id == app.id)) or 0
                if count + len(new) > limit:
                    raise TooManyDomains(limit)
                s.add_all(models.Domain(app_id=app.id, host=h, created_by=by) for h in new)
                return new
        except IntegrityError:  # another app took one meanwhile
            raise DomainTaken(", ".join(hosts), None) from None

    def remove_domain(self, app_id: int, host: str) -> bool:
        with self._write() as s:
            removed = s.execute(
                delete(models.Domain).where(
                    models.Domain.app_id == app_id, models.Domain.host == host
                )
            ).rowcount  # type: ignore[attr-defined]
        return bool(removed)

    # --- TLS certificates ---

    @staticmethod
    def _certificate(row: models.Certificate) -> Certificate:
        return Certificate(
            name=row.name,
            app_id=row.app_id,
            source=row.source,
            status=row.status,
            issuer=row.issuer,
            not_after=row.not_after,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            failures=row.failures,
            has_chain=bool(row.chain),
        )

    def certificates(self, app_id: int | None = None) -> list[Certificate]:
        """Every name's certificate record (one app's, given ``app_id``); no key, no chain."""
        query = select(models.Certificate).order_by(models.Certificate.name)
        if app_id is not None:
            query = query.where(models.Certificate.app_id == app_id)
        with self._read() as s:
            return [self._certificate(row) for row in s.scalars(query)]

    def certificate_material(self, name: str) -> Issued | None:
        """The chain and the decrypted key of ``name``, if it has one."""
        with self._read() as s:
            row = s.scalar(select(models.Certificate).where(models.Certificate.name == name))
            if row is None or not row.chain:
                return None
            return Issued(
                row.name,
                row.chain,
                self._cipher.decrypt(row.key),
                row.not_after or now(),
                row.issuer,
            )

    def served_certificates(self) -> list[Issued]:
        """Every certificate there is to serve, with its key: what the router is given."""
        with self._read() as s:
            rows = list(s.scalars(select(models.Certificate).where(models.Certificate.chain != "")))
            return [
                Issued(r.name, r.chain, self._cipher.decrypt(r.key), r.not_after or now(), r.issuer)
                for r in rows
            ]

    def want_certificates(self, app_id: int | None, names: list[str], source: str) -> list[str]:
        """A record for each name that has none (pending, or manual for a wildcard ordered
        from ACME); returns the names it added."""
        added: list[str] = []
        try:
            with self._write(changes_apps=False) as s:
                held = set(
                    s.scalars(
                        select(models.Certificate.name).where(models.Certificate.name.in_(names))
                    )
                )
                for name in names:
                    if name in held:
                        continue
                    manual = source == CERT_ACME and name.startswith("*.")
                    s.add(
                        models.Certificate(
                            name=name,
                            app_id=app_id,
                            source=source,
                            status=CERT_MANUAL if manual else CERT_PENDING,
                            last_error=WILDCARD_NEEDS_USER if manual else "",
                            chain="",
                            key="",
                            issuer="",
                            failures=0,
                        )
                    )
                    added.append(name)
        except IntegrityError:  # another process added one meanwhile: it is wanted
            return self.want_certificates(app_id, names, source)
        return added

    def save_certificate(self, app_id: int | None, source: str, issued: Issued) -> None:
        """Store a certificate for ``issued.name`` (made or replaced), its key encrypted."""
        with self._write(changes_apps=False) as s:
            row = s.scalar(select(models.Certificate).where(models.Certificate.name == issued.name))
            if row is None:
                row = models.Certificate(name=issued.name)
                s.add(row)
            row.app_id, row.source, row.status = app_id, source, CERT_ISSUED
            row.chain, row.key = issued.chain_pem, self._cipher.encrypt(issued.key_pem)
            row.issuer, row.not_after = issued.issuer, issued.not_after
            row.last_error, row.failures, row.next_attempt_at = "", 0, None
            row.updated_at = now()

    def certificate_failed(self, name: str, error: str, retry_at: datetime, failures: int) -> None:
        with self._write(changes_apps=False) as s:
            s.execute(
                update(models.Certificate)
                .where(models.Certificate.name == name)
                .values(
                    status=CERT_FAILED,
                    last_error=error,
                    failures=failures,
                    next_attempt_at=retry_at,
                    updated_at=now(),
                )
            )

    def remove_certificates(self, names: list[str]) -> list[str]:
        """Forget these names' certificates; returns those that had one to serve."""
        with self._write(changes_apps=False) as s:
            served = list(
                s.scalars(
                    select(models.Certificate.name).where(
                        models.Certificate.name.in_(names), models.Certificate.chain != ""
                    )
                )
            )
            s.execute(delete(models.Certificate).where(models.Certificate.name.in_(names)))
        return served

    def secret_setting(self, key: str, make: Callable[[], str]) -> str:
        """A secret of the installation (stored encrypted), made by ``make`` the first time."""
        try:
            with self._write(changes_apps=False) as s:
                row = s.get(models.Setting, key)
                if row is None:
                    row = models.Setting(key=key, value=self._cipher.encrypt(make()))
                    s.add(row)
                return self._cipher.decrypt(row.value)
        except IntegrityError:  # another process made it first: use theirs
            return self.secret_setting(key, make)

    def force_https(self) -> set[int]:
        """The ids of the apps whose plain HTTP is redirected to HTTPS."""
        with self._read() as s:
            return set(s.scalars(select(models.AppHttps.app_id).where(models.AppHttps.force_https)))

    def set_force_https(self, app_id: int, on: bool) -> None:
        with self._write() as s:
            row = s.get(models.AppHttps, app_id)
            if row is None:
                s.add(models.AppHttps(app_id=app_id, force_https=on))
            else:
                row.force_https = on

    def all_apps(self) -> list[records.App]:
        """Every app, whoever may see it: the certificate keeper's view."""
        with self._read() as s:
            return [_app(row) for row in s.scalars(select(models.App).order_by(models.App.id))]


def _new_operation(
    s: Session,
    app: records.App,
    type: OperationType,
    status: OperationStatus,
    by_id: int | None,
    by_name: str,
    sealed: str,
    *,
    started: bool = False,
    finished: bool = False,
    message: str = "",
    worker_id: str | None = None,
) -> models.Operation:
    """A new operation row of the app, made now (and started, finished now if asked)."""
    at = now()
    row = models.Operation(
        app_id=app.id,
        app_handle=app.handle,
        type=type.value,
        status=status.value,
        created_by_id=by_id or None,  # 0: the platform itself (no user row)
        created_by=by_name,
        created_at=at,
        started_at=at if started else None,
        finished_at=at if finished else None,
        payload=sealed,
        message=message,
        cancel_requested=False,
        worker_id=worker_id,
    )
    s.add(row)
    s.flush()
    return row
