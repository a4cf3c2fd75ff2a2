"""All SQL for subscriptions, notifications, the outbox and the delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Select, Table, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageParams
from app.notifications.models import Delivery, Notification, OutboxJob, PushSubscription
from app.notifications.schemas import Recipient

NOTIFY_CHANNEL = "hereabouts_outbox"


def _owner_filter(model: type[PushSubscription] | type[Notification], who: Recipient) -> Any:
    return (model.owner_column(who.kind) == who.id) & (model.organisation_id == who.organisation_id)


_Owned = TypeVar("_Owned", PushSubscription, Notification)


async def _own(
    session: AsyncSession, model: type[_Owned], who: Recipient, row_id: uuid.UUID
) -> _Owned | None:
    """The person's own row of this id, or None (someone else's is not found)."""
    result = await session.execute(
        select(model).where(_owner_filter(model, who), model.id == row_id)
    )
    return result.scalar_one_or_none()


# --- subscriptions ---------------------------------------------------------------------------


async def subscription_by_endpoint(session: AsyncSession, endpoint: str) -> PushSubscription | None:
    result = await session.execute(
        select(PushSubscription).where(PushSubscription.endpoint == endpoint).with_for_update()
    )
    return result.scalar_one_or_none()


async def count_subscriptions(session: AsyncSession, who: Recipient) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(PushSubscription)
        .where(_owner_filter(PushSubscription, who))
    )
    return int(result.scalar_one())


async def list_subscriptions(session: AsyncSession, who: Recipient) -> Sequence[PushSubscription]:
    result = await session.execute(
        select(PushSubscription)
        .where(_owner_filter(PushSubscription, who))
        .order_by(PushSubscription.created_at, PushSubscription.id)
    )
    return result.scalars().all()


async def own_subscription(
    session: AsyncSession, who: Recipient, subscription_id: uuid.UUID
) -> PushSubscription | None:
    return await _own(session, PushSubscription, who, subscription_id)


async def delete_subscription(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    await session.execute(delete(PushSubscription).where(PushSubscription.id == subscription_id))


@dataclass(frozen=True)
class SubscriptionTarget:
    id: uuid.UUID
    origin: str


async def subscription_targets(session: AsyncSession, who: Recipient) -> list[SubscriptionTarget]:
    result = await session.execute(
        select(PushSubscription.id, PushSubscription.origin).where(
            _owner_filter(PushSubscription, who)
        )
    )
    return [SubscriptionTarget(row.id, row.origin) for row in result]


# --- notifications and outbox ----------------------------------------------------------------


async def insert_outbox(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        # Core table insert: one executemany, without the ORM's per-row bulk bookkeeping.
        await session.execute(insert(cast(Table, OutboxJob.__table__)), rows)


async def notify_workers(session: AsyncSession) -> None:
    """Delivered at commit (and dropped on rollback), like the rows it announces; sent once per
    transaction however many notifications it enqueues."""
    tx = session.sync_session.get_transaction()
    if tx is not None and session.info.get("hereabouts_outbox_notified") is tx:
        return
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
    session.info["hereabouts_outbox_notified"] = tx


def _keyset(stmt: Select[Any], created: Any, ident: Any, page: PageParams) -> Select[Any]:
    if page.cursor is not None:
        c = page.cursor
        stmt = stmt.where((created < c.created_at) | ((created == c.created_at) & (ident < c.id)))
    return stmt.order_by(created.desc(), ident.desc()).limit(page.limit + 1)


async def list_notifications(
    session: AsyncSession, who: Recipient, page: PageParams
) -> Sequence[Notification]:
    stmt = select(Notification).where(_owner_filter(Notification, who))
    result = await session.execute(_keyset(stmt, Notification.created_at, Notification.id, page))
    rows: Sequence[Notification] = result.scalars().all()
    return rows


async def own_notification(
    session: AsyncSession, who: Recipient, notification_id: uuid.UUID
) -> Notification | None:
    return await _own(session, Notification, who, notification_id)


async def mark_opened(session: AsyncSession, notification_id: uuid.UUID) -> None:
    await session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.opened_at.is_(None))
        .values(opened_at=func.now())
    )


async def list_deliveries(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    status: str | None = None,
    notification_id: uuid.UUID | None = None,
) -> Sequence[Delivery]:
    stmt = select(Delivery).where(Delivery.organisation_id == organisation_id)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    if notification_id is not None:
        stmt = stmt.where(Delivery.notification_id == notification_id)
    result = await session.execute(_keyset(stmt, Delivery.attempted_at, Delivery.id, page))
    rows: Sequence[Delivery] = result.scalars().all()
    return rows


async def erase_person(session: AsyncSession, who: Recipient) -> None:
    """Remove a person's subscriptions, notifications, outbox rows and delivery log."""
    await session.execute(delete(Notification).where(_owner_filter(Notification, who)))
    await session.execute(delete(PushSubscription).where(_owner_filter(PushSubscription, who)))


