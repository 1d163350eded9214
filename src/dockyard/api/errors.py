"""Domain errors to HTTP: ``{"error": code, "message": text}`` with one status each."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from dockyard.api.schemas import DOMAIN_ERROR, ErrorOut
from dockyard.domain import errors
from dockyard.domain.limits import TooLarge
from dockyard.domain.registries import SourceFailed

STATUS = {
    errors.InvalidInput: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.CredentialsRejected: 502,
    errors.ImageNotFound: 502,
    errors.RegistryUnreachable: 502,
    SourceFailed: 502,
    errors.EngineUnreachable: 503,
    TooLarge: 413,
}

INTERNAL_ERROR = "internal error: see the server log"
_NOT_JSON = "invalid request: the body is not valid JSON (UTF-8)"

_DESCRIPTIONS = {
    401: "Missing or invalid API token",
    403: "The token's user may not do this (admin only)",
    404: "No such app, user, operation or key, or not yours to see",
    409: "Conflicts with what exists, or too many operations are queued for the app",
    413: "The request body is over the server's limit",
    422: "The request is malformed or breaks a rule; the message says which",
    502: "A registry refused the credentials or the image, or a credential source failed",
    503: "The container engine cannot be reached",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries for the error answers a route can give."""
    return {
        status: {"model": ErrorOut, "description": _DESCRIPTIONS[status]} for status in statuses
    }


def _status(exc: errors.DockyardError) -> int:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _body(error: str, message: str, status: int) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "message": message}, status, headers=headers)


def _invalid_request(request: Request, exc: RequestValidationError) -> str:
    # Name the field, never echo the input: it may be a secret value.
    found = exc.errors()
    first = found[0] if found else {}
    if first.get("type") == DOMAIN_ERROR:
        return str(first["msg"])  # a domain rule's own message, written to be shown
    if first.get("type") == "json_invalid":
        return _NOT_JSON
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if not where and request.method in ("POST", "PUT", "PATCH"):
        media_type = request.headers.get("content-type", "").partition(";")[0].strip()
        if media_type.lower() != "application/json":
            return "invalid request: send a JSON body with Content-Type: application/json"
        return "invalid request: the body must be a JSON object"
    return f"invalid request: {where}: {first.get('msg', 'invalid')}"


def _allowed(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE:
            methods.update(route.methods or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.DockyardError)
    async def dockyard_error(_: Request, exc: errors.DockyardError) -> JSONResponse:
        return _body(exc.kind, exc.message, _status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _body("invalid", _invalid_request(request, exc), 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body that is not UTF-8: invalid input like any other.
            return _body("invalid", _NOT_JSON, 422)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        response = _body(code, str(exc.detail), exc.status_code)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of one route; RFC 9110 wants all the path's.
            response.headers["Allow"] = ", ".join(_allowed(request))
        return response

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so uvicorn logs the traceback and
        # drops the connection: ``Connection: close`` tells the client not to reuse
        # it, rather than find it reset under its next request.
        response = _body("internal", INTERNAL_ERROR, 500)
        response.headers["Connection"] = "close"
        return response
