"""All SQL for notification rules: batched candidate look-ups, history, preferences, decisions.

The candidate queries read other domains' tables (places, offers, tasks, presence, check-ins)
read-only and set-based: one statement per batch of events, whatever its size.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.rules.models import NotificationDecision, NotificationPreference

CLOSED_TASK_STATUSES = ["done", "cancelled"]


async def places(
    session: AsyncSession, organisation_id: uuid.UUID, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Row[Any]]:
    rows = await session.execute(
        text(
            "SELECT id, name, category, opening_hours FROM geofences "
            "WHERE organisation_id = :org AND id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"org": organisation_id, "ids": ids},
    )
    return {r.id: r for r in rows}


OFFER_CANDIDATES = """
SELECT e.idx, o.id, o.title, o.body, o.url, o.category, o.valid_until,
       o.outside_opening_hours_ok, o.cooldown_s, o.max_per_person, o.max_total,
       o.quiet_hours_policy,
       (SELECT count(*) FROM offer_redemptions r WHERE r.offer_id = o.id) AS redeemed_total,
       (SELECT count(*) FROM offer_redemptions r
         WHERE r.offer_id = o.id AND r.device_id = :subject) AS redeemed_mine
FROM unnest(CAST(:idx AS int[]), CAST(:gid AS uuid[]), CAST(:cat AS varchar[]),
            CAST(:trig AS varchar[]), CAST(:at AS timestamptz[]))
     AS e(idx, geofence_id, category, trigger, at)
JOIN offers o
  ON o.organisation_id = :org AND o.deleted_at IS NULL AND o.status = 'active'
 AND o.audience = ANY(CAST(:aud AS varchar[]))
 AND e.trigger = ANY(o.triggers)
 AND (o.category = e.category
      OR EXISTS (SELECT 1 FROM offer_geofences og
                 WHERE og.offer_id = o.id AND og.geofence_id = e.geofence_id))
 AND (o.valid_from IS NULL OR o.valid_from <= e.at)
 AND (o.valid_until IS NULL OR o.valid_until > e.at - interval '1 day')
 AND (o.window_start IS NULL
      OR (o.window_start < o.window_end
          AND CAST(timezone(o.time_zone, e.at) AS time) >= o.window_start
          AND CAST(timezone(o.time_zone, e.at) AS time) < o.window_end)
      OR (o.window_start > o.window_end
          AND (CAST(timezone(o.time_zone, e.at) AS time) >= o.window_start
               OR CAST(timezone(o.time_zone, e.at) AS time) < o.window_end)))
ORDER BY e.idx, o.created_at, o.id
"""


async def offer_candidates(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    subject_id: uuid.UUID,
    audiences: list[str],
    keys: list[tuple[int, uuid.UUID, str, str, datetime]],
) -> list[Row[Any]]:
    """Live offers for each (idx, geofence_id, category, trigger, at), in one statement.

    Offers that ended within the last day are included (the caller records them as `expired`).
    """
    if not keys:
        return []
    rows = await session.execute(
        text(OFFER_CANDIDATES),
        {
            "org": organisation_id,
            "subject": subject_id,
            "aud": audiences,
            "idx": [k[0] for k in keys],
            "gid": [k[1] for k in keys],
            "cat": [k[2] for k in keys],
            "trig": [k[3] for k in keys],
            "at": [k[4] for k in keys],
        },
    )
    return list(rows)


async def task_candidates(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    geofence_ids: list[uuid.UUID],
    pool_geofence_ids: list[uuid.UUID],
) -> list[Row[Any]]:
    """The worker's open tasks at these places, and the unassigned pool tasks at `pool_...`."""
    if not geofence_ids:
        return []
    rows = await session.execute(
        text(
            """
            SELECT t.id, t.geofence_id, t.title, t.description, t.priority, t.status,
                   EXISTS (SELECT 1 FROM task_assignees a
                           WHERE a.task_id = t.id AND a.staff_user_id = :w) AS mine
            FROM tasks t
            WHERE t.organisation_id = :org
              AND t.status <> ALL(CAST(:closed AS varchar[]))
              AND (
                (t.geofence_id = ANY(CAST(:g AS uuid[]))
                 AND EXISTS (SELECT 1 FROM task_assignees a
                             WHERE a.task_id = t.id AND a.staff_user_id = :w))
                OR
                (t.geofence_id = ANY(CAST(:pool AS uuid[])) AND t.status = 'open'
                 AND NOT EXISTS (SELECT 1 FROM task_assignees a WHERE a.task_id = t.id))
              )
            ORDER BY t.geofence_id, t.id
            """
        ),
        {
            "org": organisation_id,
            "w": worker_id,
            "g": geofence_ids,
            "pool": pool_geofence_ids,
            "closed": CLOSED_TASK_STATUSES,
        },
    )
    return list(rows)


