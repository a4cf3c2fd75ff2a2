from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class PlaceNotFound(NotFound):
    code, title = "place-not-found", "Place not found"


class TooFar(Unprocessable):
    code, title = "too-far", "Too far from the place"


class NoPlaceHere(Unprocessable):
    code, title = "no-place-here", "No place here"


class AccuracyTooPoor(Unprocessable):
    code, title = "accuracy-too-poor", "Location accuracy too poor"


class BadFixTime(Unprocessable):
    code, title = "bad-fix-time", "Fix time not acceptable"


class AmbiguousPlace(Conflict):
    code, title = "ambiguous-place", "Several places match"


class CheckInNotFound(NotFound):
    code, title = "checkin-not-found", "Check-in not found"
