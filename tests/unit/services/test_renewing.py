"""Renewing the registry auth that running (Swarm) services hold for later pulls."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.registries import Fetched, Source, SourceKind
from dockyard.services.renewing import renew, source_changed

HOST = "r.example.com"
AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class FakeSources:
    """Answers ``password`` now; counts forced fetches."""

    def __init__(self) -> None:
        self.now = AT
        self.password = "one"
        self.forced = 0

    def clock(self) -> datetime:
        return self.now

    def fetch(self, source: Source, *, force: bool = False) -> tuple[Fetched, bool]:
        self.forced += force
        credentials = RegistryCredentials(HOST, "u", self.password)
        return Fetched(credentials, self.now), True


class FakeStore:
    def __init__(self, source: Source | None) -> None:
        self._source = source
        self.busy: set[str] = set()

    def live_releases(self) -> dict[str, Any]:
        image = f"{HOST}/app@sha256:{'0' * 64}"
        return {"web": SimpleNamespace(id=3, app_id=7, image=image)}

    def busy_apps(self) -> set[str]:
        return self.busy

    def source(self, app_id: int | None, host: str) -> Source | None:
        return self._source if host == HOST and app_id == 7 else None

    def record_fetch(self, source_id: int, **values: Any) -> None:
        pass


class FakeScheduler:
    pulls_on_nodes = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str | None]] = []

    def renew_credentials(
        self, app: str, release: int, credentials: RegistryCredentials | None
    ) -> int:
        self.sent.append((app, release, credentials.password if credentials else None))
        return 2


def platform(kind: SourceKind = SourceKind.CREDENTIAL_HELPER) -> Any:
    settings = {"helper": "h", "cache_seconds": "300"} if kind.fetches else {"username": "u"}
    source = Source(HOST, kind, 7, settings, id=1)
    scheduler = FakeScheduler()
    locks: dict[str, threading.Lock] = {}
    return SimpleNamespace(
        store=FakeStore(source),
        registry_sources=FakeSources(),
        held_auth={},
        scheduler=lambda: scheduler,
        app_lock=lambda handle: locks.setdefault(handle, threading.Lock()),
        sent=scheduler.sent,
        image_registry=None,
        image_registry_credentials=None,
        installation="i",
    )


def test_sent_once_at_start_then_a_pass_before_due_and_only_when_it_changed() -> None:
    found = platform()
    assert renew(found, margin=10) == [f"refreshed registry auth of 2 services for {HOST}"]
    assert found.sent == [("web", 3, "one")]
    assert renew(found, margin=10) == []  # nothing is due
    found.registry_sources.now = AT + timedelta(seconds=285)
    assert renew(found, margin=10) == []
    found.registry_sources.now = AT + timedelta(seconds=291)  # within a margin of due
    assert renew(found, margin=10) == []  # fetched anew (forced), but the same answer
    assert found.registry_sources.forced == 1
    found.registry_sources.password = "two"
    found.registry_sources.now += timedelta(seconds=291)
    renew(found, margin=10)
    assert found.sent[-1] == ("web", 3, "two")


def test_a_changed_source_is_sent_at_once_and_a_busy_app_waits() -> None:
    found = platform(SourceKind.STATIC)
    assert renew(found) == []  # a static source at start: what the services got stays
    assert found.sent == []
    found.store.busy.add("web")
    assert source_changed(found, HOST, 7) == []
    found.store.busy.clear()
    assert renew(found) != []  # the next pass sends it
    assert found.sent == [("web", 3, "one")]
    assert source_changed(found, "other.example.com", None) == []
    assert source_changed(found, HOST, 8) == []  # another app's source
    assert len(found.sent) == 1


def test_nothing_to_renew_where_containers_pull_only_when_they_start() -> None:
    found = platform()
    found.scheduler().pulls_on_nodes = False
    assert renew(found) == []
    assert found.sent == []


def test_a_removed_source_is_taken_back_from_the_services() -> None:
    found = platform()
    renew(found)
    found.store._source = None  # registries:remove
    assert source_changed(found, HOST, 7) == [f"refreshed registry auth of 2 services for {HOST}"]
    assert found.sent == [("web", 3, "one"), ("web", 3, None)]
    assert renew(found) == []  # and not again
