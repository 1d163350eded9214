"""Domain errors to HTTP: ``{"error": code, "message": text}`` with one status each."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dockyard.domain import errors

STATUS = {
    errors.InvalidInput: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.CredentialsRejected: 502,
    errors.ImageNotFound: 502,
    errors.RegistryUnreachable: 502,
    errors.EngineUnreachable: 503,
}


def _status(exc: errors.DockyardError) -> int:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def _body(error: str, message: str, status: int) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "message": message}, status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.DockyardError)
    async def dockyard_error(_: Request, exc: errors.DockyardError) -> JSONResponse:
        return _body(exc.kind, exc.message, _status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field, never echo the input: it may be a secret value.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"invalid request: {where}: {first.get('msg', 'invalid')}"
        return _body("invalid", message, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return _body(code, str(exc.detail), exc.status_code)
