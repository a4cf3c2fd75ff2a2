"""Offers and their redemptions.

An offer applies to the union of its listed places (`offer_geofences`) and, when `category` is
set, every place of that category in the organisation ("all libraries" is one offer).
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Time,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, Timestamps, UUIDPrimaryKey

TITLE_MAX = 80
# Web Push payloads are limited to ~4 KB encrypted and platforms truncate visible text well
# before that; 240 characters shows in full on Android, iOS and desktop notification centres.
BODY_MAX = 240
URL_MAX = 2048
TOLD_COOLDOWN_DEFAULT_S = 604_800  # a person is told about the same offer at most once a week


class Trigger(StrEnum):
    checkin = "checkin"
    enter = "enter"
    dwell = "dwell"
    nearby = "nearby"


class Audience(StrEnum):
    residents = "residents"
    staff = "staff"
    all = "all"


class OfferStatus(StrEnum):
    draft = "draft"
    active = "active"
    paused = "paused"
    ended = "ended"


class QuietHoursPolicy(StrEnum):
    drop = "drop"
    defer = "defer"


class OfferGeofence(Base):
    __tablename__ = "offer_geofences"

    offer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE"), primary_key=True
    )
    geofence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("geofences.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Offer(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_org_status", "organisation_id", "status"),
        Index("ix_offers_org_category", "organisation_id", "category"),
        CheckConstraint(
            "valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from", name="validity"
        ),
        CheckConstraint(
            "(window_start IS NULL) = (window_end IS NULL) "
            "AND (window_start IS NULL) = (time_zone IS NULL)",
            name="time_window",
        ),
        CheckConstraint("max_per_person >= 1", name="max_per_person"),
        CheckConstraint("told_max IS NULL OR told_max >= 1", name="told_max"),
        CheckConstraint("max_total IS NULL OR max_total >= 1", name="max_total"),
        CheckConstraint("cooldown_s >= 0", name="cooldown"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    body: Mapped[str] = mapped_column(String(BODY_MAX))
    url: Mapped[str | None] = mapped_column(String(URL_MAX), default=None)
    image_url: Mapped[str | None] = mapped_column(String(URL_MAX), default=None)
    category: Mapped[str | None] = mapped_column(String(40), default=None)
    triggers: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    valid_from: Mapped[datetime | None] = mapped_column(default=None)
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    # Local wall-clock window in `time_zone`; end < start means it crosses midnight.
    window_start: Mapped[time | None] = mapped_column(Time(), default=None)
    window_end: Mapped[time | None] = mapped_column(Time(), default=None)
    time_zone: Mapped[str | None] = mapped_column(String(64), default=None)
    outside_opening_hours_ok: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # told: at most `told_max` pushes per person (None = no count cap), `cooldown_s` apart
    cooldown_s: Mapped[int] = mapped_column(Integer, default=TOLD_COOLDOWN_DEFAULT_S)
    told_max: Mapped[int | None] = mapped_column(Integer, default=None)
    # redeem: at most `max_per_person` redemptions per device
    max_per_person: Mapped[int] = mapped_column(Integer, default=1)
    # among equally specific offers at a place, the higher priority wins the push (then newest)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_total: Mapped[int | None] = mapped_column(Integer, default=None)
    audience: Mapped[str] = mapped_column(String(16), default=Audience.residents.value)
    status: Mapped[str] = mapped_column(String(16), default=OfferStatus.draft.value)
    quiet_hours_policy: Mapped[str] = mapped_column(String(8), default=QuietHoursPolicy.drop.value)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)

    geofence_links: Mapped[list[OfferGeofence]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def geofence_ids(self) -> list[uuid.UUID]:
        return sorted(link.geofence_id for link in self.geofence_links)


class OfferRedemption(UUIDPrimaryKey, Base):
    __tablename__ = "offer_redemptions"
    __table_args__ = (
        Index("ix_offer_redemptions_offer_device", "offer_id", "device_id"),
        Index("ux_offer_redemptions_org_code", "organisation_id", "code", unique=True),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    geofence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("geofences.id", ondelete="SET NULL"), default=None
    )
    redeemed_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    # the short single-use code the resident shows at the desk (None: redeemed before codes)
    code: Mapped[str | None] = mapped_column(String(8), default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)  # the desk accepted it
    used_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None
    )
