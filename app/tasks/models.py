"""Tasks at places, their assignees and the log of every status transition."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, Timestamps, UUIDPrimaryKey


class TaskStatus(StrEnum):
    open = "open"
    assigned = "assigned"
    in_progress = "in_progress"
    done = "done"
    cancelled = "cancelled"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


# a task in one of these is finished: no longer offered, listed as open, or near anyone
CLOSED_TASK_STATUSES = (TaskStatus.done.value, TaskStatus.cancelled.value)


class TaskAssignee(Base):
    __tablename__ = "task_assignees"

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    staff_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Task(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_org_status", "organisation_id", "status"),
        Index("ix_tasks_geofence_status", "geofence_id", "status"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    geofence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("geofences.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    priority: Mapped[str] = mapped_column(String(10), default=Priority.normal.value)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(12), default=TaskStatus.open.value)
    requires_visit: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # The check-in that proves the visit (set by the check-ins domain via `record_visit`).
    proof_checkin_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    proof_recorded_at: Mapped[datetime | None] = mapped_column(default=None)
    # How the visit was proved: "checkin" (proof_checkin_id) or "presence" (inside the place).
    proof_source: Mapped[str | None] = mapped_column(String(10), default=None)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    # lone working: how long a visit for this task should take (minutes); None = the place
    # category's default, else the organisation-wide setting (docs/tasks.md, "Lone working")
    expected_duration_min: Mapped[int | None] = mapped_column(Integer, default=None)

    assignee_links: Mapped[list[TaskAssignee]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def assignee_ids(self) -> list[uuid.UUID]:
        return sorted(link.staff_user_id for link in self.assignee_links)


class TaskTransition(UUIDPrimaryKey, Base):
    __tablename__ = "task_transitions"
    __table_args__ = (Index("ix_task_transitions_task_at", "task_id", "at"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    from_status: Mapped[str | None] = mapped_column(String(12), default=None)
    to_status: Mapped[str] = mapped_column(String(12))
    note: Mapped[str | None] = mapped_column(String(1000), default=None)
    at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))


class TaskPhoto(UUIDPrimaryKey, Base):
    """A photo taken when completing a task: re-encoded from the decoded image, so no EXIF."""

    __tablename__ = "task_photos"
    __table_args__ = (Index("ix_task_photos_task", "task_id", "created_at"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    content_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))
