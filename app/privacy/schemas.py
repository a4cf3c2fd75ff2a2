"""What `GET /v1/me/export` returns (everything held about one resident device), and
`GET /v1/me/staff-export` (everything held about the calling staff member's work)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FeatureCollection(BaseModel):
    type: str = "FeatureCollection"
    features: list[dict[str, Any]]


class SubjectExport(BaseModel):
    exported_at: str
    device: dict[str, Any]
    settings: dict[str, Any] | None = Field(description="Privacy switches (background location).")
    pings: FeatureCollection = Field(description="Location fixes still held (retention applies).")
    checkins: FeatureCollection
    events: FeatureCollection = Field(description="Enter/exit/dwell/... events about the device.")
    presence: list[dict[str, Any]] = Field(description="Where the device is now, per place.")
    notifications: list[dict[str, Any]]
    deliveries: list[dict[str, Any]] = Field(description="Push attempts for those notifications.")
    subscriptions: list[dict[str, Any]]
    redemptions: list[dict[str, Any]]
    reports: FeatureCollection = Field(
        default_factory=lambda: FeatureCollection(features=[]),
        description="Open311 reports filed with this device as device_id, contact fields included.",
    )
    retention: dict[str, str] = Field(description="How long each kind of data is kept.")


class StaffExport(BaseModel):
    exported_at: str
    staff: dict[str, Any] = Field(description="Your account (never the password hash).")
    shifts: list[dict[str, Any]] = Field(
        description="Your ad-hoc shifts and tracking pauses (`kind`), oldest first."
    )
    track: FeatureCollection = Field(
        description="Your location history: the fixes still held (recent pings and the staff "
        "location history, STAFF_TRACK_RETENTION_DAYS), oldest first."
    )
    checkins: FeatureCollection
    events: FeatureCollection = Field(description="Enter/exit/dwell/... events about you.")
    presence: list[dict[str, Any]] = Field(description="Where you are now, per place.")
    notifications: list[dict[str, Any]]
    retention: dict[str, str] = Field(description="How long each kind of data is kept.")
