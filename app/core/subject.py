"""Who something is about: a resident's device or a staff user, in an organisation.

Rows that belong to a person have two owner columns, `device_id` and `staff_user_id`, exactly one
of them set (`OWNER_CHECK`). `SubjectRef` is the one type that says which: the caller
(`app.accounts.principal.Principal` is a `SubjectRef`), the recipient of a notification
(`app.notifications.schemas.Recipient`), the owner of a preference row. Its `device_id`,
`staff_user_id` and `owner_columns()` give the owner columns, so no caller writes
`x if kind == "device" else None` again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

SubjectKindName = Literal["device", "staff"]

# the table check of every row that belongs to a person: exactly one owner column is set
OWNER_CHECK = "(device_id IS NULL) <> (staff_user_id IS NULL)"


@dataclass(frozen=True)
class SubjectRef:
    kind: SubjectKindName
    id: uuid.UUID
    organisation_id: uuid.UUID

    @classmethod
    def of(cls, kind: str, id: uuid.UUID, organisation_id: uuid.UUID) -> SubjectRef:
        """From a kind read as text (a database row); anything but device/staff is an error."""
        if kind == "device":
            return cls("device", id, organisation_id)
        if kind == "staff":
            return cls("staff", id, organisation_id)
        raise ValueError(f"not a subject kind: {kind!r}")

    @property
    def device_id(self) -> uuid.UUID | None:
        return self.id if self.kind == "device" else None

    @property
    def staff_user_id(self) -> uuid.UUID | None:
        return self.id if self.kind == "staff" else None

    def owner_columns(self) -> dict[str, uuid.UUID | None]:
        """The owner columns of a row that belongs to this person."""
        return {"device_id": self.device_id, "staff_user_id": self.staff_user_id}
