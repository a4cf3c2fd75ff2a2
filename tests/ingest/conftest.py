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


async def opted_in(db: AsyncSession, org: Organisation, client: httpx.AsyncClient) -> Resident:
    res = await create_resident(db, org)
    r = await client.put("/v1/me/background-location", json={"enabled": True}, headers=res.headers)
    assert r.status_code == 200, r.text
    return res


@pytest.fixture
async def resident(db: AsyncSession, org: Organisation, client: httpx.AsyncClient) -> Resident:
    """A resident device that has opted in to background location (sends through an app)."""
    return await opted_in(db, org, client)


@pytest.fixture
async def twin(db: AsyncSession, org: Organisation, client: httpx.AsyncClient) -> Resident:
    """A second opted-in device: sends the same fixes through POST /v1/pings, to compare."""
    return await opted_in(db, org, client)


@pytest.fixture
async def worker(db: AsyncSession, settings: Settings, org: Organisation) -> Staff:
    return await create_staff(db, settings, org, Role.field_worker)
