"""The API client: JSON requests, errors as ``ApiError``, followed log streams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from dockyard.cli.environment import ExitCode

_EXIT_FOR_STATUS = {
    401: ExitCode.UNAUTHORIZED,
    403: ExitCode.UNAUTHORIZED,
    404: ExitCode.NOT_FOUND,
    409: ExitCode.CONFLICT,
    422: ExitCode.INVALID,
}


class ApiError(Exception):
    def __init__(
        self, message: str, exit_code: ExitCode = ExitCode.ERROR, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status  # the server's HTTP status; None if it did not answer


def _error_from(response: httpx.Response) -> ApiError:
    try:
        message = str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        message = f"the server answered {response.status_code} {response.reason_phrase}"
    exit_code = _EXIT_FOR_STATUS.get(response.status_code, ExitCode.ERROR)
    return ApiError(message, exit_code, response.status_code)


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _unreachable(self, exc: Exception) -> ApiError:
        reason = str(exc) or type(exc).__name__
        return ApiError(
            f"cannot reach the Dockyard server at {self.url}: {reason}", ExitCode.UNREACHABLE
        )

    def lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        """A streamed text response, line by line, until the server ends it."""
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def follow(self, operation_id: int, patience: float = 60.0) -> Iterator[dict[str, Any]]:
        """Yield an operation's log events until its ``end`` event.

        Reconnects from the last line seen when the connection drops, for up
        to ``patience`` seconds, so a restarting server does not lose the tail.
        """
        after = 0
        lost_since: float | None = None
        while True:
            try:
                with self._http.stream(
                    "GET",
                    f"/operations/{operation_id}/logs",
                    params={"follow": "true", "after": after},
                    timeout=httpx.Timeout(30.0, read=None),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _error_from(response)
                    lost_since = None
                    for raw in response.iter_lines():
                        if not raw:
                            continue
                        event = json.loads(raw)
                        if event.get("id"):
                            after = event["id"]
                        yield event
                        if event["kind"] == "end":
                            return
            except httpx.TransportError as exc:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > patience:
                    raise self._unreachable(exc) from exc
                time.sleep(0.5)
