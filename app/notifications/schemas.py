"""Request and response bodies for push subscriptions, the inbox and the delivery log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.subject import SubjectRef
from app.core.types import BoundedEpochMillis
from app.notifications.endpoints import validate_auth, validate_p256dh


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(max_length=100, description="base64url uncompressed P-256 point")
    auth: str = Field(max_length=40, description="base64url 16-byte secret")

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        validate_p256dh(value)
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        validate_auth(value)
        return value


class SubscriptionCreate(BaseModel):
    """The browser's `PushSubscription.toJSON()`."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=2048)
    expirationTime: BoundedEpochMillis | None = Field(  # noqa: N815 - the browser's spelling
        default=None, description="epoch milliseconds, as browsers send it"
    )
    keys: SubscriptionKeys


class SubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint: str
    origin: str
    expiration_time: datetime | None
    created_at: datetime
    updated_at: datetime


class VapidPublicKey(BaseModel):
    public_key: str = Field(description="base64url applicationServerKey for pushManager.subscribe")


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    title: str
    body: str
    url: str | None
    tag: str | None
    related: dict[str, Any]
    decision: str
    created_at: datetime
    opened_at: datetime | None


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    notification_id: uuid.UUID | None
    subscription_id: uuid.UUID | None
    attempt: int
    attempted_at: datetime
    push_origin: str
    status: str
    http_status: int | None
    latency_ms: float | None
    error: str | None


# Who a notification is for: a resident device or a staff user, in an organisation.
Recipient = SubjectRef


@dataclass(frozen=True)
class NotificationPayload:
    """What the person sees. `tag` groups replaceable notifications (and derives the Topic)."""

    title: str
    body: str = ""
    url: str | None = None
    tag: str | None = None
    kind: str = "message"
    data: dict[str, Any] = field(default_factory=dict)
