"""Subject rights (export, erasure) for resident devices, and the retention purge."""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.activity import service as activity_service
from app.core.config import Settings
from app.core.subject import SubjectRef
from app.notifications import service as notifications_service
from app.notifications.schemas import Recipient
from app.open311 import service as open311_service
from app.presence import service as presence_service
from app.privacy import repository
from app.privacy.schemas import (
    FeatureCollection,
    StaffErased,
    StaffExport,
    StaffPhoto,
    SubjectExport,
)
from app.shifts import service as shifts_service
from app.tasks import service as tasks_service
from app.webhooks import service as webhooks_service

logger = logging.getLogger(__name__)

# pg advisory lock key for the purge ("hbpurge" in ASCII, fits in a bigint)
PURGE_LOCK_KEY = 0x6862707572676500


def _feature(row: dict[str, Any]) -> dict[str, Any]:
    props = dict(row)
    lon, lat = props.pop("lon", None), props.pop("lat", None)
    geometry = (
        {"type": "Point", "coordinates": [lon, lat]}
        if lon is not None and lat is not None
        else None
    )
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _collection(items: list[dict[str, Any]]) -> FeatureCollection:
    return FeatureCollection(features=[_feature(r) for r in items])


def retention_summary(settings: Settings) -> dict[str, str]:
    return {
        "pings": f"{settings.ping_retention_h} hours",
        "staff_track": f"{settings.staff_track_retention_days} days (field workers' fixes)",
        "checkins": f"{settings.checkin_identifiable_days} days, then counts per place and hour",
        "events": f"{settings.presence_event_retention_days} days",
        "notifications": f"{settings.notification_retention_days} days",
        "deliveries": f"{settings.delivery_log_retention_days} days",
        "reports": f"exact location and contact fields until {settings.open311_closed_exact_days}"
        " days after closing, then rounded to about 100 m",
        "webhook_log": f"{settings.delivery_log_retention_days} days",
    }


async def export_device(
    session: AsyncSession, settings: Settings, device: dict[str, Any]
) -> SubjectExport:
    """Everything held about one device, spatial data as GeoJSON FeatureCollections."""
    data = await repository.export_rows(session, device["id"])
    return SubjectExport(
        exported_at=datetime.now(UTC).isoformat(),
        device=device,
        settings=data["settings"][0] if data["settings"] else None,
        pings=_collection(data["pings"]),
        checkins=_collection(data["checkins"]),
        events=_collection(data["events"]),
        presence=data["presence"],
        notifications=data["notifications"],
        deliveries=data["deliveries"],
        subscriptions=data["subscriptions"],
        redemptions=data["redemptions"],
        reports=_collection(await open311_service.export_device(session, device["id"])),
        webhooks=await webhooks_service.export_subject(session, device["id"]),
        retention=retention_summary(settings),
    )


async def erase_device(
    session: AsyncSession, organisation_id: uuid.UUID, device_id: uuid.UUID
) -> None:
    """Erase a resident device everywhere; its check-ins survive only as hourly counts.

    Deleting the device row revokes its token (only the token's hash was stored).
    """
    await repository.aggregate_checkins(session, "device_id = :d", d=device_id)
    await open311_service.erase_device(session, device_id)
    await presence_service.erase_subject(session, device_id)
    await notifications_service.erase_person(
        session, Recipient("device", device_id, organisation_id)
    )
    # webhook messages about the device, pending or sent, and their attempt log
    await webhooks_service.erase_subject(session, device_id)
    await repository.erase_device_rest(session, device_id)


async def export_staff(
    session: AsyncSession, settings: Settings, staff: dict[str, Any]
) -> StaffExport:
    """Everything held about one staff member, their completion photos included."""
    data = await repository.staff_export_rows(session, staff["id"])
    photos = await tasks_service.photos_of_staff(session, staff["id"])
    who = SubjectRef("staff", staff["id"], staff["organisation_id"])
    retention = retention_summary(settings) | {
        "checkins": f"{settings.staff_track_retention_days} days, then counts per place and hour",
        "photos": f"{settings.task_photo_retention_days} days after the task was closed",
    }
    return StaffExport(
        exported_at=datetime.now(UTC).isoformat(),
        account=staff,
        preferences=data["preferences"][0] if data["preferences"] else None,
        shifts=await shifts_service.export_periods(session, staff["id"]),
        track=_collection(data["track"]),
        checkins=_collection(data["checkins"]),
        events=_collection(data["events"]),
        presence=data["presence"],
        notifications=data["notifications"],
        deliveries=data["deliveries"],
        subscriptions=data["subscriptions"],
        decisions=data["decisions"],
        ingest_keys=data["ingest_keys"],
        task_transitions=data["task_transitions"],
        tasks_created=data["tasks_created"],
        tasks_assigned=data["tasks_assigned"],
        photos=[
            StaffPhoto(
                id=str(p.id),
                task_id=str(p.task_id),
                content_type=p.content_type,
                width=p.width,
                height=p.height,
                created_at=p.created_at.isoformat(),
                data_base64=base64.b64encode(p.data).decode(),
            )
            for p in photos
        ],
        activity=await activity_service.events_of(session, who),
        audit=data["audit"],
        webhooks=await webhooks_service.export_subject(session, staff["id"]),
        retention=retention,
    )


