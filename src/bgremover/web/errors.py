"""Every error leaves as JSON ``{"error": {"code", "message"}}`` with the right status;
nothing internal (no stack trace) reaches a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..jobs.states import InvalidTransition, NotFound
from ..storage import StorageUnavailable, outage_reason

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status, stable code and human message."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, **extra}}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), exc.status)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc)), 404)

    @app.exception_handler(InvalidTransition)
    async def conflict(_: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse(error_body("invalid_transition", str(exc)), 409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return JSONResponse(error_body("invalid_request", details or "invalid request"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(StorageUnavailable)
    async def storage_down(_: Request, exc: StorageUnavailable) -> JSONResponse:
        return _unavailable("storage_unavailable", exc.reason, exc)

    @app.exception_handler(OSError)
    async def disk_error(request: Request, exc: OSError) -> JSONResponse:
        reason = outage_reason(exc)  # the data dir's disk is full too (staging an upload)
        if reason is None:
            return await internal(request, exc)
        return _unavailable("storage_unavailable", reason.replace("results ", ""), exc)

    @app.exception_handler(OperationalError)
    async def database_down(_: Request, exc: OperationalError) -> JSONResponse:
        # Away, or SQLite's "database or disk is full": reads go on, this change waits.
        return _unavailable("database_unavailable", "the database cannot take writes now", exc)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "Something went wrong on the server; see its log."), 500
        )


def _unavailable(code: str, reason: str, exc: Exception) -> JSONResponse:
    """503 for a dependency that cannot take writes now; the detail (paths, addresses)
    stays in the log."""
    log.warning("%s: %s", reason, exc)
    message = f"{reason[:1].upper()}{reason[1:]}: nothing was stored; try again later"
    return JSONResponse(error_body(code, message), 503, headers={"Retry-After": "30"})
