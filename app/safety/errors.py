from app.core.errors import Conflict, Forbidden, NotFound, Unprocessable


class VisitNotFound(NotFound):
    code, title = "visit-not-found", "Visit not found"


class VisitEnded(Conflict):
    code, title = "visit-ended", "Visit already ended"


class AlertNotFound(NotFound):
    code, title = "alert-not-found", "Alert not found"


class AlreadyAcknowledged(Conflict):
    code, title = "already-acknowledged", "Alert already acknowledged"


class NotAResponder(Forbidden):
    code, title = "not-a-responder", "Not a responder"


class InvalidOnCall(Unprocessable):
    code, title = "invalid-on-call", "Invalid on-call list"


class UnknownCategory(Unprocessable):
    code, title = "unknown-category", "Unknown place category"


class CategoryNotSet(NotFound):
    code, title = "category-not-set", "No visit length for this category"
