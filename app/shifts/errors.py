"""Shift and tracking errors (problem+json via the shared handler; docs/tasks.md, "Shifts")."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class OffShift(Conflict):
    """A field worker's fix or check-in while they may not be located: nothing is stored."""

    code, title = "off-shift", "Not on shift"

    def __init__(self, reason: str) -> None:
        detail = (
            "Tracking is paused: resume it (POST /v1/me/tracking/resume) to share your location."
            if reason == "paused"
            else "You are not on shift: field workers are located only during their shift "
            "(or an ad-hoc shift started with POST /v1/me/shift/start)."
        )
        super().__init__(detail + " Nothing was stored.", extra={"reason": reason})


class ShiftAlreadyStarted(Conflict):
    code, title = "shift-already-started", "An ad-hoc shift is already running"


class NoOpenShift(Conflict):
    code, title = "no-open-shift", "No ad-hoc shift is running"


class AlreadyPaused(Conflict):
    code, title = "already-paused", "Tracking is already paused"


class NotPaused(Conflict):
    code, title = "not-paused", "Tracking is not paused"


class ShiftTooLong(Unprocessable):
    code, title = "shift-too-long", "Ad-hoc shift too long"


class WorkerNotFound(NotFound):
    code, title = "worker-not-found", "Field worker not found"