# --- worker ----------------------------------------------------------------------------------

# The claim and the settle statement must stay cheap whatever the planner believes about the
# outbox, because what it believes is often wrong here: autovacuum or ANALYZE running while a big
# enqueue is still uncommitted records the in-progress rows as none (`reltuples = 0`), and a plan
# cached while the outbox was empty (asyncpg prepares every statement; after five executions
# PostgreSQL keeps a generic plan until the table's statistics change) stays in use after it
# fills. Two rules, measured in the push fan-out bench (bench/push_fanout.py):
# 1. Every scan is bounded by the batch through a primary-key condition, `id = ANY(<the batch's
#    ids>)`, never by a join condition alone: with "1 row" estimates the planner ran the join as
#    a nested loop over a whole-table scan filtered row by row (`Rows Removed by Join Filter:
#    1,199,800` for a 200-row claim, 0.3-1.5 s per claim, quadratic over a drain).
# 2. Both run with custom plans (`force_custom_plan`, planned at the table's actual size, ~1 ms):
#    a generic plan made on the empty table scans it sequentially with the `= ANY` as a filter
#    (`Rows Removed by Filter: 5800`, ~12 ms per claim of 200 on 6,000 rows).
CLAIM_SQL = text(
    """
    WITH due AS MATERIALIZED (
        SELECT o.id, o.notification_id, o.subscription_id
        FROM outbox o
        WHERE o.channel = 'webpush'
          AND o.status = 'pending'
          AND o.next_attempt_at <= now()
          AND (o.lease_expires_at IS NULL OR o.lease_expires_at < now())
          AND NOT (o.origin = ANY(CAST(:busy AS text[])))
        ORDER BY o.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF o SKIP LOCKED
    ),
    claimed AS (
        UPDATE outbox AS o
        SET lease_expires_at = now() + make_interval(secs => CAST(:lease_s AS double precision)),
            lease_token = CAST(:token AS uuid),
            attempts = o.attempts + 1
        WHERE o.id = ANY(ARRAY(SELECT id FROM due))
        RETURNING o.id, o.attempts, o.lease_token, o.notification_id, o.subscription_id,
                  o.organisation_id, o.origin, o.expires_at
    ),
    n AS MATERIALIZED (
        SELECT n.id, n.payload, n.topic, n.urgency
        FROM notifications n
        WHERE n.id = ANY(ARRAY(SELECT notification_id FROM due))
    ),
    s AS MATERIALIZED (
        SELECT s.id, s.endpoint, s.p256dh, s.auth
        FROM push_subscriptions s
        WHERE s.id = ANY(ARRAY(SELECT subscription_id FROM due WHERE subscription_id IS NOT NULL))
    )
    SELECT c.id, c.attempts, c.lease_token, c.notification_id, c.subscription_id,
           c.organisation_id, c.origin, c.expires_at, n.payload, n.topic, n.urgency,
           s.endpoint, s.p256dh, s.auth,
           GREATEST(1, CEIL(EXTRACT(EPOCH FROM c.expires_at - now())))::int AS ttl_left_s,
           (c.expires_at <= now()) AS expired
    FROM claimed c
    JOIN n ON n.id = c.notification_id
    LEFT JOIN s ON s.id = c.subscription_id
    """
)

