"""Who something is about: a resident's device or a staff user, in an organisation.

Rows that belong to a person have two owner columns, `device_id` and `staff_user_id`, exactly one
of them set (`OWNER_CHECK`); their tables declare them once, with the `PersonOwned` mixin.
`SubjectRef` is the one type that says which: the caller (`app.accounts.principal.Principal` is
a `SubjectRef`), the recipient of a notification (`app.notifications.schemas.Recipient`), the
owner of a row (`PersonOwned.owner`, `SubjectRef.owning`). Its `device_id`, `staff_user_id` and
`owner_columns()` give the owner columns, so no caller writes `x if kind == "device" else None`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

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

    @classmethod
    def owning(
        cls,
        device_id: uuid.UUID | None,
        staff_user_id: uuid.UUID | None,
        organisation_id: uuid.UUID,
    ) -> SubjectRef:
        """The person of a row's owner columns (exactly one set)."""
        if device_id is not None:
            return cls("device", device_id, organisation_id)
        if staff_user_id is None:
            raise ValueError("a row that belongs to a person has one owner column set")
        return cls("staff", staff_user_id, organisation_id)

    @property
    def device_id(self) -> uuid.UUID | None:
        return self.id if self.kind == "device" else None

    @property
    def staff_user_id(self) -> uuid.UUID | None:
        return self.id if self.kind == "staff" else None

    def owner_columns(self) -> dict[str, uuid.UUID | None]:
        """The owner columns of a row that belongs to this person."""
        return {"device_id": self.device_id, "staff_user_id": self.staff_user_id}


def owner_check(name: str) -> CheckConstraint:
    """The table check of a `PersonOwned` table (`name` as its migration created it)."""
    return CheckConstraint(OWNER_CHECK, name=name)


class PersonOwned:
    """Mixin: the owner columns of a table that belongs to a person (device or staff user).

    Both cascade with their person. A table indexes them (`owner_indexed`) or allows one row
    per person (`owner_unique`) by setting the class variable; add `owner_check(...)` to its
    `__table_args__` (the name its migration gave the check).
    """

    owner_indexed: ClassVar[bool] = False
    owner_unique: ClassVar[bool] = False

    @classmethod
    def _owner(cls, table: str) -> Mapped[uuid.UUID | None]:
        return mapped_column(
            ForeignKey(f"{table}.id", ondelete="CASCADE"),
            index=cls.owner_indexed or None,
            unique=cls.owner_unique or None,
            default=None,
        )

    @declared_attr
    def device_id(cls) -> Mapped[uuid.UUID | None]:
        return cls._owner("devices")

    @declared_attr
    def staff_user_id(cls) -> Mapped[uuid.UUID | None]:
        return cls._owner("staff_users")

    @classmethod
    def owner_column(cls, kind: SubjectKindName) -> Any:
        """The column that holds a person of this kind (for a query's filter)."""
        return cls.device_id if kind == "device" else cls.staff_user_id

    @property
    def owner_id(self) -> uuid.UUID:
        owner = self.device_id or self.staff_user_id
        assert owner is not None, "a row that belongs to a person has one owner column set"
        return owner

    def owned_by(self, who: SubjectRef) -> bool:
        """Whether this row is `who`'s (same kind and id; the organisation is the caller's
        query's business)."""
        return (self.device_id, self.staff_user_id) == (who.device_id, who.staff_user_id)
