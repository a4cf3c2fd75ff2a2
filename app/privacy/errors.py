"""Privacy errors (problem+json)."""

from __future__ import annotations

from app.core.errors import NotFound


class DeviceNotFound(NotFound):
    code = "device-not-found"
    title = "Device not found"