# One statement per batch of settled rows (not one per row): the columns travel as arrays.
# `o.id = ANY(:ids)` bounds the scan of the outbox to the batch whatever the estimates (above).
# The times are computed on UTC timestamps (IMMUTABLE arithmetic), the same values as
# `now() + delay` and `CASE ... ELSE now() END`: on Citus the outbox is a reference table, and
# Citus refuses a STABLE function (`timestamptz + interval`) applied to a row's column in an
# UPDATE, and any non-IMMUTABLE function inside a CASE; `now()` alone it evaluates once on the
# coordinator. (Moving now() into the FROM list trips a Citus planner error instead.)
FINISH_SQL = text(
    """
    UPDATE outbox AS o
    SET status = f.status,
        next_attempt_at = (now() AT TIME ZONE 'UTC' + make_interval(secs => f.delay_s))
                          AT TIME ZONE 'UTC',
        finished_at = (now() AT TIME ZONE 'UTC'
                       + CASE WHEN f.status = 'pending' THEN NULL ELSE interval '0' END)
                      AT TIME ZONE 'UTC',
        lease_expires_at = NULL,
        lease_token = NULL,
        last_error = f.error
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]), CAST(:statuses AS varchar[]),
        CAST(:delays AS double precision[]), CAST(:errors AS varchar[])
    ) AS f(id, token, status, delay_s, error)
    WHERE o.id = ANY(CAST(:ids AS uuid[])) AND o.id = f.id AND o.lease_token = f.token
    """
)

INSERT_DELIVERIES_SQL = text(
    """
    INSERT INTO push_deliveries (id, organisation_id, outbox_id, notification_id,
                                 subscription_id, attempt, attempted_at, push_origin, status,
                                 http_status, latency_ms, error)
    SELECT gen_random_uuid(), d.*
    FROM unnest(
        CAST(:organisation_ids AS uuid[]), CAST(:outbox_ids AS uuid[]),
        CAST(:notification_ids AS uuid[]), CAST(:subscription_ids AS uuid[]),
        CAST(:attempts AS integer[]), CAST(:attempted_ats AS timestamptz[]),
        CAST(:origins AS varchar[]), CAST(:statuses AS varchar[]),
        CAST(:http_statuses AS integer[]), CAST(:latencies AS double precision[]),
        CAST(:errors AS varchar[])
    ) AS d
    """
)


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    attempts: int
    lease_token: uuid.UUID
    notification_id: uuid.UUID
    subscription_id: uuid.UUID | None
    organisation_id: uuid.UUID
    origin: str
    expires_at: datetime
    payload: str
    topic: str
    urgency: str
    endpoint: str | None
    p256dh: str | None
    auth: str | None
    ttl_left_s: int
    expired: bool


async def _custom_plans(session: AsyncSession, on: bool = True) -> None:
    """Plan the following statements at the tables' current size (see CLAIM_SQL), or go back
    to PostgreSQL's default. Not left on for the delivery-log insert: its foreign-key checks
    are cached plans too, and re-planning each of them per row tripled the insert's time."""
    mode = "force_custom_plan" if on else "DEFAULT"
    await session.execute(text(f"SET LOCAL plan_cache_mode = {mode}"))


async def claim(
    session: AsyncSession, limit: int, lease_s: float, busy_origins: list[str]
) -> list[ClaimedJob]:
    await _custom_plans(session)
    result = await session.execute(
        CLAIM_SQL,
        {"limit": limit, "lease_s": lease_s, "token": str(uuid.uuid4()), "busy": busy_origins},
    )
    return [ClaimedJob(*row) for row in result]  # RETURNING lists the fields in order


