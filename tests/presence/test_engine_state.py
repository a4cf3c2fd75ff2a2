"""The engine's hand-built next state (`engine._next_fix`) is `dataclasses.replace`'s."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from app.presence import engine
from app.presence.models import PresenceState


def test_a_states_next_fix_carries_every_other_field_as_replace_would() -> None:
    # _next_fix names each field of State: a field added to State must be added there too
    assert [f.name for f in dataclasses.fields(engine.State)] == [
        "geofence_id",
        "state",
        "since",
        "last_fix_at",
        "dwell_emitted",
        "trigger_distance_m",
        "dwell_s",
        "evidence",
        "pending_fixes",
        "pending_since",
    ]
    t0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    st = engine.State(
        geofence_id=uuid.uuid4(),
        state=PresenceState.inside,
        since=t0,
        last_fix_at=t0 + timedelta(seconds=10),
        dwell_emitted=True,
        trigger_distance_m=25.0,
        dwell_s=120,
        evidence=0.7,
        pending_fixes=2,
        pending_since=t0 + timedelta(seconds=5),
    )
    t = t0 + timedelta(seconds=20)
    made = engine._next_fix(st, t, 30.0, 300, 1.2, 1, t0 + timedelta(seconds=15))
    assert made == dataclasses.replace(
        st,
        last_fix_at=t,
        trigger_distance_m=30.0,
        dwell_s=300,
        evidence=1.2,
        pending_fixes=1,
        pending_since=t0 + timedelta(seconds=15),
    )
    assert made is not st
