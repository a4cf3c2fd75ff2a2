"""What `GET /v1/me/export` returns (everything held about one resident device), and
`GET /v1/users/me/export` (everything held about the calling staff member)."""

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
    webhooks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Webhook messages about the device, pending or sent: the endpoint (the "
        "council's system it went to), the exact body, status, and the attempt log.",
    )
    retention: dict[str, str] = Field(description="How long each kind of data is kept.")


class StaffPhoto(BaseModel):
    id: str
    task_id: str
    content_type: str
    width: int
    height: int
    created_at: str
    data_base64: str = Field(description="The stored image (re-encoded on upload, no EXIF).")


class StaffExport(BaseModel):
    """What `GET /v1/users/me/export` returns: everything held about one staff member."""

    exported_at: str
    account: dict[str, Any] = Field(description="Name, email, role, status (never the password).")
    preferences: dict[str, Any] | None = Field(description="Notification settings and shift.")
    shifts: list[dict[str, Any]] = Field(
        description="Ad-hoc shifts and tracking pauses (`kind`), oldest first."
    )
    track: FeatureCollection = Field(
        description="Location history: the fixes still held (recent pings and the staff location "
        "history, STAFF_TRACK_RETENTION_DAYS), oldest first."
    )
    checkins: FeatureCollection
    events: FeatureCollection = Field(description="Enter/exit/dwell/... events about them.")
    presence: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = Field(description="Why each notification was sent or not.")
    ingest_keys: list[dict[str, Any]] = Field(description="GPS-app keys (labels, never the key).")
    task_transitions: list[dict[str, Any]] = Field(description="Task changes they made, notes.")
    tasks_created: list[dict[str, Any]]
    tasks_assigned: list[dict[str, Any]]
    photos: list[StaffPhoto] = Field(description="Completion photos they took.")
    activity: list[dict[str, Any]] = Field(description="Activity-feed events about them.")
    audit: list[dict[str, Any]] = Field(description="Audit-log entries of their actions.")
    webhooks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Webhook messages about them (as for a device): endpoint, body, attempts.",
    )
    retention: dict[str, str]


class StaffErased(BaseModel):
    """What erasing a staff member removed."""

    staff_user_id: str
    checkins_aggregated: int
    photos_deleted: int
