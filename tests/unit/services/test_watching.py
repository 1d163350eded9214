"""Automatic rollback: what the watch queues, and a rollback that is no longer needed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from dockyard.domain import records
from dockyard.domain.operations import OperationStatus, OperationType
from dockyard.domain.releases import HealthCheck, Release
from dockyard.services.rolling_back import rollback
from dockyard.services.running import OperationRun
from dockyard.services.watching import SYSTEM, _roll_back

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
APP = records.App(id=7, handle="web", created_at=AT, config_version=2, current_release_id=12)


def release(id: int, number: int, status: str) -> Release:
    return Release(
        id, 7, f"r.example.com/web@sha256:{id:064}", "r.example.com/web:v1", 1, (), status, number
    )


class FakeStore:
    def __init__(self, app: records.App) -> None:
        self.app = app
        self.lines: list[str] = []
        self.queued: list[tuple[OperationType, dict[str, Any], records.User]] = []

    def find_app_by_id(self, app_id: int) -> records.App:
        return self.app

    def append_log(self, operation_id: int, line: str) -> None:
        self.lines.append(line)

    def releases(self, app_id: int) -> list[Release]:
        return [release(12, 3, "active"), release(11, 2, "retired"), release(10, 1, "retired")]

    def enqueue(
        self, app: records.App, type: OperationType, payload: dict[str, Any], user: records.User
    ) -> SimpleNamespace:
        self.queued.append((type, payload, user))
        return SimpleNamespace(id=99)


def platform(store: FakeStore) -> Any:
    events = SimpleNamespace(operation_changed=lambda _: None, operation_queued=lambda: None)
    return SimpleNamespace(store=store, events=events)


def test_the_watch_queues_a_rollback_to_the_release_before_started_by_dockyard() -> None:
    store = FakeStore(APP)
    watched = release(12, 3, "active")
    _roll_back(platform(store), APP, watched, "web.1 exited", HealthCheck(180, False, 20))
    [(type, payload, user)] = store.queued
    assert type is OperationType.ROLLBACK and user is SYSTEM and user.name == "dockyard"
    assert payload == {
        "release": 2,
        "watched": 12,
        "watched_number": 3,
        "reason": "web.1 exited (watched for 20 s, RELEASE_WATCH_SECONDS)",
    }


def test_a_rollback_finds_another_release_current_and_changes_nothing() -> None:
    store = FakeStore(replace(APP, current_release_id=13))  # a deploy made since
    operation = records.Operation(
        id=5,
        app_id=7,
        app_handle="web",
        type=OperationType.ROLLBACK,
        status=OperationStatus.RUNNING,
        created_by="dockyard",
        created_at=AT,
        started_at=AT,
        finished_at=None,
        message="",
        cancel_requested=False,
        payload={"release": 2, "watched": 12, "watched_number": 3, "reason": "web.1 exited"},
    )
    result = rollback(OperationRun(platform(store), operation))
    assert result == "nothing rolled back: release 3 is no longer current"
    assert store.lines == [
        "Automatic rollback of release 3: web.1 exited",
        "Release 3 is no longer the current release: nothing is rolled back",
    ]
