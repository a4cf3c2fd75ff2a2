"""The one event log shared by location pings and check-ins (`PresenceEvent`).

Every event records *why* it fired in `explanation` (distances, accuracy, margins, and for
suppressed candidates the reason), so staff and residents can be told.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey


class EventType(StrEnum):
    enter = "enter"
    exit = "exit"
    dwell = "dwell"
    nearby = "nearby"
    passed_through = "passed_through"
    checkin = "checkin"


class EventSource(StrEnum):
    ping = "ping"
    checkin = "checkin"


class PresenceEvent(UUIDPrimaryKey, Base):
    __tablename__ = "presence_events"
    __table_args__ = (
        Index("ix_presence_events_org_occurred", "organisation_id", "occurred_at"),
        Index("ix_presence_events_geofence_occurred", "geofence_id", "occurred_at"),
        Index("ix_presence_events_device_occurred", "device_id", "occurred_at"),
        Index("ix_presence_events_staff_occurred", "staff_user_id", "occurred_at"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    # exactly one of device_id / staff_user_id is set: who the event is about
    device_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), default=None
    )
    staff_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), default=None
    )
    geofence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("geofences.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(10))
    # the fix that caused it: its time (device clock) and, for pings, the client's ping id
    occurred_at: Mapped[datetime]
    ping_id: Mapped[str | None] = mapped_column(String(64), default=None)
    checkin_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    lon: Mapped[float | None] = mapped_column(default=None)
    lat: Mapped[float | None] = mapped_column(default=None)
    accuracy_m: Mapped[float | None] = mapped_column(default=None)
    explanation: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
