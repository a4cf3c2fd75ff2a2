"""Load-or-404 for the admins' subject-rights endpoints: a device or staff member of the
admin's organisation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends

from app.accounts.dependencies import AdminUser
from app.core.db import Session
from app.privacy import repository
from app.privacy.errors import DeviceNotFound, StaffNotFound


async def managed_device(session: Session, admin: AdminUser, device_id: uuid.UUID) -> Any:
    """The device as a plain dict, or 404 (missing or another organisation's)."""
    device = await repository.device_in_org(session, admin.organisation_id, device_id)
    if device is None:
        raise DeviceNotFound()
    return device


ManagedDevice = Annotated[dict[str, Any], Depends(managed_device)]


async def managed_staff(session: Session, admin: AdminUser, user_id: uuid.UUID) -> Any:
    """The staff member as a plain dict, or 404 (missing or another organisation's)."""
    staff = await repository.staff_in_org(session, admin.organisation_id, user_id)
    if staff is None:
        raise StaffNotFound()
    return staff


ManagedStaff = Annotated[dict[str, Any], Depends(managed_staff)]
