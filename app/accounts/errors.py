from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unauthorized, Unprocessable


class InvalidCredentials(Unauthorized):
    code, title = "invalid-credentials", "Invalid credentials"


class EmailTaken(Conflict):
    code, title = "email-taken", "Email already in use"


class UserNotFound(NotFound):
    code, title = "user-not-found", "User not found"


class UnknownOrganisation(Unprocessable):
    code, title = "unknown-organisation", "Unknown organisation"
