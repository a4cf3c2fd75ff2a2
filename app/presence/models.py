"""The one event log shared by location pings and check-ins (`PresenceEvent`).

Every event records *why* it fired in `explanation` (distances, accuracy, margins, and for
suppressed candidates the reason), so staff and residents can be told.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UUIDPrimaryKey
from app.core.subject import PersonOwned
from app.geofences.models import Geofence

# the fill of the tables whose rows every evaluated fix updates (migration 0045)
FILLFACTOR = 70


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


class PresenceEvent(UUIDPrimaryKey, PersonOwned, Base):
    __tablename__ = "presence_events"
    __table_args__ = (
        Index("ix_presence_events_org_occurred", "organisation_id", "occurred_at"),
        Index("ix_presence_events_geofence_occurred", "geofence_id", "occurred_at"),
        Index("ix_presence_events_device_occurred", "device_id", "occurred_at"),
        Index("ix_presence_events_staff_occurred", "staff_user_id", "occurred_at"),
        Index("ix_presence_events_org_created", "organisation_id", "created_at", "id"),
    )

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    # exactly one of device_id / staff_user_id is set: who the event is about
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
    # Set for a candidate that was *not* emitted (late fix, implausible jump, ...): kept in the
    # log for staff review and explanations, never handed to notification rules.
    suppressed_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class PingQuality(StrEnum):
    """Why a stored fix may or may not trigger anything (docs/quality.md, "Pings and check-ins")."""

    ok = "ok"
    unusable_accuracy = "unusable_accuracy"  # accuracy missing, zero, negative, NaN or infinite
    low_accuracy = "low_accuracy"  # accuracy above settings.ping_max_accuracy_m
    implausible_jump = "implausible_jump"  # implied speed above settings.implausible_speed_mps


class SubjectKind(StrEnum):
    device = "device"
    staff = "staff"


class PresenceState(StrEnum):
    outside = "outside"
    nearby = "nearby"
    inside = "inside"


class DeviceSetting(Base):
    """Per-device privacy switches owned by the presence domain (background location)."""

    __tablename__ = "device_settings"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    # Privacy default: off until the resident opts in (docs/quality.md, "Privacy defaults").
    background_location: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class Ping(Base):
    """One location fix, partitioned by day on `recorded_at` (retention = drop a partition).

    The day partitions (`pings_pYYYYMMDD`) are created by the SQL function
    `hereabouts_ensure_ping_partitions(from_day, to_day)` (migration 0007): at startup, by the
    maintenance call and by every batch for the days it touches. The primary key includes the
    partition key, as PostgreSQL requires; a retry with the same client id but another
    `recorded_at` is caught by the dedupe query across partitions (see docs/presence.md).
    """

    __tablename__ = "pings"
    # no index besides the primary key: every read is by subject, the purge and the staff
    # archive by `recorded_at` (the day partitions); one more index was one more write per fix
    # (migration 0045)
    __table_args__ = ({"postgresql_partition_by": "RANGE (recorded_at)"},)

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(8))
    organisation_id: Mapped[uuid.UUID]
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float, default=None)
    speed_mps: Mapped[float | None] = mapped_column(Float, default=None)
    heading: Mapped[float | None] = mapped_column(Float, default=None)
    quality: Mapped[str] = mapped_column(String(20))
    # older than the subject's last evaluated fix when it arrived: stored, never evaluated
    late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class StaffTrackPoint(Base):
    """A field worker's fix kept past the pings' window: the staff location history.

    Staff fixes are stored in `pings` like everyone's; before a ping partition is dropped or
    its expired rows deleted, the staff rows among them are copied here
    (`repository.archive_staff_pings`), and the retention purge deletes them after
    `STAFF_TRACK_RETENTION_DAYS` (docs/privacy.md). Only fixes taken on shift ever reach
    `pings` (docs/tasks.md, "Shifts").
    """

    __tablename__ = "staff_track_points"
    __table_args__ = (Index("ix_staff_track_points_recorded", "recorded_at"),)

    staff_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float, default=None)
    speed_mps: Mapped[float | None] = mapped_column(Float, default=None)
    heading: Mapped[float | None] = mapped_column(Float, default=None)
    quality: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime]


class QueuedPing(Base):
    """A fix acknowledged with 202 and not yet evaluated (asynchronous ingest, migration 0028).

    The evaluator (app/presence/evaluator.py) claims a subject's queued fixes, evaluates them like
    a synchronous batch and deletes them in the same transaction as the pings and events it
    writes. Values are kept as received (the evaluation normalises them as for a batch).
    """

    __tablename__ = "ping_queue"
    __table_args__ = (
        UniqueConstraint("subject_id", "client_id", name="uq_ping_queue_subject_client"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    subject_id: Mapped[uuid.UUID]
    subject_kind: Mapped[str] = mapped_column(String(8))
    # not indexed: the queue holds seconds of fixes, which an organisation's deletion (the
    # foreign key's cascade) scans; an index was one more write per fix (migration 0045)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    client_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float, default=None)
    speed_mps: Mapped[float | None] = mapped_column(Float, default=None)
    heading: Mapped[float | None] = mapped_column(Float, default=None)
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class PresenceSubject(Base):
    """Per device / field worker: the last evaluated fix (the lateness cursor) and a row lock.

    Every batch starts by upserting this row, which serialises concurrent batches of the same
    subject so transitions are always evaluated in one order.
    """

    __tablename__ = "presence_subjects"
    # room in each page for the updated row (its last fix, every evaluated set): HOT updates,
    # no new index entries (migration 0045)
    __table_args__ = ({"postgresql_with": {"fillfactor": FILLFACTOR}},)

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(8))
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    last_fix_at: Mapped[datetime | None] = mapped_column(default=None)
    last_lon: Mapped[float | None] = mapped_column(Float, default=None)
    last_lat: Mapped[float | None] = mapped_column(Float, default=None)
    last_accuracy_m: Mapped[float | None] = mapped_column(Float, default=None)
    # where the subject has stayed put lately (app/presence/engine.py, `Stay`)
    stay: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class Presence(Base):
    """Where a subject is relative to one place, and what is pending there.

    No row means `outside`; a row with state `outside` means outside with an enter pending
    (evidence gathered from fixes so far, never shown as presence). See app/presence/engine.py.
    """

    __tablename__ = "presence"
    __table_args__ = (
        Index("ix_presence_geofence_id", "geofence_id"),
        CheckConstraint("state IN ('outside', 'nearby', 'inside')", name="state"),
        # room in each page for updated rows (a fix that changes what is pending there): HOT
        # updates, no new index entries (migration 0045)
        {"postgresql_with": {"fillfactor": FILLFACTOR}},
    )

    subject_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    geofence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("geofences.id", ondelete="CASCADE"), primary_key=True
    )
    subject_kind: Mapped[str] = mapped_column(String(8))
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    state: Mapped[str] = mapped_column(String(8))
    since: Mapped[datetime]
    last_fix_at: Mapped[datetime]
    dwell_emitted: Mapped[bool] = mapped_column(Boolean, default=False)
    # not inside: the enter evidence so far; inside, while an exit is pending: the last fix's
    # distance out, in its own exit margins
    evidence: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    # the fixes behind the pending enter, or 1 while an exit waits for its second fix
    pending_fixes: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    pending_since: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


# A presence row's last fix, in SQL over `presence p` and `presence_subjects ps`: the subject's.
# Every place a subject has a row for is measured at each of its fixes (a deleted place's row
# is removed by its next one), so that is the row's last fix too; the engine writes a row again
# only when its state or what is pending there changes, and `p.last_fix_at` is the fix that
# last did
PRESENCE_LAST_FIX_AT = "ps.last_fix_at"


# The batch resolver needs the organisation's largest trigger distance (its search reach) in
# O(log n): this index on the geofences table serves `ORDER BY trigger_distance_m DESC LIMIT 1`.
Index(
    "ix_geofences_org_trigger_distance",
    Geofence.organisation_id,
    Geofence.trigger_distance_m.desc(),
    postgresql_where=text("deleted_at IS NULL"),
)
