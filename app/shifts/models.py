"""A field worker's own tracking periods: ad-hoc shifts and pauses (docs/tasks.md, "Shifts")."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey


class PeriodKind(StrEnum):
    shift = "shift"  # an ad-hoc shift: on shift from started_at until ended (or ends_by)
    pause = "pause"  # tracking paused: not located until resumed


class EndReason(StrEnum):
    worker = "worker"  # ended (or resumed) by the worker
    auto = "auto"  # an ad-hoc shift that reached its maximum length


class StaffPeriod(UUIDPrimaryKey, Base):
    """One ad-hoc shift or one pause. At most one open period of each kind per worker."""

    __tablename__ = "staff_periods"
    __table_args__ = (
        CheckConstraint("kind IN ('shift', 'pause')", name="kind"),
        CheckConstraint("end_reason IS NULL OR end_reason IN ('worker', 'auto')", name="reason"),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="order"),
        Index("ix_staff_periods_staff_started", "staff_user_id", "started_at"),
        Index(
            "uq_staff_periods_one_open",
            "staff_user_id",
            "kind",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    staff_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[datetime]
    # ad-hoc shifts end by themselves at this time (STAFF_ADHOC_SHIFT_MAX_H after the start)
    ends_by: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    end_reason: Mapped[str | None] = mapped_column(String(8), default=None)
