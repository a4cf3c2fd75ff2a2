"""app.core.motion: the one implied-speed jump check, and check-ins and pings agree on it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from app.checkins.service import PreviousFix, jump_check
from app.core.config import Settings
from app.core.geo import destination
from app.core.motion import implausible_jump
from app.presence.engine import Fix, LastFix, Params, mark_late_and_jumps
from app.presence.models import PingQuality

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LON, LAT = -2.24, 53.48


def _moved(distance_m: float) -> tuple[float, float]:
    return destination(LON, LAT, 90.0, distance_m)


# (distance between fixes, accuracy of each, seconds between them, flagged at 70 m/s)
CASES = [
    pytest.param(1_000.0, 10.0, 60.0, False, id="plausible"),
    pytest.param(10_000.0, 10.0, 60.0, True, id="too-fast"),
    pytest.param(15.0, 10.0, 0.0, False, id="within-accuracies-at-the-same-time"),
    pytest.param(15.0, 10.0, -30.0, False, id="within-accuracies-going-back-in-time"),
    pytest.param(100.0, 10.0, 0.0, True, id="any-distance-left-at-the-same-time"),
    pytest.param(100.0, 10.0, -30.0, True, id="any-distance-left-going-back-in-time"),
    pytest.param(719.0, 10.0, 10.0, False, id="just-under-the-limit"),
    pytest.param(721.0, 10.0, 10.0, True, id="just-over-the-limit"),
]


@pytest.mark.parametrize(("distance_m", "accuracy_m", "seconds", "flagged"), CASES)
def test_check_ins_and_pings_flag_the_same_jumps(
    distance_m: float, accuracy_m: float, seconds: float, flagged: bool
) -> None:
    lon, lat = _moved(distance_m)
    at = T0 + timedelta(seconds=seconds)
    shared = implausible_jump(LastFix(T0, LON, LAT, accuracy_m), lon, lat, accuracy_m, at, 70.0)
    checkin = jump_check(
        Settings(implausible_speed_mps=70.0),
        PreviousFix("checkin", None, LON, LAT, accuracy_m, T0),
        lon,
        lat,
        accuracy_m,
        at,
    )

    assert (shared is not None) == flagged
    assert (checkin is not None) == flagged
    if shared is not None and checkin is not None:
        assert checkin["implied_speed_mps"] == shared.reported_speed_mps
        assert checkin["distance_m"] == round(shared.distance_m, 1)
    if seconds < 0:
        return  # the engine calls a fix older than the last one late, before any jump check
    fix = Fix(0, "c", at, lon, lat, accuracy_m, None, None)
    mark_late_and_jumps([fix], LastFix(T0, LON, LAT, accuracy_m), Params(max_speed_mps=70.0))
    assert (fix.quality is PingQuality.implausible_jump) == flagged
    if shared is not None:
        assert fix.jump is not None
        assert fix.jump["implied_speed_mps"] == shared.reported_speed_mps


def test_no_time_between_fixes_with_distance_left_is_infinitely_fast() -> None:
    lon, lat = _moved(500.0)
    jump = implausible_jump(LastFix(T0, LON, LAT, 10.0), lon, lat, 10.0, T0, 70.0)
    assert jump is not None
    assert math.isinf(jump.speed_mps)
    assert jump.reported_speed_mps is None


def test_each_caller_keeps_its_explanation_key() -> None:
    lon, lat = _moved(10_000.0)
    at = T0 + timedelta(seconds=60)
    checkin = jump_check(
        Settings(implausible_speed_mps=70.0),
        PreviousFix("ping", None, LON, LAT, 10.0, T0),
        lon,
        lat,
        10.0,
        at,
    )
    assert checkin is not None
    assert checkin["previous_recorded_at"] == T0.isoformat()
    fix = Fix(0, "c", at, lon, lat, 10.0, None, None)
    mark_late_and_jumps([fix], LastFix(T0, LON, LAT, 10.0), Params(max_speed_mps=70.0))
    assert fix.jump is not None
    assert fix.jump["previous_fix_at"] == T0.isoformat()
