"""Push subscriptions, notifications (the inbox), the outbox of every channel and the push log."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.subject import PersonOwned, owner_check


class Urgency(StrEnum):
    very_low = "very-low"
    low = "low"
    normal = "normal"
    high = "high"


class OutboxStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    gone = "gone"
    failed = "failed"
    dead = "dead"


class DeliveryStatus(StrEnum):
    delivered = "delivered"
    retry = "retry"
    gone = "gone"
    failed = "failed"
    dead = "dead"


class PushSubscription(UUIDPrimaryKey, Timestamps, PersonOwned, Base):
    """A browser's PushSubscription, owned by exactly one device or staff user."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (
        owner_check("one_owner"),
        Index("ix_push_subscriptions_device", "device_id"),
        Index("ix_push_subscriptions_staff_user", "staff_user_id"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(Text, unique=True)
    origin: Mapped[str] = mapped_column(String(300))
    p256dh: Mapped[str] = mapped_column(String(100))
    auth: Mapped[str] = mapped_column(String(40))
    expiration_time: Mapped[datetime | None] = mapped_column(default=None)
    user_agent: Mapped[str | None] = mapped_column(String(300), default=None)


class Notification(UUIDPrimaryKey, PersonOwned, Base):
    """One message for one person: the inbox entry, whether or not a push was sent."""

    __tablename__ = "notifications"
    __table_args__ = (
        owner_check("one_owner"),
        Index("ix_notifications_device_created", "device_id", "created_at"),
        Index("ix_notifications_staff_user_created", "staff_user_id", "created_at"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(String(2000), default=None)
    tag: Mapped[str | None] = mapped_column(String(100), default=None)
    topic: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(10), default=Urgency.normal.value)
    ttl_s: Mapped[int] = mapped_column(Integer)
    # Related ids (geofence_id, offer_id, task_id, presence_event_id, ...) as strings.
    related: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # "send" or why not ("suppressed:quiet_hours", ...): decided by the caller (notification rules).
    decision: Mapped[str] = mapped_column(String(60), default="send")
    # The exact plaintext pushed (JSON), so every retry sends the same bytes.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    opened_at: Mapped[datetime | None] = mapped_column(default=None)


class Channel(StrEnum):
    """A delivery channel: which sender takes an outbox row (docs/architecture.md)."""

    webpush = "webpush"
    webhook = "webhook"


class OutboxRow(UUIDPrimaryKey, Base):
    """The one outbox every delivery channel drains: one row is one message for one target.

    What all channels share lives here (status, attempts, the lease, the schedule); each channel
    adds its own keys as a single-table subclass (`OutboxJob` for Web Push, `WebhookMessage` in
    `app.webhooks.models`), so `select(OutboxJob)` reads only Web Push rows. A check constraint
    holds each channel's keys present.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(
            "(channel = 'webpush' AND notification_id IS NOT NULL AND origin IS NOT NULL "
            "AND expires_at IS NOT NULL) OR (channel = 'webhook' AND endpoint_id IS NOT NULL "
            "AND msg_id IS NOT NULL AND event_type IS NOT NULL AND occurred_at IS NOT NULL "
            "AND payload IS NOT NULL)",
            name="channel_keys",
        ),
        # each channel claims its own due rows, oldest first
        Index(
            "ix_outbox_due",
            "channel",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )
    __mapper_args__ = {"polymorphic_on": "channel"}

    channel: Mapped[str] = mapped_column(String(10))
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.pending.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxJob(OutboxRow):
    """A `webpush` row: one delivery of one notification to one subscription."""

    __mapper_args__ = {"polymorphic_identity": Channel.webpush.value}

    # nullable in the table (other channels' rows), never None on a Web Push row (the check)
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), nullable=True
    )
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="SET NULL")
    )
    # the push service's origin: the unit of the channel's concurrency cap
    origin: Mapped[str] = mapped_column(String(300), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(nullable=True)


# A channel's keys are indexed only on its own rows (partial indexes): a Web Push row costs no
# entry in the webhook indexes and the other way round.
Index(
    "ix_outbox_notification_id",
    OutboxJob.notification_id,
    postgresql_where=OutboxJob.notification_id.isnot(None),
)
Index(
    "ix_outbox_subscription_id",
    OutboxJob.subscription_id,
    postgresql_where=OutboxJob.subscription_id.isnot(None),
)


class Delivery(UUIDPrimaryKey, Base):
    """One attempt to hand one notification to one push service (the delivery log)."""

    __tablename__ = "push_deliveries"
    __table_args__ = (Index("ix_push_deliveries_org_attempted", "organisation_id", "attempted_at"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    outbox_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("outbox.id", ondelete="SET NULL"), index=True
    )
    notification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime]
    push_origin: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(12))
    http_status: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
