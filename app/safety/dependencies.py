"""Who may use the lone-working endpoints (responders are checked in the service)."""

from __future__ import annotations

from app.accounts.dependencies import AdminUser, CurrentStaff, EditorUser

__all__ = ["AdminUser", "CurrentStaff", "EditorUser"]
