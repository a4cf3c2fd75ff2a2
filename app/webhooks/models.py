"""Webhook endpoints, their rows of the one outbox (one per endpoint and event), the attempt log."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.notifications.models import Channel, OutboxRow


class EndpointStatus(StrEnum):
    enabled = "enabled"
    disabled = "disabled"


class MessageStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"  # gave up (3 days of failures) or its endpoint was disabled by a 410


class AttemptStatus(StrEnum):
    delivered = "delivered"
    retry = "retry"
    dead = "dead"


class WebhookEndpoint(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "webhook_endpoints"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    # optional filters: only events at these places / places of these categories
    geofence_ids: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(Uuid), default=None)
    categories: Mapped[list[str] | None] = mapped_column(ARRAY(String(40)), default=None)
    # person ids in payloads: pseudonymous (per endpoint) unless the admin widens the scope
    include_person_ids: Mapped[bool] = mapped_column(default=False)
    # `whsec_<base64>`; kept (not hashed) because every message is signed with it
    secret: Mapped[str] = mapped_column(String(300))
    previous_secret: Mapped[str | None] = mapped_column(String(300), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
    pseudonym_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(10), default=EndpointStatus.enabled.value)
    disabled_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    # the first failure since the last success (the circuit breaker's clock)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )


class WebhookMessage(OutboxRow):
    """A `webhook` row of the one outbox: one event for one endpoint (a replay is a new row with
    the same `msg_id`, so the receiver sees the same `webhook-id`)."""

    __mapper_args__ = {"polymorphic_identity": Channel.webhook.value}

    # nullable in the table (other channels' rows), never None on a webhook row (the check)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=True
    )
    msg_id: Mapped[str] = mapped_column(String(40), nullable=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    event_type: Mapped[str] = mapped_column(String(40), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(nullable=True)
    # the exact JSON body sent, fixed at enqueue time so every retry and replay sends the same bytes
    payload: Mapped[str] = mapped_column(Text, nullable=True)
    replay_of: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # the person (device or staff user) the event is about, for erasure: never sent
    subject_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


Index(
    "ix_outbox_endpoint_created",
    WebhookMessage.endpoint_id,
    WebhookMessage.created_at,
    postgresql_where=WebhookMessage.endpoint_id.isnot(None),
)
Index(
    "ix_outbox_subject_id",
    WebhookMessage.subject_id,
    postgresql_where=WebhookMessage.subject_id.isnot(None),
)


class WebhookAttempt(UUIDPrimaryKey, Base):
    """The delivery log: one row per attempt."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_at", "endpoint_id", "attempted_at"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox.id", ondelete="CASCADE"), index=True
    )
    msg_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10))
    http_status: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
