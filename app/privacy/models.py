"""What is left of check-ins once they stop being identifiable: counts per place and hour."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class CheckInCount(Base):
    """Check-ins per place per hour (UTC), with no link to any device or staff user.

    `people` adds up the distinct people of each aggregated batch, so a person whose check-ins in
    one hour were aggregated in two runs counts twice: an upper bound, used for suppression.
    """

    __tablename__ = "checkin_counts"

    geofence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("geofences.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    checkins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    people: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
