"""Fixtures: one real server per database backend, and fresh ones on demand."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.registry import (
    Registry,
    build_and_push,
    registry_from_environment,
    remove_app_containers,
)
from tests.integration.servers import Server, new_postgres_database

BACKENDS = ["sqlite", "postgresql"]


def _postgres_admin_url() -> str:
    url = os.environ.get("DOCKYARD_TEST_POSTGRES")
    if not url:
        pytest.fail("DOCKYARD_TEST_POSTGRES is not set: run the tests with `make test`")
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


ServerFactory = Callable[..., Server]


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(backend: str, *, start: bool = True, **options: object) -> Server:
        root = tmp_path_factory.mktemp(f"{backend}-server")
        database = new_postgres_database(_postgres_admin_url()) if backend == "postgresql" else None
        server = Server(data_dir=root / "data", database_url=database, **options)  # type: ignore[arg-type]
        started.append(server)
        return server.start() if start else server

    yield make
    installations = {server.installation() for server in started}
    for server in started:
        server.stop()
    remove_app_containers({i for i in installations if i})


@pytest.fixture(scope="session")
def server(backend: str, server_factory: ServerFactory) -> Server:
    """A server shared by the tests of one backend; tests use their own apps."""
    return server_factory(backend)


@pytest.fixture
def fresh_server(backend: str, server_factory: ServerFactory) -> Iterator[ServerFactory]:
    """Start a server of this test's backend with its own data and database."""
    made: list[Server] = []

    def make(**options: object) -> Server:
        made.append(server_factory(backend, **options))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def handle() -> str:
    return "app-" + uuid.uuid4().hex[:10]


@pytest.fixture
def app(server: Server, handle: str) -> str:
    result = server.cli("apps:create", handle)
    assert result.code == 0, result.text
    return handle


@pytest.fixture
def user_token(server: Server) -> Callable[[], tuple[str, str]]:
    """Create a non-admin user; return its name and token."""

    def make() -> tuple[str, str]:
        name = "user-" + uuid.uuid4().hex[:8]
        result = server.cli("users:create", name, "--output", "json")
        assert result.code == 0, result.text
        return name, json.loads(result.out)["token"]

    return make


@pytest.fixture(scope="session")
def registry() -> Registry:
    found = registry_from_environment()
    build_and_push(found)
    return found
