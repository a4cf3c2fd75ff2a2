"""Async factory functions: each returns what a test needs to act as that caller."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.accounts.models import Device, Organisation, Role, StaffUser
from app.core.config import Settings
from app.core.security import StaffClaims, issue_staff_token

DEFAULT_PASSWORD = "correct horse battery"


async def create_organisation(db: AsyncSession, slug: str | None = None) -> Organisation:
    slug = slug or f"org-{secrets.token_hex(4)}"
    return await accounts_service.create_organisation(db, slug, slug.replace("-", " ").title())


@dataclass
class Staff:
    """Plain copies of the ids are kept: ORM attributes expire when a request rolls back."""

    user: StaffUser
    token: str
    id: uuid.UUID
    email: str
    organisation_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Resident:
    device: Device
    token: str
    id: uuid.UUID
    organisation_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_staff(
    db: AsyncSession,
    settings: Settings,
    org: Organisation,
    role: Role,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
) -> Staff:
    user = await accounts_service.create_user(
        db,
        org.id,
        email=email or f"{role.value}-{secrets.token_hex(4)}@example.org",
        full_name=f"Test {role.value}",
        password=password,
        role=role,
    )
    token = issue_staff_token(settings, StaffClaims(user.id, org.id, role.value))
    return Staff(user, token, user.id, user.email, user.organisation_id)


async def create_resident(db: AsyncSession, org: Organisation) -> Resident:
    device, token = await accounts_service.register_device(db, org.slug, "web")
    return Resident(device, token, device.id, device.organisation_id)
