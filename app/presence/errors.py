"""Presence domain errors (problem+json via the shared handler)."""

from __future__ import annotations

from typing import Any

from app.core.errors import Conflict, PayloadTooLarge


class BackgroundLocationOff(Conflict):
    code = "background-location-off"
    title = "Background location is off"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            "This device has background location switched off; turn it on with "
            "PUT /v1/me/background-location before sending pings. Nothing was stored.",
            **kwargs,
        )


class TooManyPings(PayloadTooLarge):
    code = "too-many-pings"
    title = "Too many pings in one batch"
