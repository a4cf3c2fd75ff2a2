"""Who may configure Open311: admins set services, keys and settings; editors read reports."""

from app.accounts.dependencies import AdminUser, EditorUser

__all__ = ["AdminUser", "EditorUser"]
