"""Load-or-404 for the staff subject-rights endpoints: a device of the admin's organisation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends

from app.accounts.dependencies import AdminUser
from app.core.db import Session
from app.privacy import repository
from app.privacy.errors import DeviceNotFound


async def managed_device(session: Session, admin: AdminUser, device_id: uuid.UUID) -> Any:
    """The device as a plain dict, or 404 (missing or another organisation's)."""
    device = await repository.device_in_org(session, admin.organisation_id, device_id)
    if device is None:
        raise DeviceNotFound()
    return device


ManagedDevice = Annotated[dict[str, Any], Depends(managed_device)]
