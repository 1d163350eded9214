"""Health checks over HTTP, as the router would reach a container."""

from __future__ import annotations

import http.client


def http_status(upstream: str, path: str, timeout: float = 2.0) -> int | None:
    """The status a container answers at ``host:port``, or None if none.

    Plain ``http.client``: a probe is one request on a connection of its own,
    and an httpx client would build an SSL context (about 20 ms) for each.
    """
    host, _, port = upstream.rpartition(":")
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
