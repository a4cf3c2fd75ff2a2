"""All SQL of the shifts domain: a field worker's ad-hoc shifts and pauses."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageParams
from app.shifts.models import EndReason, PeriodKind, StaffPeriod


async def add(session: AsyncSession, row: StaffPeriod) -> StaffPeriod:
    session.add(row)
    await session.flush()
    return row


async def open_period(
    session: AsyncSession, staff_id: uuid.UUID, kind: PeriodKind, *, lock: bool = False
) -> StaffPeriod | None:
    """The worker's open period of this kind (at most one: a partial unique index)."""
    stmt = select(StaffPeriod).where(
        StaffPeriod.staff_user_id == staff_id,
        StaffPeriod.kind == kind.value,
        StaffPeriod.ended_at.is_(None),
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def periods_overlapping(
    session: AsyncSession, staff_id: uuid.UUID, since: datetime
) -> list[StaffPeriod]:
    """Every period of the worker still open or ended at or after `since`."""
    stmt = select(StaffPeriod).where(
        StaffPeriod.staff_user_id == staff_id,
        or_(StaffPeriod.ended_at.is_(None), StaffPeriod.ended_at >= since),
    )
    return list((await session.execute(stmt)).scalars())


async def periods_of_many(
    session: AsyncSession, staff_ids: list[uuid.UUID], at: datetime
) -> list[StaffPeriod]:
    """The periods of these workers that started by `at` and were still open or ended after."""
    stmt = select(StaffPeriod).where(
        StaffPeriod.staff_user_id.in_(staff_ids),
        StaffPeriod.started_at <= at,
        or_(StaffPeriod.ended_at.is_(None), StaffPeriod.ended_at > at),
    )
    return list((await session.execute(stmt)).scalars())


async def list_periods(
    session: AsyncSession,
    staff_id: uuid.UUID,
    page: PageParams,
    kind: PeriodKind | None,
) -> list[StaffPeriod]:
    """Newest first by (started_at, id), one longer than the page."""
    stmt = select(StaffPeriod).where(StaffPeriod.staff_user_id == staff_id)
    if kind is not None:
        stmt = stmt.where(StaffPeriod.kind == kind.value)
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(StaffPeriod.started_at, StaffPeriod.id)
            < tuple_(page.cursor.created_at, page.cursor.id)
        )
    stmt = stmt.order_by(StaffPeriod.started_at.desc(), StaffPeriod.id.desc()).limit(page.limit + 1)
    return list((await session.execute(stmt)).scalars())


async def close_expired_shifts(session: AsyncSession, now: datetime) -> list[StaffPeriod]:
    """End every open ad-hoc shift whose maximum length has passed, at that time; returns them."""
    stmt = (
        update(StaffPeriod)
        .where(
            StaffPeriod.kind == PeriodKind.shift.value,
            StaffPeriod.ended_at.is_(None),
            StaffPeriod.ends_by <= now,
        )
        .values(ended_at=StaffPeriod.ends_by, end_reason=EndReason.auto.value)
        .returning(StaffPeriod)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(stmt)).scalars())


async def all_periods(session: AsyncSession, staff_id: uuid.UUID) -> list[StaffPeriod]:
    """For the worker's own export, oldest first."""
    stmt = (
        select(StaffPeriod)
        .where(StaffPeriod.staff_user_id == staff_id)
        .order_by(StaffPeriod.started_at, StaffPeriod.id)
    )
    return list((await session.execute(stmt)).scalars())


async def try_advisory_lock(session: AsyncSession, key: int) -> bool:
    result = await session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    return bool(result.scalar_one())
