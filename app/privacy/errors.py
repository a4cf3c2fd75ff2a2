"""Privacy errors (problem+json)."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound


class DeviceNotFound(NotFound):
    code = "device-not-found"
    title = "Device not found"


class StaffNotFound(NotFound):
    code = "staff-not-found"
    title = "Staff member not found"


class CannotEraseSelf(Conflict):
    code = "cannot-erase-self"
    title = "An administrator cannot erase their own account"
