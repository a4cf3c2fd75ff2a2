"""All SQL for notification rules: batched candidate look-ups, history, preferences, decisions.

The candidate queries read other domains' tables (places, offers, tasks, presence, check-ins)
read-only and set-based: one statement per batch of events, whatever its size.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, and_, insert, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection, render_sql
from app.offers import predicates as offer_predicates
from app.offers.models import Offer
from app.rules.models import NotificationDecision, NotificationPreference
from app.tasks.models import CLOSED_TASK_STATUSES

# --- the decision path: one statement per kind of look-up for all the people of a call ------
#
# `on_events` decides for every person whose events a transaction recorded (the ping path
# evaluates the batches of many devices together, across organisations): each look-up below takes
# the keys of all of them as column arrays, each key carrying its organisation (every join filters
# on it), so a call costs the same statements for 1 person as for 50. Raw asyncpg on the
# transaction's own connection (app.core.db.driver_connection): these are on the ping hot path.

# The people (their role if staff, and stored preferences) and the places of a call's events, in
# one statement: rows of kind 'p' (person) and 'g' (place).
CONTEXT_SQL = """
SELECT 'p' AS k, k.subject AS id, s.role, p.time_zone, p.quiet_start, p.quiet_end,
       p.opted_out_categories, p.max_per_day, p.shift_start, p.shift_end, p.shift_days,
       p.found, NULL::uuid AS organisation_id, NULL::text AS name, NULL::text AS category,
       NULL::jsonb AS opening_hours
FROM unnest($1::uuid[], $2::uuid[], $3::bool[]) AS k(subject, org, staff)
LEFT JOIN staff_users s ON k.staff AND s.id = k.subject AND s.organisation_id = k.org
LEFT JOIN LATERAL (
    SELECT time_zone, quiet_start, quiet_end, opted_out_categories, max_per_day, shift_start,
           shift_end, shift_days, true AS found
    FROM notification_preferences
    WHERE NOT k.staff AND device_id = k.subject AND organisation_id = k.org
    UNION ALL
    SELECT time_zone, quiet_start, quiet_end, opted_out_categories, max_per_day, shift_start,
           shift_end, shift_days, true
    FROM notification_preferences
    WHERE k.staff AND staff_user_id = k.subject AND organisation_id = k.org
) p ON true
UNION ALL
SELECT 'g', g.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       g.organisation_id, g.name, g.category, g.opening_hours
FROM unnest($4::uuid[], $5::uuid[]) AS k(org, id)
JOIN geofences g ON g.organisation_id = k.org AND g.id = k.id
"""


@dataclass(frozen=True)
class StoredPrefs:
    """A person's `notification_preferences` row (the fields the rules read)."""

    time_zone: str
    quiet_start: time | None
    quiet_end: time | None
    opted_out_categories: list[str] | None
    max_per_day: int | None
    shift_start: time | None
    shift_end: time | None
    shift_days: list[int] | None


@dataclass(frozen=True)
class PersonRow:
    role: str | None  # staff: their role in the organisation; residents: None
    prefs: StoredPrefs | None  # None = the defaults


@dataclass(frozen=True)
class Place:
    id: uuid.UUID
    name: str
    category: str | None
    opening_hours: dict[str, Any] | None


@dataclass
class Context:
    people: dict[uuid.UUID, PersonRow]
    places: dict[tuple[uuid.UUID, uuid.UUID], Place]  # by (organisation_id, geofence_id)


def _json(value: Any) -> Any:
    # SQLAlchemy's asyncpg set-up leaves json/jsonb as text for its own types to parse
    return json.loads(value) if isinstance(value, str) else value


async def context(
    session: AsyncSession,
    people: list[tuple[uuid.UUID, uuid.UUID, bool]],
    places: list[tuple[uuid.UUID, uuid.UUID]],
) -> Context:
    """Role (staff) and stored preferences of each (subject_id, organisation_id, is_staff), and
    the places (deleted ones too) of each (organisation_id, geofence_id), in one statement."""
    out = Context({}, {})
    if not people and not places:
        return out
    conn = await driver_connection(session)
    rows = await conn.fetch(
        CONTEXT_SQL,
        [k[0] for k in people],
        [k[1] for k in people],
        [k[2] for k in people],
        [k[0] for k in places],
        [k[1] for k in places],
    )
    for r in rows:
        if r["k"] == "g":
            out.places[(r["organisation_id"], r["id"])] = Place(
                r["id"], r["name"], r["category"], _json(r["opening_hours"])
            )
            continue
        prefs = None
        if r["found"]:
            prefs = StoredPrefs(
                r["time_zone"],
                r["quiet_start"],
                r["quiet_end"],
                r["opted_out_categories"],
                r["max_per_day"],
                r["shift_start"],
                r["shift_end"],
                r["shift_days"],
            )
        out.people[r["id"]] = PersonRow(r["role"], prefs)
    return out


