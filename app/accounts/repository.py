"""All SQL for accounts. Every staff-facing query is scoped by `organisation_id`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Device, Organisation, Role, StaffUser
from app.core.db import driver_connection
from app.core.pagination import PageParams


async def get_organisation(
    session: AsyncSession, organisation_id: uuid.UUID
) -> Organisation | None:
    return await session.get(Organisation, organisation_id)


async def get_organisation_by_slug(session: AsyncSession, slug: str) -> Organisation | None:
    return (
        await session.execute(select(Organisation).where(Organisation.slug == slug))
    ).scalar_one_or_none()


async def list_organisations(session: AsyncSession, limit: int = 2) -> list[Organisation]:
    stmt = select(Organisation).order_by(Organisation.created_at).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def add(session: AsyncSession, row: Organisation | StaffUser | Device) -> None:
    session.add(row)
    await session.flush()


async def get_user_by_email(session: AsyncSession, email: str) -> StaffUser | None:
    stmt = select(StaffUser).where(func.lower(StaffUser.email) == email.lower())
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> StaffUser | None:
    return await session.get(StaffUser, user_id)


async def get_user_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> StaffUser | None:
    stmt = select(StaffUser).where(
        StaffUser.id == user_id, StaffUser.organisation_id == organisation_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def names_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, Role]]:
    stmt = select(StaffUser.id, StaffUser.full_name, StaffUser.role).where(
        StaffUser.organisation_id == organisation_id, StaffUser.id.in_(user_ids)
    )
    return {r.id: (r.full_name, r.role) for r in await session.execute(stmt)}


async def list_users(
    session: AsyncSession, organisation_id: uuid.UUID, page: PageParams, role: Role | None = None
) -> list[StaffUser]:
    stmt = select(StaffUser).where(StaffUser.organisation_id == organisation_id)
    if role is not None:
        stmt = stmt.where(StaffUser.role == role)
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(StaffUser.created_at, StaffUser.id) > (page.cursor.created_at, page.cursor.id)
        )
    stmt = stmt.order_by(StaffUser.created_at, StaffUser.id).limit(page.limit + 1)
    return list((await session.execute(stmt)).scalars())


async def touch_login(session: AsyncSession, user_id: uuid.UUID, when: datetime) -> None:
    await session.execute(
        update(StaffUser).where(StaffUser.id == user_id).values(last_login_at=when)
    )


# The auth lookup runs on every resident request: one fixed statement on the asyncpg connection
# (prepared once per connection), outside the request's transaction — a read needs none, and the
# first statement that does need one still sends BEGIN (app.core.db.driver_connection).
_DEVICE_IDENTITY = "SELECT id, organisation_id FROM devices WHERE token_hash = $1"


async def device_identity_by_token_hash(
    session: AsyncSession, token_hash: str
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(device id, organisation id) for a token hash, without loading the ORM entity."""
    driver = await driver_connection(session, transaction=False)
    row = await driver.fetchrow(_DEVICE_IDENTITY, token_hash)
    return (row[0], row[1]) if row is not None else None


async def get_device_by_token_hash(session: AsyncSession, token_hash: str) -> Device | None:
    stmt = select(Device).where(Device.token_hash == token_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_device(session: AsyncSession, device_id: uuid.UUID) -> None:
    device = await session.get(Device, device_id)
    if device is not None:
        await session.delete(device)
        await session.flush()
