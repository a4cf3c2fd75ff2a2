"""Ingest domain errors (problem+json via the shared handler).

Their details never repeat what the caller sent: a Traccar ingest key travels in the URL, and
nothing of a request's credentials may reach a log line or an answer (docs/security.md).
"""

from __future__ import annotations

from app.core.errors import NotFound, Unauthorized, Unprocessable


class IngestKeyNotFound(NotFound):
    code = "ingest-key-not-found"
    title = "Ingest key not found"


class InvalidIngestCredentials(Unauthorized):
    code = "unauthorized"
    title = "Authentication required"


class BadIngestPayload(Unprocessable):
    code = "bad-ingest-payload"
    title = "The payload is not in the app's documented format"
