"""What is left of check-ins once they stop being identifiable: counts per place and hour."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class CheckInCount(Base):
    """Check-ins per place per hour (UTC), with no link to any device or staff user.

    The purge aggregates whole hours only, so each hour is counted in one run and `people` is the
    number of distinct people that hour (erasing a person adds their check-ins as they go).
    """

    __tablename__ = "checkin_counts"

    geofence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("geofences.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    # "device" (residents) or "staff"
    subject_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    checkins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    people: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
