"""Custom domains of an app: list, add, remove; the router answers on them at once."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.domain import records
from dockyard.domain.domains import MAX_DOMAINS_PER_APP, DomainNotFound, parse_domain
from dockyard.domain.errors import InvalidInput
from dockyard.services import apps, certificates
from dockyard.services.context import Platform


@dataclass(frozen=True)
class Domains:
    app: str
    default: str  # <app>.<domain>, which every app keeps
    hosts: list[str]
    added: list[str]


def _answer(platform: Platform, app: records.App, added: list[str] | None = None) -> Domains:
    hosts = platform.store.domains(app.id).get(app.handle, [])
    return Domains(app.handle, f"{app.handle}.{platform.domain}", hosts, added or [])


def _route(platform: Platform, app: records.App) -> None:
    """Tell the router now; the reconciler also brings its names back after a restart."""
    if platform.router_ is not None:
        platform.router_.set_names(app.handle, platform.store.domains(app.id).get(app.handle, []))


def list_domains(platform: Platform, user: records.User, handle: str) -> Domains:
    return _answer(platform, apps.find(platform, user, handle))


def add(platform: Platform, user: records.User, handle: str, names: list[str]) -> Domains:
    """All of ``names`` or none: each a valid host no other app holds."""
    app = apps.find(platform, user, handle)
    if not names:
        raise InvalidInput("name at least one domain")
    hosts = sorted({parse_domain(name, platform.domain) for name in names})
    added = platform.store.add_domains(app, hosts, user.name, MAX_DOMAINS_PER_APP)
    _route(platform, app)
    certificates.domains_added(platform, app, added)
    return _answer(platform, app, added)


def remove(platform: Platform, user: records.User, handle: str, name: str) -> Domains:
    app = apps.find(platform, user, handle)
    host = name.strip().lower().removesuffix(".")
    if not platform.store.remove_domain(app.id, host):
        raise DomainNotFound(host, app.handle)
    _route(platform, app)
    certificates.domain_removed(platform, host)
    return _answer(platform, app)
