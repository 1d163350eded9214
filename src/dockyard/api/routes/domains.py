"""Custom domains: ``/apps/{handle}/domains``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from dockyard.api.deps import CurrentUser, PlatformDep
from dockyard.api.errors import responses
from dockyard.api.schemas import DomainName, DomainsIn, DomainsOut, HandlePath
from dockyard.services import domains
from dockyard.services.domains import Domains

router = APIRouter(tags=["domains"])

DomainPath = Annotated[DomainName, Path(description="A domain of the app, e.g. www.example.com")]


def domains_out(found: Domains) -> DomainsOut:
    return DomainsOut(app=found.app, default=found.default, hosts=found.hosts, added=found.added)


@router.get("/apps/{handle}/domains", responses=responses(401, 404, 422))
def list_domains(handle: HandlePath, platform: PlatformDep, user: CurrentUser) -> DomainsOut:
    return domains_out(domains.list_domains(platform, user, handle))


@router.post("/apps/{handle}/domains", responses=responses(401, 404, 409, 413, 422))
def add_domains(
    handle: HandlePath, body: DomainsIn, platform: PlatformDep, user: CurrentUser
) -> DomainsOut:
    return domains_out(domains.add(platform, user, handle, body.hosts))


@router.delete("/apps/{handle}/domains/{host}", responses=responses(401, 404, 422))
def remove_domain(
    handle: HandlePath, host: DomainPath, platform: PlatformDep, user: CurrentUser
) -> DomainsOut:
    return domains_out(domains.remove(platform, user, handle, host))
