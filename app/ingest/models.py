"""Ingest keys (Traccar Client's `id`) and where an OwnTracks phone's waypoints were last sent."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey
from app.core.subject import PersonOwned, owner_check


class IngestKey(UUIDPrimaryKey, PersonOwned, Base):
    """A per-device key for apps that can only put a credential in the URL (Traccar Client).

    Only its SHA-256 is stored; it belongs to exactly one resident device or field worker and
    goes with them (foreign keys cascade). Revoking deletes the row.
    """

    __tablename__ = "ingest_keys"
    __table_args__ = (owner_check("one_subject"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    owner_indexed = True  # device_id, staff_user_id (PersonOwned), each indexed
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __mapper_args__ = {"eager_defaults": True}  # created_at comes back with the INSERT


class WaypointAnchor(PersonOwned, Base):
    """Where the last `setWaypoints` was sent to a subject's OwnTracks app (one row each)."""

    __tablename__ = "ingest_waypoint_anchors"

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    owner_indexed = True  # device_id, staff_user_id (PersonOwned), each indexed
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[datetime] = mapped_column(server_default=func.now())
