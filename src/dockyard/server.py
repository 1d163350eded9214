"""The composition root: wires the store, the worker and the API, then serves.

Imported lazily by ``entry`` for ``dockyard server`` only, so the client
commands start without loading the server's libraries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from dockyard.api.app import create_api
from dockyard.crypto.keys import FernetCipher, load_or_create_master_key, write_private_file
from dockyard.services.accounts import bootstrap_admin
from dockyard.services.context import Platform
from dockyard.services.events import Events
from dockyard.store.database import sqlite_url
from dockyard.store.repository import Store
from dockyard.worker.runner import Worker

log = logging.getLogger("dockyard.server")


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    host: str
    port: int
    database_url: str | None = None
    public_url: str | None = None
    workers: int = 4


def build_platform(settings: ServerSettings) -> Platform:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cipher = FernetCipher(load_or_create_master_key(settings.data_dir))
    store = Store(settings.database_url or sqlite_url(settings.data_dir), cipher)
    store.migrate()
    public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    platform = Platform(
        store=store,
        events=Events(),
        public_url=public_url.rstrip("/"),
        hold_seconds=float(os.environ.get("DOCKYARD_OPERATION_HOLD_SECONDS", "0")),
    )
    token = bootstrap_admin(platform)
    if token is not None:
        write_private_file(settings.data_dir / "admin-token", token + "\n")
        log.info("created the admin user; its token is in %s", settings.data_dir / "admin-token")
    return platform


def run(settings: ServerSettings) -> None:
    logging.basicConfig(
        level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    platform = build_platform(settings)
    worker = Worker(platform, concurrency=settings.workers)
    worker.start()
    api = create_api(platform)
    config = uvicorn.Config(
        api,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=os.environ.get("DOCKYARD_ACCESS_LOG", "1") != "0",
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        worker.stop()
        platform.store.close()
