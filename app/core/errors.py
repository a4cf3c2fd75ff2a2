"""Every error the API returns is RFC 9457 `application/problem+json`.

Domain code raises `HereaboutsError` subclasses carrying their HTTP status; one set of handlers
turns those, FastAPI's validation errors, Starlette's HTTP errors, database outages and anything
unexpected into problem documents.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://hereabouts.dev/problems/"


class HereaboutsError(Exception):
    """Base for domain errors: subclasses set `status`, `code` and `title`."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra or {}
        self.headers = headers or {}


class NotFound(HereaboutsError):
    status, code, title = 404, "not-found", "Not found"


class Unauthorized(HereaboutsError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(HereaboutsError):
    status, code, title = 403, "forbidden", "Not allowed"


class Conflict(HereaboutsError):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(HereaboutsError):
    status, code, title = 422, "unprocessable", "Unprocessable content"


class PayloadTooLarge(HereaboutsError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class TooManyRequests(HereaboutsError):
    status, code, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(HereaboutsError):
    status, code, title = 503, "unavailable", "Service unavailable"


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (code or str(status)),
        "title": title,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        field = ".".join(loc[1:]) if len(loc) > 1 else "".join(loc)
        errors.append(
            {"loc": loc, "field": field, "msg": err.get("msg", ""), "type": err.get("type", "")}
        )
    return errors


async def _handle_domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HereaboutsError)
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        code=exc.code,
        instance=request.url.path,
        headers=exc.headers,
        **exc.extra,
    )


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(
            400,
            "Malformed JSON",
            "The request body is not valid JSON.",
            code="malformed-json",
            instance=request.url.path,
            errors=errors,
        )
    fields = ", ".join(sorted({e["field"] for e in errors if e["field"]}))
    return problem(
        422,
        "Validation failed",
        f"Invalid fields: {fields}" if fields else "Invalid request.",
        code="validation",
        instance=request.url.path,
        errors=errors,
    )


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        404: "Not found",
        405: "Method not allowed",
        401: "Authentication required",
        403: "Not allowed",
        413: "Payload too large",
        415: "Unsupported media type",
    }
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette lists only the first matching route's methods; list every route's.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(
        exc.status_code,
        titles.get(exc.status_code, "HTTP error"),
        detail,
        instance=request.url.path,
        headers=headers,
    )


def _allowed_methods(request: Request) -> list[str]:
    """Methods the OpenAPI schema documents for the requested path."""
    import re

    matches: list[tuple[int, set[str]]] = []
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            matches.append((template.count("{"), {m.upper() for m in operations}))
    # a static path ("/import") wins over a parameterised one ("/{id}"), as in the router
    fewest = min((n for n, _ in matches), default=0)
    methods: set[str] = set()
    for n, ops in matches:
        if n == fewest:
            methods |= ops
    return sorted(methods)


async def _handle_integrity(request: Request, exc: Exception) -> JSONResponse:
    # A constraint the service layer did not pre-check: report it, never a 500.
    logger.info("integrity error on %s: %s", request.url.path, type(exc).__name__)
    return problem(
        409,
        "Conflict",
        "The change conflicts with existing data.",
        code="conflict",
        instance=request.url.path,
    )


OUTAGE_ERROR_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "ConnectionFailureError",
        "InterfaceError",
        "AdminShutdownError",
        "CrashShutdownError",
    }
)
# SQLSTATE classes of a server that is gone or not there yet: 08 connection exception,
# 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up, recovering)
OUTAGE_SQLSTATE_PREFIXES = ("08", "57P")


def is_database_outage(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it wraps, means the database is unreachable for now.

    SQLAlchemy wraps the driver's error (`orig` / `__cause__`) in its own, sometimes twice: a
    connection refused while PostgreSQL recovers from a crash arrives as a plain `DBAPIError`
    around asyncpg's `CannotConnectNowError`, so the whole chain is looked at.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, ConnectionError | OSError | TimeoutError):
            return True
        if type(current).__name__ in OUTAGE_ERROR_NAMES:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATE_PREFIXES):
            return True
        orig = getattr(current, "orig", None)
        current = current.__cause__ or (orig if isinstance(orig, BaseException) else None)
    return False


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_database_outage(exc):
        logger.warning("database unavailable on %s: %s", request.url.path, type(exc).__name__)
        return problem(
            503,
            "Service unavailable",
            "The database is unavailable; retry shortly.",
            code="unavailable",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )
    logger.exception("unhandled error on %s", request.url.path)
    return problem(
        500,
        "Internal server error",
        "An unexpected error occurred.",
        code="internal",
        instance=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HereaboutsError, _handle_domain)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(IntegrityError, _handle_integrity)
    # Registered by class so they are answered inside the app (no re-raise to the server).
    for exc_class in (OperationalError, InterfaceError, DBAPIError, OSError):
        app.add_exception_handler(exc_class, _handle_unexpected)
    app.add_exception_handler(Exception, _handle_unexpected)
