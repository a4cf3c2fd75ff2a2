"""The caller of a request: a plain value that services take (the FastAPI dependencies that
authenticate and build it are in `app.accounts.dependencies`)."""

from __future__ import annotations

from dataclasses import dataclass

from app.accounts.models import Device, Role, StaffUser
from app.core.subject import SubjectRef


@dataclass(frozen=True)
class Principal(SubjectRef):
    """Who is calling (kind, id, organisation_id: a `SubjectRef`) and, for staff, their role."""

    role: Role | None
    staff: StaffUser | None = None
    device: Device | None = None  # not loaded by get_principal (id + organisation suffice)

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    @property
    def email(self) -> str | None:
        """A staff caller's email (residents have none)."""
        return self.staff.email if self.staff else None
