"""The events of the pipeline that no source keeps as an event row of its own.

Ping and check-in events are the `presence_events` log; task transitions, offer redemptions,
broadcasts and Open311 reports are recorded here by the `activity` hook of the event pipeline
(`app.activity.service.store_hook`), so the console's activity feed reads two tables, not six.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.subject import PersonOwned


class ActivityEvent(PersonOwned, Base):
    """One recorded event (`app.events.types.Event`) of a task, offer, broadcast or report.

    The person (device or staff member) may be absent: a transition by the system, a report
    without a device. The row goes with its device (cascade); a staff member's erasure keeps
    it under their pseudonymised account (docs/privacy.md).
    """

    __tablename__ = "activity_events"
    __table_args__ = (
        Index("ix_activity_events_org_occurred", "organisation_id", "occurred_at", "id"),
        Index("ix_activity_events_geofence_occurred", "geofence_id", "occurred_at"),
    )
    owner_indexed = True

    # the event's own id (`Event.id`): a webhook message about it carries the same
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(12))
    occurred_at: Mapped[datetime]
    geofence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("geofences.id", ondelete="SET NULL"), default=None
    )
    data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