# "this offer is live here" (app.offers.predicates), looking one day further back so that an offer
# that has just ended is recorded as `expired` rather than silently missing
_O = Offer.__table__.alias("o")
_E_AT: ColumnElement[Any] = literal_column("e.at")
_OFFER_LIVE_HERE = render_sql(
    and_(
        offer_predicates.standing(_O),
        offer_predicates.has_trigger(_O, literal_column("e.trigger")),
        offer_predicates.applies_at_place(
            _O, literal_column("e.geofence_id"), literal_column("e.category")
        ),
        offer_predicates.valid_at(_O, _E_AT, ended_within_days=1),
        offer_predicates.in_daily_window(_O, _E_AT),
    ),
    _O,
)
OFFER_CANDIDATES_SQL = f"""
SELECT e.idx, o.id, o.title, o.body, o.url, o.category, o.valid_until,
       o.outside_opening_hours_ok, o.cooldown_s, o.told_max, o.max_per_person, o.max_total,
       o.quiet_hours_policy, o.priority,
       CASE WHEN EXISTS (SELECT 1 FROM offer_geofences l
                         WHERE l.offer_id = o.id AND l.geofence_id = e.geofence_id) THEN 'place'
            WHEN o.category = e.category THEN 'category'
            ELSE 'organisation' END AS specificity,
       (SELECT count(*) FROM offer_redemptions r WHERE r.offer_id = o.id) AS redeemed_total,
       (SELECT count(*) FROM offer_redemptions r
         WHERE r.offer_id = o.id AND r.device_id = e.subject) AS redeemed_mine
FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::varchar[], $5::uuid[], $6::varchar[],
            $7::varchar[], $8::timestamptz[])
     AS e(idx, org, subject, audience, geofence_id, category, trigger, at)
JOIN offers o
  ON o.organisation_id = e.org AND (o.audience = e.audience OR o.audience = 'all')
 AND {_OFFER_LIVE_HERE}
ORDER BY e.idx,
         CASE WHEN EXISTS (SELECT 1 FROM offer_geofences l
                           WHERE l.offer_id = o.id AND l.geofence_id = e.geofence_id) THEN 2
              WHEN o.category = e.category THEN 1 ELSE 0 END DESC,
         o.priority DESC, o.created_at DESC, o.id
"""


@dataclass(frozen=True)
class OfferKey:
    """One (event, trigger) to match offers for; `idx` names the event in the caller's list."""

    idx: int
    organisation_id: uuid.UUID
    subject_id: uuid.UUID
    audience: str  # "residents" or "staff" (offers for "all" match both)
    geofence_id: uuid.UUID
    category: str | None
    trigger: str
    at: datetime


@dataclass(frozen=True)
class OfferRow:
    idx: int
    id: uuid.UUID
    title: str
    body: str
    url: str | None
    category: str | None
    valid_until: datetime | None
    outside_opening_hours_ok: bool
    cooldown_s: int
    told_max: int | None
    max_per_person: int
    max_total: int | None
    quiet_hours_policy: str
    priority: int
    specificity: str  # "place" (listed for it), "category" (its category's) or "organisation"
    redeemed_total: int
    redeemed_mine: int


async def offer_candidates(session: AsyncSession, keys: list[OfferKey]) -> list[OfferRow]:
    """Live offers for every key, in one statement, ordered by key, then the order in which they
    compete for the place's one push: most specific first (the place's own offer, then its
    category's), then the higher `priority`, then the newest.

    Offers that ended within the last day are included (the caller records them as `expired`).
    """
    if not keys:
        return []
    conn = await driver_connection(session)
    rows = await conn.fetch(
        OFFER_CANDIDATES_SQL,
        [k.idx for k in keys],
        [k.organisation_id for k in keys],
        [k.subject_id for k in keys],
        [k.audience for k in keys],
        [k.geofence_id for k in keys],
        [k.category for k in keys],
        [k.trigger for k in keys],
        [k.at for k in keys],
    )
    return [OfferRow(*r) for r in rows]


TASK_CANDIDATES_SQL = """
SELECT k.worker, t.id, t.geofence_id, t.title, t.description, t.priority, t.status, m.mine
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bool[]) AS k(worker, org, geofence_id, pool)
JOIN tasks t
  ON t.organisation_id = k.org AND t.geofence_id = k.geofence_id
 AND t.status <> ALL($5::varchar[])
CROSS JOIN LATERAL (
    SELECT EXISTS (SELECT 1 FROM task_assignees a
                   WHERE a.task_id = t.id AND a.staff_user_id = k.worker) AS mine
) m
WHERE m.mine
   OR (k.pool AND t.status = 'open'
       AND NOT EXISTS (SELECT 1 FROM task_assignees a WHERE a.task_id = t.id))
ORDER BY k.worker, t.geofence_id, t.id
"""


