"""Releases numbered per app, listed and shown, and rollback with configuration.

One engine only (not on Swarm): the roll-out a rollback goes through is the
deploy's, which test_deploys runs on Swarm too.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from dockyard.domain.configuration import MASK
from dockyard.store.database import MIGRATIONS, make_engine, migrate
from tests.integration.gitpush import WorkingCopy
from tests.integration.registry import Registry, docker_client, engine_client
from tests.integration.servers import Server, new_postgres_database
from tests.integration.test_deploys import (
    credentials,
    deploy,
    environment_of,
    request_loop,
    served,
)
from tests.integration.test_git_deploys import _creds, remote, web


def releases(server: Server, app: str, token: str | None = None) -> list[dict]:
    result = server.cli("releases", "--app", app, "-o", "json", token=token)
    assert result.code == 0, result.text
    return list(json.loads(result.out))


def test_rollback_brings_back_image_and_configuration_together(
    server: Server, registry: Registry, app: str, user_token: Callable[[], tuple[str, str]]
) -> None:
    first = deploy(
        server,
        app,
        registry.image("web:v1"),
        *credentials(registry),
        "GREETING=one",
        "DB_PASSWORD=s1",
    )
    assert first.code == 0, first.text
    assert "Release 1 is live" in first.out
    second = deploy(server, app, registry.image("web:v2"), "GREETING=two")
    assert second.code == 0, second.text
    assert environment_of(server, app)["GREETING"] == "two"

    listed = releases(server, app)
    assert [r["number"] for r in listed] == [2, 1]
    assert [r["current"] for r in listed] == [True, False]
    assert [r["source"] for r in listed] == [registry.image("web:v2"), registry.image("web:v1")]
    assert [r["config_version"] for r in listed] == [2, 1]
    assert {r["kind"] for r in listed} == {"deploy"} and {r["created_by"] for r in listed} == {
        "admin"
    }
    assert all(r["digest"].startswith("sha256:") and r["created_at"] for r in listed)
    text = server.cli("releases", "--app", app)
    assert text.code == 0 and "* 2" in text.out and "web:v1" in text.out, text.text

    shown = server.cli("releases:show", "--app", app, "1", "-o", "json")
    assert shown.code == 0, shown.text
    detail = json.loads(shown.out)
    assert detail["number"] == 1 and detail["configuration"] == {
        "DB_PASSWORD": MASK,
        "GREETING": MASK,
    }
    assert "s1" not in shown.out
    assert "GREETING=********" in server.cli("releases:show", "--app", app, "1").out

    with request_loop(server, app) as outcomes:
        rolled = server.run("rollback", "--app", app)
    assert rolled.code == 0, rolled.text
    assert set(outcomes) <= {"200 hello-v1", "200 hello-v2"}, outcomes
    assert outcomes["200 hello-v1"] >= 1 and outcomes["200 hello-v2"] >= 1, outcomes
    assert "Rolling" in rolled.out and "back to release 1" in rolled.out
    assert "Release 3 (release 1 again) is live" in rolled.out
    assert served(server, app) == "hello-v1"
    environment = environment_of(server, app)
    assert environment["GREETING"] == "one" and environment["DB_PASSWORD"] == "s1"
    assert registry.password not in json.dumps(environment)

    after = releases(server, app)
    assert [r["number"] for r in after] == [3, 2, 1]
    assert after[0]["current"] and after[0]["kind"] == "rollback"
    assert after[0]["image"] == listed[1]["image"] and after[0]["config_version"] == 1
    assert "GREETING=one" in server.cli("config", "--app", app).out

    # Bad input: a clear error, its exit status, and nothing changed.
    current = server.cli("rollback", "--app", app, "--release", "3")
    assert current.code == 6 and "release 3 is the current release" in current.err, current.text
    unknown = server.cli("rollback", "--app", app, "--release", "99")
    assert unknown.code == 4 and "has no release 99" in unknown.err, unknown.text
    assert server.cli("releases:show", "--app", app, "99").code == 4
    assert server.cli("rollback", "--app", app, "--release", "0").code == 6
    assert server.cli("releases:show", "--app", app, str(2**40)).code == 6  # beyond any number
    assert len(releases(server, app)) == 3

    # Someone else's app is not found, as everywhere.
    _, token = user_token()
    for args in (["releases"], ["releases:show", "1"], ["rollback"]):
        hidden = server.cli(*args, "--app", app, token=token)
        assert hidden.code == 4 and "not found" in hidden.err, hidden.text


def test_rollback_needs_two_releases(server: Server, registry: Registry, app: str) -> None:
    never = server.cli("rollback", "--app", app)
    assert never.code == 6 and "has no release" in never.err, never.text
    assert releases(server, app) == []
    assert deploy(server, app, registry.image("web:v1"), *credentials(registry)).code == 0
    once = server.cli("rollback", "--app", app)
    assert once.code == 6 and "only one release" in once.err, once.text
    assert server.cli("rollback", "--app", app, "--release", "1").code == 6
    assert [r["number"] for r in releases(server, app)] == [1]


def _push_copy(registry: Registry, repository: str) -> str:
    """Push web:v1 again under a repository of its own; return the new reference."""
    client = docker_client()
    auth = {"username": registry.user, "password": registry.password}
    try:
        client.images.pull(registry.image("web"), tag="v1", auth_config=auth)
        target = registry.image(repository)
        client.api.tag(registry.image("web:v1"), target, "v1")
        for line in client.images.push(
            target, tag="v1", auth_config=auth, stream=True, decode=True
        ):
            assert "error" not in line, line
        client.images.remove(f"{target}:v1")
    finally:
        client.close()
    return f"{target}:v1"


def test_rollback_to_a_release_whose_image_is_gone_changes_nothing(
    server: Server, registry: Registry, app: str
) -> None:
    repository = "gone-" + uuid.uuid4().hex[:8]
    image = _push_copy(registry, repository)
    assert deploy(server, app, image, *credentials(registry)).code == 0
    assert deploy(server, app, registry.image("web:v2"), "GREETING=two").code == 0
    digest = releases(server, app)[1]["digest"]
    deleted = httpx.delete(
        f"http://{registry.host}/v2/dockyard-test/{repository}/manifests/{digest}",
        auth=(registry.user, registry.password),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert deleted.status_code == 202, deleted.text

    rolled = server.cli("rollback", "--app", app)
    assert rolled.code == 7, rolled.text
    assert "cannot roll" in rolled.err and "back to release 1" in rolled.err, rolled.text
    assert "is gone" in rolled.err and "nothing was changed" in rolled.err
    assert served(server, app) == "hello-v2"
    assert environment_of(server, app)["GREETING"] == "two"
    after = releases(server, app)
    assert [(r["number"], r["current"]) for r in after] == [(2, True), (1, False)]


def test_rollback_to_a_pruned_build_changes_nothing(
    server: Server, registry: Registry, app: str, backend: str, tmp_path: Path
) -> None:
    assert server.cli("config:set", "--app", app, *_creds(registry)).code == 0
    repo = WorkingCopy(tmp_path / "work", remote(server, app))
    # Content of its own: another app's identical build would share the image.
    commit = repo.commit(web(registry, f"built-{uuid.uuid4().hex}"))
    assert repo.push("main").code == 0
    assert deploy(server, app, registry.image("web:v2"), *credentials(registry)).code == 0
    built = releases(server, app)[1]
    assert built["source"] == f"git:{commit[:7]} (main)", built
    assert (built["git_commit"], built["git_ref"]) == (commit, "main")
    with engine_client(backend) as client:  # what a prune of old builds does to it
        client.images.remove(built["image"], force=True)

    rolled = server.cli("rollback", "--app", app, "--release", "1")
    assert rolled.code == 7, rolled.text
    assert "back to release 1" in rolled.err and "the built image was removed" in rolled.err
    assert served(server, app) == "hello-v2"
    assert [r["number"] for r in releases(server, app)] == [2, 1]


# --- per-app numbers across the migration ---


def _database_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return new_postgres_database(os.environ["DOCKYARD_TEST_POSTGRES"])


def test_existing_releases_are_numbered_per_app_by_the_migration(
    backend: str, tmp_path: Path
) -> None:
    url = _database_url(backend, tmp_path)
    engine = make_engine(url, writer=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    # Two apps deployed in turn, as a shared id sequence numbered them: a1 has
    # ids 1, 3, 4 and a2 has 2, 5; a restart and a configure among them.
    with engine.begin() as db:
        db.execute(
            sa.text(
                "INSERT INTO users (id, name, is_admin, created_at) "
                "VALUES (1, 'admin', true, CURRENT_TIMESTAMP)"
            )
        )
        for app_id, handle in ((1, "a1"), (2, "a2")):
            db.execute(
                sa.text(
                    "INSERT INTO apps (id, handle, created_at, created_by_id, config_version, "
                    "scale) VALUES (:id, :handle, CURRENT_TIMESTAMP, 1, 0, '{}')"
                ),
                {"id": app_id, "handle": handle},
            )
        made = [
            (1, 1, "deploy"),
            (2, 2, "deploy"),
            (3, 1, "restart"),
            (4, 1, "configure"),
            (5, 2, "deploy"),
        ]
        for release_id, app_id, kind in made:
            db.execute(
                sa.text(
                    "INSERT INTO operations (id, app_id, app_handle, type, status, created_by_id, "
                    "created_by, created_at, payload, message, cancel_requested) VALUES "
                    "(:id, :app, :handle, :type, 'succeeded', 1, 'admin', CURRENT_TIMESTAMP, "
                    "'', '', false)"
                ),
                {"id": release_id, "app": app_id, "handle": f"a{app_id}", "type": kind},
            )
            db.execute(
                sa.text(
                    "INSERT INTO releases (id, app_id, operation_id, image, source, "
                    "config_version, services, status, created_at) VALUES (:id, :app, :id, "
                    "'reg.io/web@sha256:00', 'reg.io/web:v1', 0, '[]', 'retired', "
                    "CURRENT_TIMESTAMP)"
                ),
                {"id": release_id, "app": app_id},
            )
        db.execute(sa.text("UPDATE apps SET current_release_id = 4 WHERE id = 1"))
        db.execute(sa.text("UPDATE apps SET current_release_id = 5 WHERE id = 2"))
        if backend == "postgresql":  # ids given by hand: move the sequence past them
            db.execute(sa.text("SELECT setval('releases_id_seq', 5)"))

    migrate(engine)

    with engine.connect() as db:
        rows = db.execute(
            sa.text("SELECT id, app_id, number, kind FROM releases ORDER BY id")
        ).all()
        current = dict(db.execute(sa.text("SELECT handle, current_release_id FROM apps")).all())
    assert [tuple(r) for r in rows] == [
        (1, 1, 1, "deploy"),
        (2, 2, 1, "deploy"),
        (3, 1, 2, "restart"),
        (4, 1, 3, "configure"),
        (5, 2, 2, "deploy"),
    ]
    assert current == {"a1": 4, "a2": 5}  # the migration kept what serves
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as db:
        db.execute(
            sa.text(
                "INSERT INTO releases (app_id, number, kind, image, source, config_version, "
                "services, status, created_at) VALUES (2, 2, 'deploy', 'x', 'x', 0, '[]', "
                "'failed', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
