"""Geofence errors: each becomes a problem+json document naming the reason."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.geo import GeoError


class GeofenceNotFound(NotFound):
    title = "Geofence not found"


class TooManyGeofences(Conflict):
    """The organisation already holds `geofence_max_per_organisation` live places."""

    code = "too-many-geofences"
    title = "Too many places"


class InvalidGeofence(Unprocessable):
    """422 with a stable `reason` code and the failing `field`."""

    code = "invalid-geofence"
    title = "Invalid geofence"

    def __init__(self, reason: str, detail: str, field: str) -> None:
        super().__init__(
            detail,
            extra={
                "reason": reason,
                "field": field,
                "errors": [{"field": field, "reason": reason, "msg": detail}],
            },
        )
        self.reason = reason
        self.field = field

    @classmethod
    def from_geo(cls, exc: GeoError) -> InvalidGeofence:
        return cls(exc.reason, exc.message, exc.field)
