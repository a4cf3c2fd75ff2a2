from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unauthorized, Unprocessable


class InvalidCredentials(Unauthorized):
    code, title = "invalid-credentials", "Invalid credentials"


class EmailUnavailable(Conflict):
    """One answer whatever the reason (used in this organisation or in another one), naming
    neither the address nor where it is used: staff must not learn about other organisations."""

    code, title = "email-unavailable", "Email address unavailable"

    def __init__(self) -> None:
        super().__init__(
            "This email address cannot be used for a new staff account; choose another one.",
            extra={"field": "email"},
        )


class UserNotFound(NotFound):
    code, title = "user-not-found", "User not found"


class UnknownOrganisation(Unprocessable):
    code, title = "unknown-organisation", "Unknown organisation"


class CannotChangeSelf(Conflict):
    code, title = "cannot-change-self", "Cannot change your own account this way"


class AccountErased(Conflict):
    code, title = "account-erased", "This account was erased"
