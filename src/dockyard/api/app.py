"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI

from dockyard import __version__
from dockyard.api import deps, errors
from dockyard.api.limits import BodyLimit
from dockyard.api.routes import (
    apps,
    certs,
    configuration,
    domains,
    git,
    operations,
    registries,
    releases,
    runs,
    users,
)
from dockyard.api.schemas import Health
from dockyard.services.context import Platform


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    # Sync routes and store calls run in this pool; log followers hold none.
    anyio.to_thread.current_default_thread_limiter().total_tokens = 100
    yield


def create_api(platform: Platform) -> FastAPI:
    api = FastAPI(
        title="Dockyard",
        version=__version__,
        lifespan=_lifespan,
        dependencies=[Depends(deps.refuse_nul)],
    )
    api.state.platform = platform
    errors.install(api)
    api.add_middleware(BodyLimit, limit=platform.limits.request_body)

    @api.get("/healthz", tags=["health"])
    def healthz() -> Health:
        return Health(status="ok", version=__version__)

    for module in (
        users,
        apps,
        configuration,
        operations,
        releases,
        runs,
        registries,
        domains,
        certs,
    ):
        api.include_router(module.router)
    # The git routes are written with the limits of what they read; their answers:
    api.include_router(git.router, responses=errors.responses(401, 404, 409, 413, 422))
    return api
