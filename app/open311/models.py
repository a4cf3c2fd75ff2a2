"""Open311 GeoReport v2: the services residents may report, client api keys, and the reports.

A report (`Open311Request`) always has a task (`app/tasks`) behind it: its status, notes and
update time are read from the task, so the council works reports exactly like any other task.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, Timestamps, UUIDPrimaryKey


class Open311Service(UUIDPrimaryKey, Timestamps, Base):
    """A kind of report (fly-tipping, pothole) and the task it becomes."""

    __tablename__ = "open311_services"
    __table_args__ = (UniqueConstraint("organisation_id", "code"),)

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    group: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    keywords: Mapped[list[str]] = mapped_column(
        ARRAY(String(100)), default=list, server_default=text("'{}'")
    )
    # the spec's attribute definitions: [{code, datatype, required, description, order, values}]
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # a report goes to the nearest live place of these categories within match_within_m
    place_categories: Mapped[list[str]] = mapped_column(
        ARRAY(String(64)), default=list, server_default=text("'{}'")
    )
    match_within_m: Mapped[float] = mapped_column(Float, default=50.0)
    # the task template
    task_title: Mapped[str] = mapped_column(String(200))
    task_priority: Mapped[str] = mapped_column(String(10), default="normal")
    task_due_s: Mapped[int | None] = mapped_column(Integer, default=None)
    requires_visit: Mapped[bool] = mapped_column(Boolean, default=False)
    task_expected_duration_min: Mapped[int | None] = mapped_column(Integer, default=None)
    # who gets it: these field workers (a named team), or none = the team pool
    assignee_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid()), default=list, server_default=text("'{}'")
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Open311ApiKey(UUIDPrimaryKey, Base):
    """A client application's key (shown once; only its SHA-256 is stored)."""

    __tablename__ = "open311_api_keys"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    rate_per_minute: Mapped[int] = mapped_column(Integer, default=60)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __mapper_args__ = {"eager_defaults": True}


class Open311Settings(Base):
    """Per organisation: may anyone read reports without a key."""

    __tablename__ = "open311_settings"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    public_read: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Open311Request(UUIDPrimaryKey, Base):
    """One report. Contact fields are staff-only; `duplicate_of` points at the first report."""

    __tablename__ = "open311_requests"
    __table_args__ = (
        Index("ix_open311_requests_org_requested", "organisation_id", "requested_at"),
        Index("ix_open311_requests_service_requested", "service_id", "requested_at"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    service_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("open311_services.id", ondelete="CASCADE")
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), index=True, default=None
    )
    geofence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("geofences.id", ondelete="SET NULL"), default=None
    )
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("open311_requests.id", ondelete="SET NULL"), default=None
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("open311_api_keys.id", ondelete="SET NULL"), default=None
    )
    token: Mapped[str] = mapped_column(String(40), unique=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    location_rounded: Mapped[bool] = mapped_column(Boolean, default=False)
    address_string: Mapped[str | None] = mapped_column(String(500), default=None)
    address_id: Mapped[str | None] = mapped_column(String(200), default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    media_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # contact fields: staff only, never in GeoReport GET answers
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    first_name: Mapped[str | None] = mapped_column(String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(String(200), default=None)
    phone: Mapped[str | None] = mapped_column(String(50), default=None)
    account_id: Mapped[str | None] = mapped_column(String(200), default=None)
    # the reporter's device, when it is one of this organisation's devices (status pushes)
    device_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True, default=None
    )
    requested_at: Mapped[datetime]
    updated_at: Mapped[datetime]
