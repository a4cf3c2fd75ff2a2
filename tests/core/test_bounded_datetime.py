"""`BoundedDatetime`: [1900-01-01, 3000-01-01) UTC whatever the offset (app/core/types.py).

The check answers most values from their year alone; the values near both bounds, with offsets
that move them across, must be judged exactly as a comparison in UTC would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from app.core.types import MAX_DATETIME, MIN_DATETIME, BoundedDatetime

ADAPTER = TypeAdapter(BoundedDatetime)

CASES = [
    ("1900-01-01T00:00:00Z", True),
    ("1899-12-31T23:59:59Z", False),
    ("1900-01-01T00:30:00+01:00", False),  # 1899-12-31T23:30Z
    ("1899-12-31T23:30:00-01:00", True),  # 1900-01-01T00:30Z
    ("1900-06-01T00:00:00+14:00", True),
    ("1901-01-01T00:00:00+14:00", True),
    ("2998-12-31T23:59:59-14:00", True),
    ("2999-12-31T23:30:00-00:20", True),  # 2999-12-31T23:50Z
    ("2999-12-31T23:30:00-01:00", False),  # 3000-01-01T00:30Z
    ("3000-01-01T00:30:00+01:00", True),  # 2999-12-31T23:30Z
    ("3000-01-01T00:00:00Z", False),
    ("1900-01-01T00:00:00", True),  # naive: read as UTC
    ("2999-12-31T23:59:59", True),
    ("9999-12-31T23:59:59-14:00", False),
    ("0001-01-01T00:00:00+14:00", False),
    ("2026-12-03T10:00:00+05:30", True),
]


@pytest.mark.parametrize(("text", "inside"), CASES)
def test_a_datetime_is_judged_in_utc_whatever_its_offset(text: str, inside: bool) -> None:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    try:
        utc = parsed if parsed.tzinfo is None else parsed.astimezone(UTC)
        truth = MIN_DATETIME <= utc.replace(tzinfo=UTC) < MAX_DATETIME
    except OverflowError:
        truth = False
    assert truth is inside  # the table itself is right
    if inside:
        value = ADAPTER.validate_python(text)
        assert value.utcoffset() == parsed.utcoffset()  # kept as given
        assert value - parsed == timedelta(0) if parsed.tzinfo else value == parsed
    else:
        with pytest.raises(ValidationError):
            ADAPTER.validate_python(text)
