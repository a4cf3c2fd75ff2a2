"""Organisations, staff users and anonymous resident devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Timestamps, UUIDPrimaryKey


class Role(StrEnum):
    admin = "admin"
    editor = "editor"
    field_worker = "field_worker"


class Organisation(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "organisations"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Upper bound for one geofence's area, in km² (docs/quality.md, "Bad input").
    max_geofence_area_km2: Mapped[float | None] = mapped_column(default=None)
    # IANA zone of times in text for people (pushes); None: the HEREABOUTS_TIME_ZONE setting
    time_zone: Mapped[str | None] = mapped_column(String(64), default=None)


# an erased staff account's password hash: not an argon2 hash, so no password matches it
ERASED_PASSWORD_HASH = "!"


class StaffUser(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "staff_users"
    __table_args__ = (Index("uq_staff_users_email_lower", func.lower(text("email")), unique=True),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(Enum(Role, name="staff_role", native_enum=False, length=20))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    # Every access token carries the version it was issued under; raising it (deactivation, a
    # role change, a password reset) makes all earlier tokens fail at their next request.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    @property
    def erased(self) -> bool:
        """Erased (docs/privacy.md): kept as a pseudonym for past work, never signed in again."""
        return self.password_hash == ERASED_PASSWORD_HASH


class Device(UUIDPrimaryKey, Timestamps, Base):
    """An anonymous resident's phone or browser. Only a hash of its token is stored."""

    __tablename__ = "devices"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    platform: Mapped[str | None] = mapped_column(String(32), default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
