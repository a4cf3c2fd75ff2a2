"""app.core.subject.SubjectRef: the one "device or staff" type and its owner columns."""

from __future__ import annotations

import uuid

import pytest

from app.accounts.models import Role
from app.accounts.principal import Principal
from app.core.subject import SubjectRef
from app.notifications.schemas import Recipient

ORG = uuid.uuid4()
WHO = uuid.uuid4()


def test_a_device_owns_rows_through_device_id_only() -> None:
    ref = SubjectRef("device", WHO, ORG)
    assert (ref.device_id, ref.staff_user_id) == (WHO, None)
    assert ref.owner_columns() == {"device_id": WHO, "staff_user_id": None}


def test_a_staff_user_owns_rows_through_staff_user_id_only() -> None:
    ref = SubjectRef("staff", WHO, ORG)
    assert (ref.device_id, ref.staff_user_id) == (None, WHO)
    assert ref.owner_columns() == {"device_id": None, "staff_user_id": WHO}


def test_a_kind_read_from_the_database_must_be_device_or_staff() -> None:
    assert SubjectRef.of("staff", WHO, ORG) == SubjectRef("staff", WHO, ORG)
    with pytest.raises(ValueError, match="not a subject kind"):
        SubjectRef.of("robot", WHO, ORG)


def test_the_caller_and_a_recipient_are_subject_refs() -> None:
    caller = Principal("staff", WHO, ORG, Role.editor)
    assert isinstance(caller, SubjectRef)
    assert caller.staff_user_id == WHO
    assert Recipient is SubjectRef
