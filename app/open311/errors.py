"""Open311 errors. Under `/open311/v2/` they are rendered in the GeoReport error format (a list
of `{code, description}`, JSON or XML); the staff API renders them as problem+json."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, HereaboutsError, NotFound, Unprocessable


class BadRequest(HereaboutsError):
    """A required parameter is missing or a value is not acceptable (the spec's 400)."""

    status, code, title = 400, "open311-bad-request", "Bad request"


class InvalidApiKey(Forbidden):
    code, title = "open311-invalid-api-key", "Invalid api_key"


class ServiceNotFound(NotFound):
    code, title = "open311-service-not-found", "No such service"


class RequestNotFound(NotFound):
    code, title = "open311-request-not-found", "No such service request"


class DuplicateServiceCode(Conflict):
    code, title = "open311-duplicate-service-code", "Service code already used"


class InvalidService(Unprocessable):
    code, title = "open311-invalid-service", "Invalid service definition"
