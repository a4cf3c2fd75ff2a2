"""Webhook errors (problem+json)."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable


class EndpointNotFound(NotFound):
    code, title = "webhook-endpoint-not-found", "Webhook endpoint not found"


class MessageNotFound(NotFound):
    code, title = "webhook-message-not-found", "Webhook message not found"


class EndpointRefused(Unprocessable):
    code, title = "webhook-url-refused", "This URL cannot receive webhooks"


class TooManyEndpoints(Conflict):
    code, title = "too-many-webhook-endpoints", "Too many webhook endpoints"


class SecretKeyMissing(ServiceUnavailable):
    code, title = "webhook-secret-key-missing", "Webhook signing secrets cannot be stored"
