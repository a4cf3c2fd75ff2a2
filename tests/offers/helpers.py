"""Test places written straight through the ORM (the geofences API lives in its own domain)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from geoalchemy2.shape import from_shape
from shapely.geometry import Point
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role, StaffUser
from app.core.config import Settings
from app.core.security import StaffClaims, hash_password, issue_staff_token
from app.geofences.models import Geofence
from tests import factories

_HASH: list[str] = []


async def quick_staff(
    db: AsyncSession, settings: Settings, org: Organisation, role: Role
) -> factories.Staff:
    """Like `factories.create_staff`, but hashes the password once per run (argon2 is slow)."""
    if not _HASH:
        _HASH.append(hash_password(factories.DEFAULT_PASSWORD))
    user = StaffUser(
        organisation_id=org.id,
        email=f"{role.value}-{uuid.uuid4().hex[:10]}@example.org",
        full_name=f"Test {role.value}",
        password_hash=_HASH[0],
        role=role,
    )
    db.add(user)
    await db.flush()
    token = issue_staff_token(settings, StaffClaims(user.id, org.id, role.value))
    return factories.Staff(user, token, user.id, user.email, org.id)


async def create_geofence(
    db: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    lon: float = -1.2577,
    lat: float = 51.752,
    name: str = "Central Library",
    category: str = "library",
    half_side_deg: float = 0.0005,
    external_id: str | None = None,
) -> Geofence:
    """A small square place (about 110 m × 70 m at Oxford's latitude) centred on lon/lat."""
    square = Point(lon, lat).buffer(half_side_deg, cap_style="square")
    place = Geofence(
        organisation_id=organisation_id,
        name=name,
        category=category,
        shape_kind="polygon",
        geom=from_shape(square, srid=4326),
        external_id=external_id,
    )
    db.add(place)
    await db.flush()
    return place


@dataclass
class Town:
    """Callers and places of one organisation, plus an editor and resident of another."""

    org_id: uuid.UUID
    admin: factories.Staff
    editor: factories.Staff
    worker: factories.Staff
    worker2: factories.Staff
    resident: factories.Resident
    resident2: factories.Resident
    other_editor: factories.Staff
    other_worker: factories.Staff
    other_resident: factories.Resident
    library: uuid.UUID
    library2: uuid.UUID
    park: uuid.UUID
    leisure: uuid.UUID
    other_library: uuid.UUID


@pytest.fixture
async def town(db: AsyncSession, settings: Settings) -> Town:
    org = await factories.create_organisation(db)
    other = await factories.create_organisation(db)
    library = await create_geofence(db, org.id, lon=-1.2577, lat=51.7520, name="Central Library")
    library2 = await create_geofence(db, org.id, lon=-1.2100, lat=51.7480, name="East Library")
    park = await create_geofence(
        db, org.id, lon=-1.2560, lat=51.7530, name="Town Park", category="park"
    )
    leisure = await create_geofence(
        db, org.id, lon=-1.2400, lat=51.7400, name="Pool", category="leisure_centre"
    )
    other_library = await create_geofence(db, other.id, lon=-1.2577, lat=51.7521, name="Theirs")
    town = Town(
        org_id=org.id,
        admin=await quick_staff(db, settings, org, Role.admin),
        editor=await quick_staff(db, settings, org, Role.editor),
        worker=await quick_staff(db, settings, org, Role.field_worker),
        worker2=await quick_staff(db, settings, org, Role.field_worker),
        resident=await factories.create_resident(db, org),
        resident2=await factories.create_resident(db, org),
        other_editor=await quick_staff(db, settings, other, Role.editor),
        other_worker=await quick_staff(db, settings, other, Role.field_worker),
        other_resident=await factories.create_resident(db, other),
        library=library.id,
        library2=library2.id,
        park=park.id,
        leisure=leisure.id,
        other_library=other_library.id,
    )
    await db.commit()
    return town
