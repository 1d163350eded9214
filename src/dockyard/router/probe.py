"""Health checks over HTTP, as the router would reach a container."""

from __future__ import annotations

import httpx


def http_status(upstream: str, path: str, timeout: float = 2.0) -> int | None:
    """The status a container answers at ``host:port``, or None if none."""
    try:
        response = httpx.get(f"http://{upstream}{path}", timeout=timeout)
    except httpx.HTTPError:
        return None
    return response.status_code
