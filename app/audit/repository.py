from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEntry
from app.core.pagination import PageParams


async def add(session: AsyncSession, entry: AuditEntry) -> None:
    session.add(entry)
    await session.flush()


async def list_entries(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    *,
    entity_type: str | None = None,
    entity_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> list[AuditEntry]:
    stmt = select(AuditEntry).where(AuditEntry.organisation_id == organisation_id)
    if entity_type:
        stmt = stmt.where(AuditEntry.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    if actor_id:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(AuditEntry.at, AuditEntry.id) < (page.cursor.created_at, page.cursor.id)
        )
    stmt = stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(page.limit + 1)
    return list((await session.execute(stmt)).scalars())