@dataclass(frozen=True)
class TaskRow:
    worker: uuid.UUID
    id: uuid.UUID
    geofence_id: uuid.UUID
    title: str
    description: str | None
    priority: str
    status: str
    mine: bool


async def task_candidates(
    session: AsyncSession, keys: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bool]]
) -> list[TaskRow]:
    """For each (worker_id, organisation_id, geofence_id, pool): the worker's open tasks at the
    place, and (when `pool`) the unassigned open tasks there. One statement for all workers."""
    if not keys:
        return []
    conn = await driver_connection(session)
    rows = await conn.fetch(
        TASK_CANDIDATES_SQL,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
        list(CLOSED_TASK_STATUSES),
    )
    return [TaskRow(*r) for r in rows]


# Each person's queued decisions since their own `since`, plus older ones about the offers and
# tasks they are now candidates for (the branches are disjoint: no row is returned twice).
QUEUED_HISTORY_SQL = """
SELECT d.subject_id, d.kind, d.offer_id, d.task_id, d.geofence_id, d.created_at
FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS k(subject, org, since)
JOIN notification_decisions d
  ON d.subject_id = k.subject AND d.organisation_id = k.org AND d.decision = 'queued'
 AND d.created_at >= k.since
UNION ALL
SELECT d.subject_id, d.kind, d.offer_id, d.task_id, d.geofence_id, d.created_at
FROM unnest($4::uuid[], $5::uuid[], $6::timestamptz[], $7::uuid[])
     AS k(subject, org, since, offer_id)
JOIN notification_decisions d
  ON d.subject_id = k.subject AND d.organisation_id = k.org AND d.decision = 'queued'
 AND d.offer_id = k.offer_id AND d.created_at < k.since
UNION ALL
SELECT d.subject_id, d.kind, d.offer_id, d.task_id, d.geofence_id, d.created_at
FROM unnest($8::uuid[], $9::uuid[], $10::timestamptz[], $11::uuid[])
     AS k(subject, org, since, task_id)
JOIN notification_decisions d
  ON d.subject_id = k.subject AND d.organisation_id = k.org AND d.decision = 'queued'
 AND d.task_id = k.task_id AND d.created_at < k.since
"""


@dataclass(frozen=True)
class HistoryRow:
    subject_id: uuid.UUID
    kind: str
    offer_id: uuid.UUID | None
    task_id: uuid.UUID | None
    geofence_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True)
class HistoryKey:
    """One person's window: every queued decision since `since`, and any about these ids."""

    subject_id: uuid.UUID
    organisation_id: uuid.UUID
    since: datetime
    offer_ids: list[uuid.UUID]
    task_ids: list[uuid.UUID]


async def queued_history(session: AsyncSession, keys: list[HistoryKey]) -> list[HistoryRow]:
    """The queued decisions of each key's person (one statement for all of them)."""
    if not keys:
        return []
    offers = [(k, o) for k in keys for o in k.offer_ids]
    tasks = [(k, t) for k in keys for t in k.task_ids]
    conn = await driver_connection(session)
    rows = await conn.fetch(
        QUEUED_HISTORY_SQL,
        [k.subject_id for k in keys],
        [k.organisation_id for k in keys],
        [k.since for k in keys],
        [k.subject_id for k, _ in offers],
        [k.organisation_id for k, _ in offers],
        [k.since for k, _ in offers],
        [o for _, o in offers],
        [k.subject_id for k, _ in tasks],
        [k.organisation_id for k, _ in tasks],
        [k.since for k, _ in tasks],
        [t for _, t in tasks],
    )
    return [HistoryRow(*r) for r in rows]


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
        out[p.owner_id] = p
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


# --- the offer funnel: every candidate of an offer, by outcome ------------------------------

OFFER_FUNNEL_SQL = text(
    """
    SELECT d.decision, d.reason,
           CASE WHEN d.decision <> 'queued' THEN NULL
                WHEN NOT EXISTS (SELECT 1 FROM outbox x
                                 WHERE x.notification_id = d.notification_id)
                     THEN 'no_subscription'
                ELSE (SELECT CASE WHEN bool_or(x.status = 'delivered') THEN 'delivered'
                                  WHEN bool_or(x.status = 'pending') THEN 'pending'
                                  WHEN bool_or(x.status = 'gone') THEN 'subscription_expired'
                                  ELSE 'push_failed' END
                      FROM outbox x WHERE x.notification_id = d.notification_id)
           END AS push,
           count(*) AS n,
           max(d.deliver_after) FILTER (WHERE d.deliver_after > :now) AS waits_until
    FROM notification_decisions d
    WHERE d.organisation_id = :org AND d.offer_id = :offer
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    """
)


async def offer_funnel(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID, now: datetime
) -> list[Row[Any]]:
    rows = await session.execute(
        OFFER_FUNNEL_SQL, {"org": organisation_id, "offer": offer_id, "now": now}
    )
    return list(rows)
