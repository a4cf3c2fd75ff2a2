"""All SQL of the privacy domain: reading everything about a device, erasing and purging."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def rows(session: AsyncSession, sql: str, **params: Any) -> list[dict[str, Any]]:
    result = await session.execute(text(sql), params)
    return [dict(r._mapping) for r in result]


async def device_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, device_id: uuid.UUID
) -> dict[str, Any] | None:
    found = await rows(
        session,
        "SELECT id, organisation_id, platform, created_at, updated_at, last_seen_at "
        "FROM devices WHERE id = :d AND organisation_id = :o",
        d=device_id,
        o=organisation_id,
    )
    return found[0] if found else None


EXPORT_QUERIES: dict[str, str] = {
    "settings": "SELECT background_location, updated_at FROM device_settings WHERE device_id = :d",
    "pings": "SELECT client_id AS id, lon, lat, accuracy_m, speed_mps, heading, recorded_at, "
    "received_at, quality, late FROM pings WHERE subject_id = :d ORDER BY recorded_at",
    "checkins": "SELECT id, geofence_id, lon, lat, accuracy_m, recorded_at, distance_m, inside, "
    "place_open, implausible_jump, explanation, created_at FROM checkins "
    "WHERE device_id = :d ORDER BY recorded_at",
    "presence": "SELECT geofence_id, state, since, last_fix_at, evidence, pending_fixes, "
    "pending_since FROM presence "
    "WHERE subject_id = :d ORDER BY since",
    "events": "SELECT id, geofence_id, type, source, occurred_at, ping_id, checkin_id, lon, lat, "
    "accuracy_m, explanation, suppressed_reason, created_at FROM presence_events "
    "WHERE device_id = :d ORDER BY occurred_at, id",
    "notifications": "SELECT id, kind, title, body, url, tag, decision, related, created_at, "
    "opened_at FROM notifications WHERE device_id = :d ORDER BY created_at",
    "deliveries": "SELECT d.notification_id, d.attempt, d.attempted_at, d.push_origin, d.status, "
    "d.http_status FROM push_deliveries d JOIN notifications n ON n.id = d.notification_id "
    "WHERE n.device_id = :d ORDER BY d.attempted_at",
    "subscriptions": "SELECT id, endpoint, origin, expiration_time, user_agent, created_at "
    "FROM push_subscriptions WHERE device_id = :d ORDER BY created_at",
    "redemptions": "SELECT id, offer_id, geofence_id, redeemed_at FROM offer_redemptions "
    "WHERE device_id = :d ORDER BY redeemed_at",
}


STAFF_EXPORT_QUERIES: dict[str, str] = {
    "staff": "SELECT id, email, full_name, role, is_active, created_at, last_login_at "
    "FROM staff_users WHERE id = :s",
    # recent fixes (pings) and the older ones kept as the staff location history; a fix in both
    # while it is being archived is listed once
    "track": "SELECT client_id AS id, lon, lat, accuracy_m, speed_mps, heading, recorded_at, "
    "received_at, quality FROM pings WHERE subject_id = :s AND subject_kind = 'staff' "
    "UNION SELECT client_id, lon, lat, accuracy_m, speed_mps, heading, recorded_at, "
    "received_at, quality FROM staff_track_points WHERE staff_user_id = :s "
    "ORDER BY recorded_at, id",
    "checkins": "SELECT id, geofence_id, lon, lat, accuracy_m, recorded_at, distance_m, inside, "
    "place_open, implausible_jump, explanation, created_at FROM checkins "
    "WHERE staff_user_id = :s ORDER BY recorded_at",
    "presence": "SELECT geofence_id, state, since, last_fix_at, evidence, pending_fixes, "
    "pending_since FROM presence WHERE subject_id = :s AND subject_kind = 'staff' ORDER BY since",
    "events": "SELECT id, geofence_id, type, source, occurred_at, ping_id, checkin_id, lon, lat, "
    "accuracy_m, explanation, suppressed_reason, created_at FROM presence_events "
    "WHERE staff_user_id = :s ORDER BY occurred_at, id",
    "notifications": "SELECT id, kind, title, body, url, tag, decision, related, created_at, "
    "opened_at FROM notifications WHERE staff_user_id = :s ORDER BY created_at",
}


async def staff_export_rows(
    session: AsyncSession, staff_id: uuid.UUID
) -> dict[str, list[dict[str, Any]]]:
    return {
        name: await rows(session, sql, s=staff_id) for name, sql in STAFF_EXPORT_QUERIES.items()
    }


async def export_rows(
    session: AsyncSession, device_id: uuid.UUID
) -> dict[str, list[dict[str, Any]]]:
    return {name: await rows(session, sql, d=device_id) for name, sql in EXPORT_QUERIES.items()}


AGGREGATE_CHECKINS = """
WITH gone AS (
    DELETE FROM checkins WHERE {where} RETURNING organisation_id, geofence_id, recorded_at,
        coalesce(device_id, staff_user_id) AS who,
        CASE WHEN device_id IS NULL THEN 'staff' ELSE 'device' END AS kind
), counted AS (
    SELECT geofence_id, date_trunc('hour', recorded_at, 'UTC') AS hour, kind,
           min(organisation_id::text)::uuid AS organisation_id,
           count(*) AS checkins, count(DISTINCT who) AS people
    FROM gone GROUP BY 1, 2, 3
), merged AS (
    INSERT INTO checkin_counts (geofence_id, hour, subject_kind, organisation_id, checkins, people)
    SELECT geofence_id, hour, kind, organisation_id, checkins, people FROM counted
    ON CONFLICT (geofence_id, hour, subject_kind) DO UPDATE
    SET checkins = checkin_counts.checkins + EXCLUDED.checkins,
        people = checkin_counts.people + EXCLUDED.people
    RETURNING 1
)
SELECT coalesce(sum(checkins), 0) AS n FROM counted
"""


async def aggregate_checkins(session: AsyncSession, where: str, **params: Any) -> int:
    """Delete the check-ins matching `where`, adding them to the hourly counts first."""
    result = await session.execute(text(AGGREGATE_CHECKINS.format(where=where)), params)
    return int(result.scalar_one())


async def erase_device_rest(session: AsyncSession, device_id: uuid.UUID) -> None:
    """What other domains' erase functions leave: redemptions, then the device (token) itself."""
    await session.execute(
        text("DELETE FROM offer_redemptions WHERE device_id = :d"), {"d": device_id}
    )
    await session.execute(text("DELETE FROM devices WHERE id = :d"), {"d": device_id})


async def delete_older(session: AsyncSession, sql: str, cutoff: datetime) -> int:
    result = await session.execute(text(sql), {"cutoff": cutoff})
    return int(result.scalar_one())


async def try_advisory_lock(session: AsyncSession, key: int) -> bool:
    """A transaction-level advisory lock: released by the commit/rollback that ends the purge."""
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(result.scalar_one())