async def finish(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Settle claimed rows (`status`, `delay_s`, `error`, `id`, `token` per row) in one
    statement; a row whose lease token changed meanwhile is left alone."""
    if rows:
        await _custom_plans(session)
        await session.execute(
            FINISH_SQL,
            {
                "ids": [r["id"] for r in rows],
                "tokens": [r["token"] for r in rows],
                "statuses": [r["status"] for r in rows],
                "delays": [r["delay_s"] for r in rows],
                "errors": [r["error"] for r in rows],
            },
        )
        await _custom_plans(session, on=False)


async def release(session: AsyncSession, jobs: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Give claimed-but-unsent rows back (the claim did not count as an attempt)."""
    if jobs:
        await session.execute(
            text(
                "UPDATE outbox SET lease_expires_at = NULL, lease_token = NULL, "
                "attempts = attempts - 1 "
                "WHERE id = CAST(:id AS uuid) AND lease_token = CAST(:token AS uuid)"
            ),
            [{"id": str(i), "token": str(t)} for i, t in jobs],
        )


DELIVERY_COLUMNS = (
    ("organisation_ids", "organisation_id"),
    ("outbox_ids", "outbox_id"),
    ("notification_ids", "notification_id"),
    ("subscription_ids", "subscription_id"),
    ("attempts", "attempt"),
    ("attempted_ats", "attempted_at"),
    ("origins", "push_origin"),
    ("statuses", "status"),
    ("http_statuses", "http_status"),
    ("latencies", "latency_ms"),
    ("errors", "error"),
)


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Append attempts to the delivery log in one statement (ids made by the database)."""
    if rows:
        await session.execute(
            INSERT_DELIVERIES_SQL,
            {param: [r[column] for r in rows] for param, column in DELIVERY_COLUMNS},
        )


async def delete_subscriptions(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    if ids:
        await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(ids)))


async def count_pending(session: AsyncSession) -> int:
    result = await session.execute(
        text("SELECT count(*) FROM outbox WHERE channel = 'webpush' AND status = 'pending'")
    )
    return int(result.scalar_one())


SUBSCRIPTION_TARGETS_SQL = """
SELECT s.device_id AS owner, s.id, s.origin
FROM unnest(CAST(:device_org AS uuid[]), CAST(:device AS uuid[])) AS k(org, id)
JOIN push_subscriptions s ON s.organisation_id = k.org AND s.device_id = k.id
UNION ALL
SELECT s.staff_user_id, s.id, s.origin
FROM unnest(CAST(:staff_org AS uuid[]), CAST(:staff AS uuid[])) AS k(org, id)
JOIN push_subscriptions s ON s.organisation_id = k.org AND s.staff_user_id = k.id
ORDER BY 1, 2
"""


async def subscription_targets_of(
    session: AsyncSession, recipients: Sequence[Recipient]
) -> dict[uuid.UUID, list[SubscriptionTarget]]:
    """Subscriptions of many people of any organisations in one statement, by owner id (each
    looked up in its own organisation)."""
    devices = sorted({(r.organisation_id, r.id) for r in recipients if r.kind == "device"})
    staff = sorted({(r.organisation_id, r.id) for r in recipients if r.kind == "staff"})
    if not devices and not staff:
        return {}
    result = await session.execute(
        text(SUBSCRIPTION_TARGETS_SQL),
        {
            "device_org": [o for o, _ in devices],
            "device": [i for _, i in devices],
            "staff_org": [o for o, _ in staff],
            "staff": [i for _, i in staff],
        },
    )
    out: dict[uuid.UUID, list[SubscriptionTarget]] = {}
    for who, sid, origin in result:
        out.setdefault(who, []).append(SubscriptionTarget(sid, origin))
    return out


async def insert_notifications(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(cast(Table, Notification.__table__)), rows)


async def offer_notification_counts(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID
) -> tuple[int, int]:
    """(sent, opened) notifications about one offer (decision 'send')."""
    stmt = select(func.count(), func.count(Notification.opened_at)).where(
        Notification.organisation_id == organisation_id,
        Notification.decision == "send",
        Notification.related["offer_id"].astext == str(offer_id),
    )
    sent, opened = (await session.execute(stmt)).one()
    return int(sent), int(opened)
