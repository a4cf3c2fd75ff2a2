"""All SQL of the privacy domain: reading everything about a device, erasing and purging."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.presence.models import PRESENCE_LAST_FIX_AT


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
    "presence": "SELECT p.geofence_id, p.state, p.since, "
    f"{PRESENCE_LAST_FIX_AT} AS last_fix_at, p.evidence, p.pending_fixes, p.pending_since "
    "FROM presence p "
    "JOIN presence_subjects ps ON ps.subject_id = p.subject_id AND ps.subject_id = :d "
    "WHERE p.subject_id = :d ORDER BY p.since",
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


async def export_rows(
    session: AsyncSession, device_id: uuid.UUID
) -> dict[str, list[dict[str, Any]]]:
    return {name: await rows(session, sql, d=device_id) for name, sql in EXPORT_QUERIES.items()}


async def staff_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, staff_user_id: uuid.UUID
) -> dict[str, Any] | None:
    found = await rows(
        session,
        "SELECT id, organisation_id, email, full_name, role, is_active, created_at, updated_at, "
        "last_login_at FROM staff_users WHERE id = :s AND organisation_id = :o",
        s=staff_user_id,
        o=organisation_id,
    )
    return found[0] if found else None


# A staff member's own data (`GET /v1/users/me/export`): their work tracks as for a device, plus
# what they did (task transitions and notes, tasks created and assigned, audit entries).
STAFF_EXPORT_QUERIES: dict[str, str] = {
    "preferences": "SELECT time_zone, quiet_start, quiet_end, opted_out_categories, max_per_day, "
    "shift_start, shift_end, shift_days, updated_at FROM notification_preferences "
    "WHERE staff_user_id = :s",
    # recent fixes (pings) and the older ones kept as the staff location history; a fix in both
    # while it is being archived is listed once
    "track": "SELECT client_id AS id, lon, lat, accuracy_m, speed_mps, heading, recorded_at, "
    "received_at, quality FROM pings WHERE subject_id = :s AND subject_kind = 'staff' "
    "UNION SELECT client_id, lon, lat, accuracy_m, speed_mps, heading, recorded_at, "
    "received_at, quality FROM staff_track_points WHERE staff_user_id = :s "
    "ORDER BY recorded_at, id",
    "checkins": EXPORT_QUERIES["checkins"].replace("device_id = :d", "staff_user_id = :s"),
    "presence": EXPORT_QUERIES["presence"].replace(":d", ":s"),
    "events": EXPORT_QUERIES["events"].replace("device_id = :d", "staff_user_id = :s"),
    "notifications": EXPORT_QUERIES["notifications"].replace(
        "device_id = :d", "staff_user_id = :s"
    ),
    "deliveries": EXPORT_QUERIES["deliveries"].replace("n.device_id = :d", "n.staff_user_id = :s"),
    "subscriptions": EXPORT_QUERIES["subscriptions"].replace(
        "device_id = :d", "staff_user_id = :s"
    ),
    "decisions": "SELECT id, geofence_id, kind, offer_id, task_id, decision, reason, created_at "
    "FROM notification_decisions WHERE staff_user_id = :s ORDER BY created_at",
    "ingest_keys": "SELECT id, label, created_at FROM ingest_keys WHERE staff_user_id = :s "
    "ORDER BY created_at",
    "task_transitions": "SELECT tr.task_id, t.title, tr.from_status, tr.to_status, tr.note, tr.at "
    "FROM task_transitions tr JOIN tasks t ON t.id = tr.task_id WHERE tr.actor_id = :s "
    "ORDER BY tr.at, tr.id",
    "tasks_created": "SELECT id, title, status, geofence_id, created_at FROM tasks "
    "WHERE created_by = :s ORDER BY created_at",
    "tasks_assigned": "SELECT t.id, t.title, t.status, t.geofence_id, t.due_at "
    "FROM task_assignees a JOIN tasks t ON t.id = a.task_id WHERE a.staff_user_id = :s "
    "ORDER BY t.created_at",
    "audit": "SELECT action, entity_type, entity_id, details, at FROM audit_log "
    "WHERE actor_id = :s ORDER BY at, id",
}


async def staff_export_rows(
    session: AsyncSession, staff_user_id: uuid.UUID
) -> dict[str, list[dict[str, Any]]]:
    return {
        name: await rows(session, sql, s=staff_user_id)
        for name, sql in STAFF_EXPORT_QUERIES.items()
    }


# What erasing a staff member deletes (their tracks, inbox, settings and keys) and scrubs
# (their name and email where the audit log repeated them); docs/privacy.md, "Staff members".
STAFF_ERASE = (
    "DELETE FROM notification_decisions WHERE staff_user_id = :s",
    "DELETE FROM notification_preferences WHERE staff_user_id = :s",
    "DELETE FROM ingest_waypoint_anchors WHERE staff_user_id = :s",
    "DELETE FROM ingest_keys WHERE staff_user_id = :s",
    "UPDATE audit_log SET actor_email = NULL WHERE actor_id = :s",
    "UPDATE audit_log SET details = details - 'email' - 'full_name' "
    "WHERE entity_type = 'user' AND entity_id = :s",
)


async def erase_staff_rest(session: AsyncSession, staff_user_id: uuid.UUID) -> None:
    for sql in STAFF_ERASE:
        await session.execute(text(sql), {"s": staff_user_id})


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
