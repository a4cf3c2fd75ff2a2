"""All SQL for webhook endpoints, their rows of the outbox and the attempt log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, StaffUser
from app.geofences.models import Geofence
from app.webhooks.models import (
    EndpointStatus,
    MessageStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)

NOTIFY_CHANNEL = "hereabouts_webhooks"

# --- endpoints -----------------------------------------------------------------------------------


async def add(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    session.add(endpoint)
    await session.flush()


async def count_endpoints(session: AsyncSession, organisation_id: uuid.UUID) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.organisation_id == organisation_id)
    )
    return int(result.scalar_one())


async def list_endpoints(
    session: AsyncSession, organisation_id: uuid.UUID
) -> Sequence[WebhookEndpoint]:
    result = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organisation_id == organisation_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return result.scalars().all()


async def get_endpoint(
    session: AsyncSession, organisation_id: uuid.UUID, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint | None:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.organisation_id == organisation_id
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await session.delete(endpoint)
    await session.flush()


async def enabled_endpoints_of(
    session: AsyncSession, organisation_ids: list[uuid.UUID]
) -> Sequence[WebhookEndpoint]:
    result = await session.execute(
        select(WebhookEndpoint).where(
            WebhookEndpoint.organisation_id.in_(organisation_ids),
            WebhookEndpoint.status == EndpointStatus.enabled.value,
        )
    )
    return result.scalars().all()


@dataclass(frozen=True)
class PlaceRef:
    id: uuid.UUID
    name: str
    category: str | None


async def places(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, PlaceRef]:
    """Read-only look-up of the places events are at (their public reference in payloads)."""
    if not ids:
        return {}
    result = await session.execute(
        select(Geofence.id, Geofence.name, Geofence.category).where(Geofence.id.in_(ids))
    )
    return {r.id: PlaceRef(r.id, r.name, r.category) for r in result}


async def admin_ids(session: AsyncSession, organisation_id: uuid.UUID) -> list[uuid.UUID]:
    """Read-only: the organisation's active admins (told when an endpoint is disabled)."""
    result = await session.execute(
        select(StaffUser.id).where(
            StaffUser.organisation_id == organisation_id,
            StaffUser.role == Role.admin.value,
            StaffUser.is_active.is_(True),
        )
    )
    return list(result.scalars())


# --- the outbox ----------------------------------------------------------------------------------


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(cast(Table, WebhookMessage.__table__)), rows)


async def notify_workers(session: AsyncSession) -> None:
    """Delivered at commit (dropped on rollback); once per transaction."""
    tx = session.sync_session.get_transaction()
    if tx is not None and session.info.get("hereabouts_webhooks_notified") is tx:
        return
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
    session.info["hereabouts_webhooks_notified"] = tx


async def get_message(
    session: AsyncSession, endpoint_id: uuid.UUID, message_id: uuid.UUID
) -> WebhookMessage | None:
    result = await session.execute(
        select(WebhookMessage).where(
            WebhookMessage.id == message_id, WebhookMessage.endpoint_id == endpoint_id
        )
    )
    return result.scalar_one_or_none()


async def messages_between(
    session: AsyncSession, endpoint_id: uuid.UUID, since: datetime, until: datetime, limit: int
) -> Sequence[WebhookMessage]:
    """The endpoint's original messages (not replays) of events that happened in [since, until)."""
    result = await session.execute(
        select(WebhookMessage)
        .where(
            WebhookMessage.endpoint_id == endpoint_id,
            WebhookMessage.replay_of.is_(None),
            WebhookMessage.occurred_at >= since,
            WebhookMessage.occurred_at < until,
        )
        .order_by(WebhookMessage.occurred_at, WebhookMessage.id)
        .limit(limit)
    )
    return result.scalars().all()


