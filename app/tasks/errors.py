from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable


class TaskNotFound(NotFound):
    code, title = "task-not-found", "Task not found"


class UnknownGeofence(Unprocessable):
    code, title = "unknown-geofence", "Unknown place"


class UnknownAssignee(Unprocessable):
    code, title = "unknown-assignee", "Unknown assignee"


class InvalidTaskChange(Unprocessable):
    code, title = "invalid-task-change", "Invalid task change"


class IllegalTransition(Conflict):
    code, title = "illegal-transition", "Illegal status transition"


class VisitRequired(Conflict):
    code, title = "visit-required", "Visit required"


class TransitionForbidden(Forbidden):
    code, title = "transition-forbidden", "Not allowed to make this change"


class InvalidPhoto(Unprocessable):
    code, title = "invalid-photo", "Not a usable photo"


class PhotoTooLarge(PayloadTooLarge):
    code, title = "photo-too-large", "Photo too large"


class TooManyPhotos(Conflict):
    code, title = "too-many-photos", "Too many photos"


class PhotoNotFound(NotFound):
    code, title = "photo-not-found", "Photo not found"
