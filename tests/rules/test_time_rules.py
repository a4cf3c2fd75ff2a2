"""Quiet hours, shifts and the local day: pure functions, fixed instants (DST included)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from app.rules.service import Prefs, day_start, on_shift, quiet_until


def prefs(**kw: object) -> Prefs:
    base: dict[str, object] = {
        "time_zone": "Europe/London",
        "quiet_start": time(21),
        "quiet_end": time(8),
        "opted_out": frozenset(),
        "max_per_day": 3,
    }
    base.update(kw)
    return Prefs(**base)  # type: ignore[arg-type]


def test_quiet_hours_across_midnight_end_the_next_local_morning() -> None:
    p = prefs()
    # 22:30 BST (21:30 UTC) on 1 July → quiet until 08:00 BST = 07:00 UTC on 2 July
    assert quiet_until(p, datetime(2026, 7, 1, 21, 30, tzinfo=UTC)) == datetime(
        2026, 7, 2, 7, 0, tzinfo=UTC
    )
    # 07:59 BST the same morning → ends at 08:00 BST today
    assert quiet_until(p, datetime(2026, 7, 2, 6, 59, tzinfo=UTC)) == datetime(
        2026, 7, 2, 7, 0, tzinfo=UTC
    )
    assert quiet_until(p, datetime(2026, 7, 2, 7, 0, tzinfo=UTC)) is None  # 08:00 BST: awake
    assert quiet_until(p, datetime(2026, 7, 2, 19, 59, tzinfo=UTC)) is None  # 20:59 BST


def test_quiet_hours_end_on_the_clock_after_a_dst_change() -> None:
    # night of 28-29 March 2026: clocks go forward at 01:00 GMT; 08:00 BST = 07:00 UTC
    assert quiet_until(prefs(), datetime(2026, 3, 28, 22, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 7, 0, tzinfo=UTC
    )
    assert quiet_until(prefs(quiet_start=None, quiet_end=None), datetime.now(UTC)) is None


def test_daytime_quiet_hours() -> None:
    p = prefs(quiet_start=time(12), quiet_end=time(14), time_zone="UTC")
    assert quiet_until(p, datetime(2026, 1, 5, 13, 0, tzinfo=UTC)) == datetime(
        2026, 1, 5, 14, 0, tzinfo=UTC
    )
    assert quiet_until(p, datetime(2026, 1, 5, 14, 0, tzinfo=UTC)) is None


def test_overnight_shift_belongs_to_the_day_it_starts() -> None:
    # Mon-Fri 22:00-06:00 UTC; 5 Jan 2026 is a Monday
    p = prefs(shift_start=time(22), shift_end=time(6), shift_days=(1, 2, 3, 4, 5), time_zone="UTC")
    assert on_shift(p, datetime(2026, 1, 5, 23, 0, tzinfo=UTC))  # Monday night
    assert on_shift(p, datetime(2026, 1, 6, 5, 0, tzinfo=UTC))  # Monday's shift, Tuesday 05:00
    assert not on_shift(p, datetime(2026, 1, 6, 12, 0, tzinfo=UTC))
    assert on_shift(p, datetime(2026, 1, 10, 5, 0, tzinfo=UTC))  # Saturday 05:00: Friday's shift
    assert not on_shift(p, datetime(2026, 1, 10, 23, 0, tzinfo=UTC))  # Saturday night: off
    assert on_shift(prefs(), datetime(2026, 1, 10, 23, 0, tzinfo=UTC))  # no shift: always on


def test_the_budget_day_starts_at_local_midnight() -> None:
    # 00:30 BST on 2 July is 23:30 UTC on 1 July: the day began at 23:00 UTC
    assert day_start(prefs(), datetime(2026, 7, 1, 23, 30, tzinfo=UTC)) == datetime(
        2026, 7, 1, 23, 0, tzinfo=UTC
    )