async def list_messages(
    session: AsyncSession, endpoint_id: uuid.UUID, limit: int, before: datetime | None
) -> Sequence[WebhookMessage]:
    stmt = select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id)
    if before is not None:
        stmt = stmt.where(WebhookMessage.created_at < before)
    stmt = stmt.order_by(WebhookMessage.created_at.desc(), WebhookMessage.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def list_attempts(
    session: AsyncSession, endpoint_id: uuid.UUID, limit: int, before: datetime | None
) -> Sequence[WebhookAttempt]:
    stmt = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint_id)
    if before is not None:
        stmt = stmt.where(WebhookAttempt.attempted_at < before)
    stmt = stmt.order_by(WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


# --- workers -------------------------------------------------------------------------------------

# Due messages of enabled endpoints, oldest first, skipping rows other workers hold and endpoints
# this worker already has at their concurrency cap; each claimed row gets a lease and a token.
CLAIM_SQL = text(
    """
WITH due AS (
    SELECT m.id
    FROM outbox m
    JOIN webhook_endpoints e ON e.id = m.endpoint_id
    WHERE m.channel = 'webhook'
      AND m.status = 'pending'
      AND m.next_attempt_at <= now()
      AND (m.lease_expires_at IS NULL OR m.lease_expires_at < now())
      AND e.status = 'enabled'
      AND NOT (m.endpoint_id = ANY(CAST(:busy AS uuid[])))
    ORDER BY m.next_attempt_at
    LIMIT :limit
    FOR UPDATE OF m SKIP LOCKED
)
UPDATE outbox m
SET lease_expires_at = now() + make_interval(secs => :lease_s),
    lease_token = CAST(:token AS uuid),
    attempts = m.attempts + 1
FROM due, webhook_endpoints e
WHERE m.id = due.id AND e.id = m.endpoint_id
RETURNING m.id, m.organisation_id, m.endpoint_id, m.msg_id, m.payload, m.attempts,
          m.created_at, m.lease_token, e.url, e.secret, e.previous_secret,
          e.previous_secret_until, now()
"""
)


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    id: uuid.UUID
    organisation_id: uuid.UUID
    endpoint_id: uuid.UUID
    msg_id: str
    payload: str
    attempts: int
    created_at: datetime
    lease_token: uuid.UUID
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    now: datetime


async def claim(
    session: AsyncSession, limit: int, lease_s: float, busy: list[uuid.UUID]
) -> list[ClaimedMessage]:
    result = await session.execute(
        CLAIM_SQL,
        {
            "limit": limit,
            "lease_s": lease_s,
            "token": str(uuid.uuid4()),
            "busy": [str(b) for b in busy],
        },
    )
    return [ClaimedMessage(*row) for row in result]


async def release(session: AsyncSession, items: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Give claimed rows back at once (undoing the attempt count)."""
    for message_id, token in items:
        await session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message_id, WebhookMessage.lease_token == token)
            .values(lease_expires_at=None, lease_token=None, attempts=WebhookMessage.attempts - 1)
        )


FINISH_SQL = text(
    """
UPDATE outbox
SET status = CAST(:status AS varchar),
    next_attempt_at = now() + make_interval(secs => CAST(:delay_s AS float8)),
    lease_expires_at = NULL, lease_token = NULL,
    last_error = CAST(:error AS varchar),
    finished_at = CASE WHEN CAST(:status AS varchar) = 'pending' THEN NULL ELSE now() END
WHERE id = :id AND lease_token = :token AND channel = 'webhook'
"""
)


async def finish(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(FINISH_SQL, rows)


async def insert_attempts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(cast(Table, WebhookAttempt.__table__)), rows)


async def mark_healthy(session: AsyncSession, endpoint_ids: list[uuid.UUID]) -> None:
    if endpoint_ids:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(endpoint_ids), WebhookEndpoint.failing_since.isnot(None))
            .values(failing_since=None)
        )


async def mark_failing(
    session: AsyncSession, endpoint_ids: list[uuid.UUID], at: datetime
) -> dict[uuid.UUID, datetime]:
    """Start the breaker's clock where it is not running; returns each endpoint's failing_since."""
    if not endpoint_ids:
        return {}
    result = await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(endpoint_ids))
        .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, at))
        .returning(WebhookEndpoint.id, WebhookEndpoint.failing_since)
    )
    return {r[0]: r[1] for r in result if r[1] is not None}


async def first_attempt_at(session: AsyncSession, message_id: uuid.UUID) -> datetime | None:
    result = await session.execute(
        select(func.min(WebhookAttempt.attempted_at)).where(WebhookAttempt.message_id == message_id)
    )
    value: datetime | None = result.scalar_one()
    return value


async def endpoint_by_id(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    """Workers only (no organisation scope: the id comes from a claimed row)."""
    result = await session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def sealed_secrets(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> list[tuple[uuid.UUID, str, str | None]]:
    """(id, secret, previous_secret) of every organisation's endpoints by id after `after`,
    locked until the transaction ends (re-encryption; an admin's rotation waits)."""
    stmt = select(WebhookEndpoint.id, WebhookEndpoint.secret, WebhookEndpoint.previous_secret)
    if after is not None:
        stmt = stmt.where(WebhookEndpoint.id > after)
    stmt = stmt.order_by(WebhookEndpoint.id).limit(limit).with_for_update()
    return [(r[0], r[1], r[2]) for r in (await session.execute(stmt)).all()]


async def store_sealed(
    session: AsyncSession, endpoint_id: uuid.UUID, values: dict[str, str]
) -> None:
    """Write re-encrypted `secret` / `previous_secret` values (the same secrets, another key)."""
    await session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(**values)
    )


async def count_pending(session: AsyncSession) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(WebhookMessage)
        .where(WebhookMessage.status == MessageStatus.pending.value)
    )
    return int(result.scalar_one())


async def erase_endpoint_messages(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    await session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id))


async def messages_about(
    session: AsyncSession, subject_id: uuid.UUID
) -> list[tuple[WebhookMessage, WebhookEndpoint]]:
    """Every message about this person (pending or sent) with its endpoint, oldest first."""
    result = await session.execute(
        select(WebhookMessage, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
        .where(WebhookMessage.subject_id == subject_id)
        .order_by(WebhookMessage.created_at, WebhookMessage.id)
    )
    return [(row[0], row[1]) for row in result.all()]


async def attempts_of(
    session: AsyncSession, message_ids: list[uuid.UUID]
) -> Sequence[WebhookAttempt]:
    """The attempt log of these messages, oldest first."""
    if not message_ids:
        return []
    result = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.message_id.in_(message_ids))
        .order_by(WebhookAttempt.attempted_at, WebhookAttempt.attempt, WebhookAttempt.id)
    )
    return result.scalars().all()


async def erase_subject(session: AsyncSession, subject_id: uuid.UUID) -> int:
    """Delete every message about this person (pending or sent; their attempts cascade)."""
    result = await session.execute(
        delete(WebhookMessage)
        .where(WebhookMessage.subject_id == subject_id)
        .returning(WebhookMessage.id)
    )
    return len(result.all())