async def erase_staff(
    session: AsyncSession, organisation_id: uuid.UUID, staff_user_id: uuid.UUID
) -> StaffErased:
    """Erase a staff member's personal data; the council's work record stays, pseudonymised.

    Deleted: work tracks (pings, presence, events), check-ins (into the hourly counts first),
    inbox and push subscriptions, notification settings and decisions, GPS-app keys, and the
    completion photos they took. Kept: tasks, their transitions and notes, redemption desk
    checks, activity and audit entries — all pointing to the account, which is anonymised
    (no name, email or password) and deactivated, so its sessions end at once.
    """
    checkins = await repository.aggregate_checkins(session, "staff_user_id = :s", s=staff_user_id)
    await presence_service.erase_subject(session, staff_user_id)
    await notifications_service.erase_person(
        session, Recipient("staff", staff_user_id, organisation_id)
    )
    photos = await tasks_service.erase_photos_of_staff(session, staff_user_id)
    await repository.erase_staff_rest(session, staff_user_id)
    await accounts_service.anonymise_user(session, organisation_id, staff_user_id)
    return StaffErased(
        staff_user_id=str(staff_user_id), checkins_aggregated=checkins, photos_deleted=photos
    )


# --- retention --------------------------------------------------------------------------------

PURGES: dict[str, str] = {
    # presence events: the event log (pings and check-ins), about devices and staff
    "events": "WITH d AS (DELETE FROM presence_events WHERE occurred_at < :cutoff RETURNING 1) "
    "SELECT count(*) FROM d",
    # the delivery log (attempts); the outbox rows go with their notifications
    "deliveries": "WITH d AS (DELETE FROM push_deliveries WHERE attempted_at < :cutoff "
    "RETURNING 1) SELECT count(*) FROM d",
    # inbox entries and their payloads; their Web Push outbox rows cascade from them
    "notifications": "WITH d AS (DELETE FROM notifications WHERE created_at < :cutoff "
    "RETURNING 1) SELECT count(*) FROM d",
    # finished outbox rows of every channel: Web Push rows of notifications still held (their
    # payload is in the notification) and webhook messages (their payloads hold pseudonymous —
    # or, when an admin widened the scope, real — person ids); attempts cascade
    "outbox": "WITH d AS (DELETE FROM outbox WHERE status <> 'pending' "
    "AND coalesce(finished_at, created_at) < :cutoff RETURNING 1) SELECT count(*) FROM d",
    # the webhook attempt log
    "webhook_attempts": "WITH d AS (DELETE FROM webhook_attempts WHERE attempted_at < :cutoff "
    "RETURNING 1) SELECT count(*) FROM d",
}


def _hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def purge(
    session: AsyncSession, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """Remove everything past its retention period; returns what was removed, per kind."""
    now = now or datetime.now(UTC)
    days = timedelta(days=1)
    removed: dict[str, Any] = {}
    staff_cutoff = now - settings.staff_track_retention_days * days
    # field workers' fixes move to their location history before the pings' window removes
    # them (kept STAFF_TRACK_RETENTION_DAYS); residents' fixes go
    removed["staff_fixes_archived"] = await presence_service.archive_staff_pings(
        session, now - timedelta(hours=settings.ping_retention_h), staff_cutoff
    )
    partitions = await presence_service.maintain_ping_partitions(session, settings, now)
    removed["ping_partitions_dropped"] = partitions["dropped"]
    removed["staff_track_points"] = await repository.delete_older(
        session,
        "WITH d AS (DELETE FROM staff_track_points WHERE recorded_at < :cutoff RETURNING 1) "
        "SELECT count(*) FROM d",
        staff_cutoff,
    )
    removed["pings"] = await repository.delete_older(
        session,
        "WITH d AS (DELETE FROM pings WHERE recorded_at < :cutoff RETURNING 1) "
        "SELECT count(*) FROM d",
        now - timedelta(hours=settings.ping_retention_h),
    )
    # where an OwnTracks phone was last sent waypoints (app/ingest): a position, kept no longer
    # than the pings; without it the next message simply gets the waypoints again
    removed["waypoint_anchors"] = await repository.delete_older(
        session,
        "WITH d AS (DELETE FROM ingest_waypoint_anchors WHERE sent_at < :cutoff RETURNING 1) "
        "SELECT count(*) FROM d",
        now - timedelta(hours=settings.ping_retention_h),
    )
    removed["checkins_aggregated"] = await repository.aggregate_checkins(
        session,
        "(device_id IS NOT NULL AND recorded_at < :resident_cutoff) "
        "OR (staff_user_id IS NOT NULL AND recorded_at < :staff_cutoff)",
        # whole hours only, so every hour is counted in one run (exact distinct people)
        resident_cutoff=_hour(now - settings.checkin_identifiable_days * days),
        staff_cutoff=_hour(now - settings.staff_track_retention_days * days),
    )
    cutoffs = {
        "events": settings.presence_event_retention_days,
        "deliveries": settings.delivery_log_retention_days,
        "notifications": settings.notification_retention_days,
        "outbox": settings.delivery_log_retention_days,
        "webhook_attempts": settings.delivery_log_retention_days,
    }
    for kind, sql in PURGES.items():
        removed[kind] = await repository.delete_older(session, sql, now - cutoffs[kind] * days)
    # the activity feed's task, redemption, broadcast and report events: as long as presence's
    removed["activity"] = await activity_service.purge(
        session, settings.presence_event_retention_days * days, now
    )
    removed["reports_rounded"] = await open311_service.purge(session, settings, now)
    # completion photos go with their task's retention: this long after it was closed
    removed["task_photos"] = await tasks_service.purge_photos(
        session, settings.task_photo_retention_days * days, now
    )
    return removed


async def purge_once_guarded(
    session: AsyncSession, settings: Settings, now: datetime | None = None
) -> dict[str, Any] | None:
    """`purge` if no other process is running it (pg advisory lock), else None."""
    if not await repository.try_advisory_lock(session, PURGE_LOCK_KEY):
        return None
    return await purge(session, settings, now)
