"""Who may use the task endpoints: staff only; field workers are scoped in the service."""

from __future__ import annotations

from app.accounts.dependencies import CurrentStaff, EditorUser

__all__ = ["CurrentStaff", "EditorUser"]
