"""The resolver: which credentials go to which host, and one retry on rejection."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import CredentialsRejected
from dockyard.domain.registries import Source, SourceCredentialsRejected, SourceKind
from dockyard.registry.sources import Sources
from dockyard.services.credentials import (
    CONFIGURED,
    GIVEN,
    IMAGE_REGISTRY,
    Resolver,
    release_credentials_for,
)

HOST = "r.example.com"


class FakeStore:
    def __init__(self, sources: dict[tuple[int | None, str], Source]) -> None:
        self._sources = sources
        self.fetches: list[dict[str, Any]] = []

    def source(self, app_id: int | None, host: str) -> Source | None:
        return self._sources.get((app_id, host))

    def record_fetch(self, source_id: int, **values: Any) -> None:
        self.fetches.append({"id": source_id, **values})


def static(app_id: int | None, password: str) -> Source:
    return Source(
        HOST,
        SourceKind.STATIC,
        app_id,
        {"username": "u"},
        {"password": password},
        id=1 if app_id else 2,
    )


def platform(
    store: FakeStore,
    environ: dict[str, str] | None = None,
    image_registry: tuple[str, RegistryCredentials] | None = None,
) -> Any:
    prefix, own = image_registry or (None, None)
    found = SimpleNamespace(
        store=store, image_registry=prefix, image_registry_credentials=own, installation="inst"
    )
    found.registry_sources = Sources(environ=environ or dict(os.environ))
    return found


def test_order_given_configured_app_global_none() -> None:
    given = RegistryCredentials(HOST, "g", "given")
    configured = RegistryCredentials(HOST, "c", "configured")
    both = FakeStore({(7, HOST): static(7, "app"), (None, HOST): static(None, "global")})
    resolver = Resolver(platform(both), 7)
    assert resolver.for_host(HOST, given=given, configured=configured).origin == GIVEN
    assert resolver.for_host(HOST, configured=configured).origin == CONFIGURED
    assert resolver.for_host(HOST).credentials == RegistryCredentials(HOST, "u", "app")
    only_global = Resolver(platform(FakeStore({(None, HOST): static(None, "global")})), 7)
    assert only_global.for_host(HOST).credentials == RegistryCredentials(HOST, "u", "global")
    assert Resolver(platform(FakeStore({})), 7).for_host(HOST).credentials is None
    # Credentials go to their own host only.
    other = RegistryCredentials("other.example.com", "g", "given")
    assert Resolver(platform(FakeStore({})), 7).for_host(HOST, given=other).credentials is None


def test_image_registry_credentials_come_last_and_only_under_its_prefix() -> None:
    own = RegistryCredentials(HOST, "builder", "pushes")
    resolver = Resolver(platform(FakeStore({}), image_registry=(f"{HOST}/builds", own)), 7)
    built = resolver.for_host(HOST, image=f"{HOST}/builds/build@sha256:{'0' * 64}")
    assert (built.credentials, built.origin) == (own, IMAGE_REGISTRY)
    assert built.describe() == f"credentials for {HOST} from {IMAGE_REGISTRY}"
    assert resolver.for_host(HOST, image=f"{HOST}/other/app:1").credentials is None
    assert resolver.for_host(HOST, image=f"{HOST}/buildsx/app:1").credentials is None
    assert resolver.for_host(HOST).credentials is None
    with_source = Resolver(
        platform(FakeStore({(7, HOST): static(7, "app")}), image_registry=(f"{HOST}/builds", own)),
        7,
    )
    found = with_source.for_host(HOST, image=f"{HOST}/builds/build:1")
    assert found.credentials == RegistryCredentials(HOST, "u", "app")


def test_a_deploy_gets_the_image_registry_credentials_for_its_own_app_builds_only() -> None:
    own = RegistryCredentials(HOST, "builder", "pushes")
    resolver = Resolver(platform(FakeStore({}), image_registry=(f"{HOST}/builds", own)), 7)
    mine = f"{HOST}/builds/inst/web@sha256:{'0' * 64}"
    assert resolver.for_host(HOST, image=mine, deploying="web").credentials == own
    assert resolver.for_host(HOST, image=f"{HOST}/builds/inst/web:3", deploying="web").credentials
    # Another app's build, another installation's, or the old shared repository.
    for image in (mine.replace("/web@", "/api@"), mine.replace("/inst/", "/other/")):
        assert resolver.for_host(HOST, image=image, deploying="web").credentials is None
    old = f"{HOST}/builds/build@sha256:{'0' * 64}"
    assert resolver.for_host(HOST, image=old, deploying="web").credentials is None
    # A release Dockyard recorded (restart, scale, reconcile) pulls as before.
    assert resolver.for_host(HOST, image=old).credentials == own


def _counting_helper(tmp_path: Path) -> tuple[Source, dict[str, str]]:
    counter = tmp_path / "n"
    counter.write_text("0")
    script = tmp_path / "docker-credential-count"
    script.write_text(
        f"#!/bin/sh\nn=$(($(cat {counter}) + 1))\necho $n > {counter}\n"
        'printf \'{"Username": "u", "Secret": "secret-%s"}\' "$n"\n'
    )
    script.chmod(0o755)
    source = Source(HOST, SourceKind.CREDENTIAL_HELPER, 7, {"helper": "count"}, id=3)
    return source, {"PATH": f"{tmp_path}:{os.environ['PATH']}"}


def test_rejected_fetched_credentials_are_fetched_again_once(tmp_path: Path) -> None:
    source, environ = _counting_helper(tmp_path)
    store = FakeStore({(7, HOST): source})
    resolver = Resolver(platform(store, environ), 7)
    first = resolver.for_host(HOST)
    assert first.credentials is not None and first.credentials.password == "secret-1"
    assert resolver.for_host(HOST).credentials == first.credentials  # cached
    tried: list[str] = []
    logged: list[str] = []

    def pull(found: Any) -> str:
        password = found[HOST].credentials.password
        tried.append(password)
        if password == "secret-1":
            raise CredentialsRejected(HOST, had_credentials=True)
        return "pulled"

    result, used = resolver.retrying({HOST: first}, pull, logged.append)
    assert result == "pulled" and tried == ["secret-1", "secret-2"]
    assert used[HOST].credentials is not None and used[HOST].credentials.password == "secret-2"
    assert logged[0] == (
        f"The registry {HOST} rejected the credentials from its credential-helper source (app):"
    )
    assert not any("secret" in line for line in logged)
    assert [f["id"] for f in store.fetches] == [3, 3]

    def always(found: Any) -> str:
        raise CredentialsRejected(HOST, had_credentials=True)

    with pytest.raises(SourceCredentialsRejected, match="even freshly fetched"):
        resolver.retrying({HOST: resolver.for_host(HOST)}, always, logged.append)


def test_where_nodes_pull_fetched_credentials_are_checked_first(tmp_path: Path) -> None:
    source, environ = _counting_helper(tmp_path)
    found = platform(FakeStore({(7, HOST): source}), environ)
    shown: list[str] = []

    def resolve(image: Any, credentials: RegistryCredentials | None) -> str:
        assert credentials is not None
        shown.append(credentials.password)
        if credentials.password == "secret-1":  # the cached answer went stale
            raise CredentialsRejected(HOST, had_credentials=True)
        return "sha256:" + "0" * 64

    found.images = lambda: SimpleNamespace(resolve=resolve)
    found.scheduler = lambda: SimpleNamespace(pulls_on_nodes=True)
    image = f"{HOST}/app@sha256:{'1' * 64}"
    Resolver(found, 7).for_host(HOST)  # cached: secret-1
    logged: list[str] = []
    given = release_credentials_for(found, 7, HOST, logged.append, image=image)
    assert given is not None and given.password == "secret-2" and shown == ["secret-1", "secret-2"]
    assert logged[-1].startswith(f"Pulling with credentials for {HOST} from credential-helper")
    # Where the engine that starts containers pulls them itself, nothing is asked first.
    found.scheduler = lambda: SimpleNamespace(pulls_on_nodes=False)
    release_credentials_for(found, 7, HOST, image=image)
    assert shown == ["secret-1", "secret-2"]


def test_static_credentials_are_not_retried() -> None:
    resolver = Resolver(platform(FakeStore({(7, HOST): static(7, "app")})), 7)
    calls = []

    def pull(found: Any) -> None:
        calls.append(1)
        raise CredentialsRejected(HOST, had_credentials=True)

    with pytest.raises(CredentialsRejected) as raised:
        resolver.retrying({HOST: resolver.for_host(HOST)}, pull, print)
    assert type(raised.value) is CredentialsRejected and calls == [1]


def test_describe_names_the_source_and_its_times() -> None:
    source = Source(HOST, SourceKind.AWS_ECR, None, {"region": "us-east-1"}, id=4)
    at = datetime(2026, 12, 4, 12, 3, tzinfo=UTC)
    from dockyard.domain.registries import Fetched
    from dockyard.services.credentials import Resolved

    fetched = Fetched(RegistryCredentials(HOST, "AWS", "tok"), at, at.replace(hour=18))
    resolved = Resolved(HOST, fetched.credentials, source.label, source, fetched)
    text = resolved.describe()
    assert text.startswith(f"credentials for {HOST} from aws-ecr source (global), fetched ")
    assert ", expire " in text and "tok" not in text
