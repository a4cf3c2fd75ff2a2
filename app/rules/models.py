"""Notification preferences (quiet hours, opt-outs, daily budget, shifts) and the decision log.

Every candidate notification the rules consider (an offer or a task for a person, because of a
presence event; or a broadcast) is one `NotificationDecision` row: queued, or suppressed with the
reason. The same rows drive cooldowns, per-person caps and the daily budget.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Time,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey
from app.core.subject import PersonOwned, owner_check


class Reason(StrEnum):
    quiet_hours = "quiet_hours"
    budget = "budget"
    cooldown = "cooldown"
    opted_out = "opted_out"
    closed = "closed"
    implausible_jump = "implausible_jump"
    not_on_shift = "not_on_shift"
    expired = "expired"
    max_reached = "max_reached"
    outranked = "outranked"  # a more specific (or higher-priority, or newer) offer here won
    redeemed = "redeemed"  # the person has already redeemed it as often as it allows
    stale = "stale"
    no_subscription = "no_subscription"


class DecisionKind(StrEnum):
    offer = "offer"
    task = "task"
    broadcast = "broadcast"


class NotificationPreference(UUIDPrimaryKey, PersonOwned, Base):
    """One person's notification settings; no row = the defaults (see docs/rules.md)."""

    __tablename__ = "notification_preferences"
    __table_args__ = (owner_check("one_owner"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    owner_unique = True  # device_id, staff_user_id (PersonOwned): one row per person
    time_zone: Mapped[str] = mapped_column(String(64))
    # quiet hours (residents): local wall-clock window, end < start crosses midnight; both null=off
    quiet_start: Mapped[time | None] = mapped_column(Time(), default=None)
    quiet_end: Mapped[time | None] = mapped_column(Time(), default=None)
    opted_out_categories: Mapped[list[str]] = mapped_column(
        ARRAY(String(40)), default=list, server_default=text("'{}'")
    )
    # null = no daily limit
    max_per_day: Mapped[int | None] = mapped_column(Integer, default=None)
    # field workers: on-shift window (local, may cross midnight) on ISO weekdays (1=Mon..7=Sun)
    shift_start: Mapped[time | None] = mapped_column(Time(), default=None)
    shift_end: Mapped[time | None] = mapped_column(Time(), default=None)
    shift_days: Mapped[list[int] | None] = mapped_column(ARRAY(SmallInteger), default=None)
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class NotificationDecision(UUIDPrimaryKey, PersonOwned, Base):
    """One candidate notification and what the rules decided (queued or why not)."""

    __tablename__ = "notification_decisions"
    __table_args__ = (
        owner_check("one_owner"),
        CheckConstraint("decision IN ('queued', 'suppressed')", name="decision"),
        Index("ix_notification_decisions_subject_created", "subject_id", "created_at"),
        Index("ix_notification_decisions_subject_offer", "subject_id", "offer_id"),
        Index("ix_notification_decisions_subject_task", "subject_id", "task_id"),
        Index("ix_notification_decisions_offer", "offer_id"),
        Index("ix_notification_decisions_event", "presence_event_id"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    subject_id: Mapped[uuid.UUID] = mapped_column(
        Computed("coalesce(device_id, staff_user_id)", persisted=True)
    )
    presence_event_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("presence_events.id", ondelete="CASCADE"), default=None
    )
    notification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="SET NULL"), default=None
    )
    geofence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("geofences.id", ondelete="CASCADE"), default=None
    )
    kind: Mapped[str] = mapped_column(String(12))
    offer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE"), default=None
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), default=None
    )
    decision: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(40), default=None)
    # a deferred notification is pushed no earlier than this (end of quiet hours)
    deliver_after: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
