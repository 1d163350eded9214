"""Health checks over HTTP, as the router would reach a container."""

from __future__ import annotations

import httpx


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status a container answers on ``127.0.0.1:port``, or None if none."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    except httpx.HTTPError:
        return None
    return response.status_code
