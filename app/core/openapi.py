"""OpenAPI post-processing: every operation documents its problem+json error responses.

FastAPI documents 422 as `application/json` with its own validation shape; Hereabouts answers every
error as RFC 9457 `application/problem+json`, so the schema says exactly that (Schemathesis checks
responses against it in CI).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "field": {"type": "string"},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "required": ["type", "title", "status"],
    "additionalProperties": True,
}

ERRORS = {
    "400": "Malformed request (e.g. invalid JSON)",
    "401": "Missing or invalid credentials",
    "403": "The caller's role may not do this",
    "404": "Not found (or not visible to the caller)",
    "409": "Conflicts with the current state",
    "413": "Body or batch too large",
    "422": "Validation failed; `errors` names the fields",
    "429": "Rate limited; see Retry-After",
    "503": "Database unavailable; retry shortly",
}
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def install_openapi(app: FastAPI) -> None:
    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code, description in ERRORS.items():
                    existing = responses.get(code)
                    if existing is None or code == "422":
                        responses[code] = {"description": description, "content": PROBLEM_CONTENT}
                    elif "content" not in existing:
                        existing["content"] = PROBLEM_CONTENT
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
