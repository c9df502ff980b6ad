"""The service's error hierarchy and the one place that renders errors for clients.

Every error a client sees has the body ``{"error": <code>, "detail": <str | list | object>}``:
domain errors (:class:`ServiceError` subclasses) raised by use cases, request validation
(422, naming the field), unknown routes and methods, an unreachable database (503 with
``Retry-After``) and, as a last resort, anything unexpected (500 without a traceback; the
traceback goes to the server log). Messages never contain secrets or the database URL.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    detail: Any = None


class ServiceError(Exception):
    """Base of the errors use cases raise; each maps to one status code."""

    status_code = 500
    error = "internal_error"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class Unauthorized(ServiceError):
    status_code = 401
    error = "unauthorized"

    def __init__(self, detail: Any = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    """The key is valid but its scope does not allow the route (says nothing about data)."""

    status_code = 403
    error = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    error = "not_found"


class Conflict(ServiceError):
    status_code = 409
    error = "conflict"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error = "payload_too_large"


class InvalidInput(ServiceError):
    """A 422 raised by a use case; ``detail`` is a list of ``{"loc", "msg", "type"}``."""

    status_code = 422
    error = "validation_error"

    @classmethod
    def at(cls, loc: list[str | int], msg: str) -> InvalidInput:
        return cls([{"loc": loc, "msg": msg, "type": "value_error"}])


class TooManyRequests(ServiceError):
    status_code = 429
    error = "rate_limited"

    def __init__(self, detail: Any, retry_after_s: float) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class QuotaExceeded(TooManyRequests):
    """A per-tenant limit that clears with time (active jobs): 429 with ``Retry-After``."""

    error = "quota_exceeded"


class OverLimit(InvalidInput):
    """A per-tenant limit on one request (trials, steps, seeds of a job) that waiting can
    never clear: a 422 naming the limit, with no ``Retry-After``."""

    error = "over_limit"


class Unavailable(ServiceError):
    status_code = 503
    error = "unavailable"

    def __init__(self, detail: Any, retry_after_s: float) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


def error_response(
    status_code: int, error: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": detail}, status_code=status_code, headers=headers
    )


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only loc/msg/type: the offending input may be NaN, huge, or not serialisable.
    detail = []
    for err in exc.errors():
        loc = [part if isinstance(part, int | str) else str(part) for part in err.get("loc", ())]
        detail.append({"loc": loc, "msg": str(err.get("msg", "")), "type": err.get("type", "")})
    return detail


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether an exception (or what caused it: Optuna wraps SQLAlchemy's errors) means the
    database cannot be reached or did not answer in time."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        stack.extend((e.__cause__, e.__context__))
    return False


def install_error_handlers(app: FastAPI, *, retry_after_unavailable_s: int) -> None:
    """Render every error in the one shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status_code, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8): like any other bad
            # JSON, a 422 that names the body.
            return error_response(
                422,
                "validation_error",
                [{"loc": ["body"], "msg": "the body is not valid JSON", "type": "json_invalid"}],
            )
        codes = {404: "not_found", 405: "method_not_allowed"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only; the
            # answer names every method some route of this path allows.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail, headers
        )

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def _database_error(request: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
        if is_database_unavailable(exc):
            logger.warning(
                "database unavailable: %s", type(exc.orig if hasattr(exc, "orig") else exc).__name__
            )
            return _unavailable(retry_after_unavailable_s)
        if isinstance(exc, sa_exc.IntegrityError):
            # A concurrent request won a race (a unique key); the client may retry.
            return error_response(
                409, "conflict", "a concurrent request changed this resource; retry"
            )
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            return _unavailable(retry_after_unavailable_s)
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred; it was logged")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on the request's path, asked of each route through
    Starlette's public `matches` (routers included by FastAPI nest their routes)."""
    from starlette.routing import Match

    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _unavailable(retry_after_s: int) -> JSONResponse:
    return error_response(
        503,
        "unavailable",
        "the database is unreachable; retry later",
        {"Retry-After": str(retry_after_s)},
    )
