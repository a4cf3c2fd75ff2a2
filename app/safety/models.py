"""Lone working: task visits with an expected end, their alerts, the on-call list and the
per-category visit lengths (docs/tasks.md, "Lone working")."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey


class VisitState(StrEnum):
    active = "active"
    ended = "ended"


class AlertKind(StrEnum):
    overdue = "overdue"  # the visit ran over, the worker did not answer the prompt
    help = "help"  # the worker pressed "I need help"


class LoneVisit(UUIDPrimaryKey, Base):
    """A field worker inside a place for a task: from check-in or presence enter to check-out or
    exit. `due_at` is when it should end (start + expected length + extensions)."""

    __tablename__ = "lone_visits"
    __table_args__ = (
        # one live visit per worker and place: a second check-in or enter joins it
        Index(
            "uq_lone_visits_active",
            "worker_id",
            "geofence_id",
            unique=True,
            postgresql_where=text("state = 'active'"),
        ),
        # the scheduled job's scan: live visits by when they fall due
        Index("ix_lone_visits_due", "due_at", postgresql_where=text("state = 'active'")),
        CheckConstraint("state IN ('active', 'ended')", name="ck_lone_visits_state"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    geofence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("geofences.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), default=None
    )
    started_at: Mapped[datetime]
    started_by: Mapped[str] = mapped_column(String(10))  # checkin | presence
    expected_min: Mapped[int] = mapped_column(Integer)
    expected_from: Mapped[str] = mapped_column(String(10))  # task | template | category | default
    due_at: Mapped[datetime]
    extended_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    prompted_at: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[str] = mapped_column(String(8), default=VisitState.active.value)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    end_reason: Mapped[str | None] = mapped_column(String(10), default=None)  # checkout | exit


class SafetyAlert(UUIDPrimaryKey, Base):
    """An alarm about a worker, re-sent up the ladder until a person acknowledges it."""

    __tablename__ = "safety_alerts"
    __table_args__ = (
        # at most one alert per visit, whatever the number of replicas raising it
        Index("uq_safety_alerts_visit", "visit_id", unique=True),
        # the ladder's scan: unacknowledged alerts by their next re-send
        Index(
            "ix_safety_alerts_next_send",
            "next_send_at",
            postgresql_where=text("acknowledged_at IS NULL"),
        ),
        Index("ix_safety_alerts_org_raised", "organisation_id", "raised_at"),
        CheckConstraint("kind IN ('overdue', 'help')", name="ck_safety_alerts_kind"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    worker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    visit_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("lone_visits.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(8))
    raised_at: Mapped[datetime]
    # where and when the worker was last known to be (the visit's place, the last fix)
    geofence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("geofences.id", ondelete="SET NULL"), default=None
    )
    place_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    last_lon: Mapped[float | None] = mapped_column(Float, default=None)
    last_lat: Mapped[float | None] = mapped_column(Float, default=None)
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    level: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_send_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    ack_note: Mapped[str | None] = mapped_column(String(500), default=None)


class OnCallContact(Base):
    """Who is called when a worker's alarm is raised, in rank order (1 first)."""

    __tablename__ = "on_call_contacts"
    __table_args__ = (CheckConstraint("rank BETWEEN 1 AND 9", name="ck_on_call_rank"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    staff_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer)


class CategoryVisitLength(Base):
    """An organisation's expected visit length for a place category (minutes)."""

    __tablename__ = "category_visit_lengths"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    expected_duration_min: Mapped[int] = mapped_column(Integer)
