from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.core.config import Settings
from tests.factories import Resident, Staff, create_organisation, create_resident, create_staff


@pytest.fixture
async def org(db: AsyncSession) -> Organisation:
    return await create_organisation(db)


@pytest.fixture
async def resident(db: AsyncSession, org: Organisation, client: httpx.AsyncClient) -> Resident:
    """A resident device that has opted in to background location."""
    res = await create_resident(db, org)
    r = await client.put("/v1/me/background-location", json={"enabled": True}, headers=res.headers)
    assert r.status_code == 200, r.text
    return res


@pytest.fixture
async def worker(db: AsyncSession, settings: Settings, org: Organisation) -> Staff:
    return await create_staff(db, settings, org, Role.field_worker)


@pytest.fixture
async def editor(db: AsyncSession, settings: Settings, org: Organisation) -> Staff:
    return await create_staff(db, settings, org, Role.editor)
