"""All SQL of the activity feed's own table (`activity_events`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.activity.models import ActivityEvent
from app.core.subject import SubjectRef


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Store events; one recorded twice (same id) is stored once."""
    if rows:
        await session.execute(insert(ActivityEvent).values(rows).on_conflict_do_nothing())


async def list_events(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    sources: list[str],
    geofence_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ActivityEvent]:
    """Newest first by (occurred_at, id); `after` is the keyset cursor of the previous page."""
    stmt = select(ActivityEvent).where(
        ActivityEvent.organisation_id == organisation_id, ActivityEvent.source.in_(sources)
    )
    if geofence_id is not None:
        stmt = stmt.where(ActivityEvent.geofence_id == geofence_id)
    if after is not None:
        stmt = stmt.where(tuple_(ActivityEvent.occurred_at, ActivityEvent.id) < after)
    stmt = stmt.order_by(ActivityEvent.occurred_at.desc(), ActivityEvent.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def events_of(session: AsyncSession, who: SubjectRef) -> list[ActivityEvent]:
    """Every stored event about one person (device or staff member), oldest first."""
    stmt = (
        select(ActivityEvent)
        .where(ActivityEvent.owner_column(who.kind) == who.id)
        .order_by(ActivityEvent.occurred_at, ActivityEvent.id)
    )
    return list((await session.execute(stmt)).scalars())


async def delete_older(session: AsyncSession, cutoff: datetime) -> int:
    stmt = (
        delete(ActivityEvent).where(ActivityEvent.occurred_at < cutoff).returning(ActivityEvent.id)
    )
    return len(list((await session.execute(stmt)).scalars()))
