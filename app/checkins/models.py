"""Check-ins (theme 5): "I am here", by a resident device or a staff user."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey
from app.core.subject import PersonOwned, owner_check


class CheckIn(UUIDPrimaryKey, PersonOwned, Base):
    __tablename__ = "checkins"
    __table_args__ = (
        owner_check("exactly_one_subject"),
        Index("ix_checkins_device_recorded", "device_id", "recorded_at"),
        Index("ix_checkins_staff_recorded", "staff_user_id", "recorded_at"),
        Index("ix_checkins_geofence_recorded", "geofence_id", "recorded_at"),
        Index("ix_checkins_org_recorded", "organisation_id", "recorded_at"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    geofence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("geofences.id", ondelete="CASCADE"))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime]
    distance_m: Mapped[float] = mapped_column(Float)
    inside: Mapped[bool] = mapped_column(Boolean)
    place_open: Mapped[bool] = mapped_column(Boolean)
    implausible_jump: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # why: resolution figures, and for a flagged jump the previous fix, distance, time and speed
    explanation: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