async def queued_history(
    session: AsyncSession,
    subject_id: uuid.UUID,
    offer_ids: list[uuid.UUID],
    task_ids: list[uuid.UUID],
    since: datetime,
) -> list[Row[Any]]:
    """This person's queued decisions about these offers/tasks, or since `since`."""
    rows = await session.execute(
        text(
            """
            SELECT kind, offer_id, task_id, geofence_id, created_at
            FROM notification_decisions
            WHERE subject_id = :s AND decision = 'queued'
              AND (offer_id = ANY(CAST(:o AS uuid[])) OR task_id = ANY(CAST(:t AS uuid[]))
                   OR created_at >= :since)
            """
        ),
        {"s": subject_id, "o": offer_ids, "t": task_ids, "since": since},
    )
    return list(rows)


async def staff_roles(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(
        text("SELECT id, role FROM staff_users WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"ids": ids},
    )
    return {r.id: r.role for r in rows}


async def preferences_of(
    session: AsyncSession, subject_ids: list[uuid.UUID]
) -> dict[uuid.UUID, NotificationPreference]:
    if not subject_ids:
        return {}
    stmt = select(NotificationPreference).where(
        NotificationPreference.device_id.in_(subject_ids)
        | NotificationPreference.staff_user_id.in_(subject_ids)
    )
    out: dict[uuid.UUID, NotificationPreference] = {}
    for p in (await session.execute(stmt)).scalars():
        key = p.device_id or p.staff_user_id
        assert key is not None
        out[key] = p
    return out


async def add(session: AsyncSession, row: NotificationPreference) -> None:
    session.add(row)
    await session.flush()


async def insert_decisions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(cast(Table, NotificationDecision.__table__)), rows)


async def decisions_for_events(
    session: AsyncSession, organisation_id: uuid.UUID, event_ids: list[uuid.UUID]
) -> list[Row[Any]]:
    if not event_ids:
        return []
    rows = await session.execute(
        text(
            """
            SELECT presence_event_id, id, kind, offer_id, task_id, notification_id, decision,
                   reason, deliver_after, device_id, staff_user_id
            FROM notification_decisions
            WHERE organisation_id = :org AND presence_event_id = ANY(CAST(:ids AS uuid[]))
            ORDER BY created_at, id
            """
        ),
        {"org": organisation_id, "ids": event_ids},
    )
    return list(rows)


async def people_at(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    checked_in_since: datetime,
) -> list[tuple[str, uuid.UUID]]:
    """(kind, id) of everyone inside/near the place now or checked in there since the time."""
    rows = await session.execute(
        text(
            """
            SELECT subject_kind AS kind, subject_id AS id FROM presence
             WHERE organisation_id = :org AND geofence_id = :g
               AND state IN ('inside', 'nearby')
            UNION
            SELECT CASE WHEN device_id IS NULL THEN 'staff' ELSE 'device' END,
                   coalesce(device_id, staff_user_id)
              FROM checkins
             WHERE organisation_id = :org AND geofence_id = :g AND recorded_at >= :since
            ORDER BY 1, 2
            """
        ),
        {"org": organisation_id, "g": geofence_id, "since": checked_in_since},
    )
    return [(r.kind, r.id) for r in rows]


async def live_place(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> Row[Any] | None:
    row = await session.execute(
        text(
            "SELECT id, name, category FROM geofences "
            "WHERE organisation_id = :org AND id = :g AND deleted_at IS NULL"
        ),
        {"org": organisation_id, "g": geofence_id},
    )
    return row.first()


async def staff_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, staff_id: uuid.UUID
) -> Row[Any] | None:
    row = await session.execute(
        text("SELECT id, role FROM staff_users WHERE organisation_id = :org AND id = :s"),
        {"org": organisation_id, "s": staff_id},
    )
    return row.first()
