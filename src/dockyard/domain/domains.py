"""Custom domains: the host names an app answers on besides ``<app>.<domain>``.

A name belongs to one app at a time. A wildcard (``*.shop.example``) stands
for every name one label below it, as a TLS certificate's would; a request
for a name an app holds exactly goes to that app before any wildcard.
"""

from __future__ import annotations

import re

from dockyard.domain.errors import Conflict, InvalidInput, NotFound

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_DOMAINS_PER_APP = 100


class InvalidDomain(InvalidInput):
    def __init__(self, text: str, why: str) -> None:
        super().__init__(f"{text!r} is not a domain an app can have: {why}")


class DomainTaken(Conflict):
    def __init__(self, host: str, app: str | None) -> None:
        holder = f"app {app!r}" if app else "another app"
        super().__init__(f"the domain {host} belongs to {holder}: remove it there first")


class TooManyDomains(InvalidInput):
    def __init__(self, limit: int) -> None:
        super().__init__(f"an app may have at most {limit} domains")


class DomainNotFound(NotFound):
    def __init__(self, host: str, app: str) -> None:
        super().__init__(f"app {app!r} has no domain {host}")


def parse_domain(text: str, platform_domain: str) -> str:
    """The host name as Dockyard stores it (lower case, no trailing dot), or why not."""
    host = text.strip().lower().removesuffix(".")
    if not host:
        raise InvalidDomain(text, "it is empty")
    if len(host) > 253:
        raise InvalidDomain(text, "it is longer than 253 characters")
    wildcard = host.startswith("*.")
    labels = host[2:].split(".") if wildcard else host.split(".")
    if "*" in ".".join(labels):
        raise InvalidDomain(
            text, "a wildcard is allowed only as the whole first label (*.example.com)"
        )
    if len(labels) < 2:
        raise InvalidDomain(text, "it needs at least two labels (example.com)")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidDomain(
                text, f"the label {label!r} must be 1-63 letters, digits or '-', not at an end"
            )
    if labels[-1].isdigit():
        raise InvalidDomain(text, "it is an IP address, not a host name")
    own = platform_domain.lower().removesuffix(".")
    bare = ".".join(labels)
    if bare == own or bare.endswith("." + own):
        raise InvalidDomain(
            text, f"names under the platform's own domain {own} are given to apps by their handle"
        )
    return host
