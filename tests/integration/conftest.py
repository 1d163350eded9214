"""Fixtures: one real server per backend, and fresh ones on demand.

A backend is a database and a runtime: ``sqlite`` and ``postgresql`` run apps
on the test Docker engine; ``swarm`` (SQLite) runs them as Swarm services on a
real two-node swarm built on this machine by ``scripts/swarm.sh``. A module
whose flows must pass on Swarm too sets ``ON_SWARM = True``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.registry import (
    Registry,
    build_and_push,
    registry_from_environment,
    remove_app_containers,
    remove_swarm_services,
)
from tests.integration.servers import Server, new_postgres_database

BACKENDS = ["sqlite", "postgresql"]
ROOT = Path(__file__).resolve().parents[2]


def _postgres_admin_url() -> str:
    url = os.environ.get("DOCKYARD_TEST_POSTGRES")
    if not url:
        pytest.fail("DOCKYARD_TEST_POSTGRES is not set: run the tests with `make test`")
    return url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        # A module whose flows do not depend on the database names its own.
        chosen = list(getattr(metafunc.module, "BACKENDS", BACKENDS))
        backends = chosen + (["swarm"] if getattr(metafunc.module, "ON_SWARM", False) else [])
        metafunc.parametrize("backend", backends, indirect=True, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # `make test-swarm` selects what runs on the swarm
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "swarm":
            item.add_marker(pytest.mark.swarm)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@functools.cache
def swarm_settings() -> dict[str, str]:
    """Build (or find) the two-node swarm; its settings, also put in os.environ."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "swarm.sh")], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/swarm.sh failed: {done.stderr[-3000:]}")
    settings = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    os.environ.update(settings)
    return settings


def swarm_options(registry: Registry, *, image_registry: bool = True) -> dict[str, object]:
    """How a server runs its apps on the test swarm."""
    swarm = swarm_settings()
    arguments = ["--runtime", "swarm"]
    if image_registry:
        arguments += [
            "--image-registry",
            f"{swarm['DOCKYARD_SWARM_REGISTRY']}/dockyard-builds",
            "--image-registry-username",
            registry.user,
        ]
    return {
        "runtime_env": {
            "DOCKER_HOST": swarm["DOCKYARD_SWARM_MANAGER"],
            "DOCKYARD_IMAGE_REGISTRY_PASSWORD": registry.password,
        },
        "extra_args": arguments,
    }


ServerFactory = Callable[..., Server]


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(backend: str, *, start: bool = True, **options: object) -> Server:
        root = tmp_path_factory.mktemp(f"{backend}-server")
        database = new_postgres_database(_postgres_admin_url()) if backend == "postgresql" else None
        if backend == "swarm":
            on_swarm = swarm_options(registry_from_environment())
            extra = list(options.pop("extra_args", []))  # type: ignore[call-overload]
            options = {**on_swarm, **options, "extra_args": on_swarm["extra_args"] + extra}  # type: ignore[operator]
        server = Server(data_dir=root / "data", database_url=database, **options)  # type: ignore[arg-type]
        started.append(server)
        return server.start() if start else server

    yield make
    installations = {server.installation() for server in started}
    for server in started:
        server.stop()
    remove_app_containers({i for i in installations if i})
    if swarm_settings.cache_info().currsize:
        remove_swarm_services({i for i in installations if i})


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
def local_registry() -> Registry:
    """The test registry as the test engine (and the swarm manager) reach it."""
    found = registry_from_environment()
    build_and_push(found)
    return found


@pytest.fixture(scope="session")
def registry(backend: str, local_registry: Registry) -> Registry:
    """The test registry as this backend's apps reach it: on Swarm, over the veth."""
    if backend != "swarm":
        return local_registry
    host = swarm_settings()["DOCKYARD_SWARM_REGISTRY"]
    return dataclasses.replace(
        local_registry,
        host=host,
        base_image=local_registry.base_image.replace(local_registry.host, host, 1),
    )
