"""The presence rules as they were before the confidence engine (kept for the quality report).

A frozen copy of `app/presence/engine.py` at commit 3ce4f12: one fix inside with accuracy
<= 100 m enters, one fix beyond max(25 m, accuracy) exits, pass-through at any speed below the
jump limit. `bench/quality` runs it on the same tracks as the current engine for the
side-by-side table in docs/presence.md. Not used by the service.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from app.presence.models import EventType, PingQuality, PresenceState

EARTH_RADIUS_M = 6_371_008.8
TYPE_ORDER = {
    EventType.passed_through: 0,
    EventType.exit: 1,
    EventType.enter: 2,
    EventType.dwell: 3,
    EventType.nearby: 4,
}


@dataclass(frozen=True)
class Params:
    max_accuracy_m: float = 250.0
    max_speed_mps: float = 70.0
    exit_margin_m: float = 25.0
    enter_max_accuracy_m: float = 100.0
    pass_through_max_gap_s: float = 120.0


@dataclass
class Fix:
    """One accepted ping, as evaluated. `idx` is its position in the sorted batch."""

    idx: int
    client_id: str
    recorded_at: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    speed_mps: float | None
    heading: float | None
    quality: PingQuality = PingQuality.ok
    late: bool = False
    jump: dict[str, Any] | None = None  # the speed check's numbers when flagged

    @property
    def triggers(self) -> bool:
        return self.quality is PingQuality.ok and not self.late

    def margin(self, params: Params) -> float:
        return max(params.exit_margin_m, self.accuracy_m or 0.0)


# Immutable values made per fix or per (fix, place) pair: named tuples, which cost a fraction
# of a frozen dataclass to create (that sets each field through object.__setattr__).
class LastFix(NamedTuple):
    recorded_at: datetime
    lon: float
    lat: float
    accuracy_m: float


class Candidate(NamedTuple):
    """A place within reach of a fix. `signed_m` < 0: inside by that depth; > 0: outside."""

    geofence_id: uuid.UUID
    signed_m: float
    trigger_distance_m: float
    dwell_s: int
    active: bool


class Crossing(NamedTuple):
    """The straight segment from the previous fix to fix `to_idx` intersects a place."""

    to_idx: int
    geofence_id: uuid.UUID
    from_distance_m: float
    to_distance_m: float
    active: bool


@dataclass
class State:
    geofence_id: uuid.UUID
    state: PresenceState
    since: datetime
    last_fix_at: datetime
    dwell_emitted: bool
    trigger_distance_m: float
    dwell_s: int


@dataclass
class Transition:
    type: EventType
    geofence_id: uuid.UUID
    fix: Fix
    explanation: dict[str, Any]
    suppressed_reason: str | None = None


@dataclass
class Outcome:
    transitions: list[Transition] = field(default_factory=list)
    states: dict[uuid.UUID, State] = field(default_factory=dict)
    changed: set[uuid.UUID] = field(default_factory=set)  # upsert these
    removed: set[uuid.UUID] = field(default_factory=set)  # delete these (now outside)
    last_fix: LastFix | None = None


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def base_quality(accuracy_m: float | None, params: Params) -> PingQuality:
    if accuracy_m is None or not math.isfinite(accuracy_m) or accuracy_m <= 0:
        return PingQuality.unusable_accuracy
    if accuracy_m > params.max_accuracy_m:
        return PingQuality.low_accuracy
    return PingQuality.ok


def sort_key(fix: Fix) -> tuple[datetime, str]:
    # ties on recorded_at are broken by client id so any arrival order gives one result
    return (fix.recorded_at, fix.client_id)


def mark_late_and_jumps(fixes: list[Fix], last: LastFix | None, params: Params) -> None:
    """In fix-time order: flag fixes older than the last evaluated one as late, then jumps.

    The implied speed between a fix and the previous *good* fix is
    max(0, distance - both accuracies) / seconds between them; above `max_speed_mps` the fix is
    an `implausible_jump`. Jumps do not become the reference for the next fix.
    """
    prev = last
    for fix in sorted(fixes, key=sort_key):
        if last is not None and fix.recorded_at < last.recorded_at:
            fix.late = True
            continue
        if fix.quality is not PingQuality.ok:
            continue
        if prev is not None:
            assert fix.accuracy_m is not None
            dist = haversine_m(prev.lon, prev.lat, fix.lon, fix.lat)
            slack = max(0.0, dist - prev.accuracy_m - fix.accuracy_m)
            dt = (fix.recorded_at - prev.recorded_at).total_seconds()
            speed = math.inf if dt <= 0 else slack / dt
            if slack > 0 and speed > params.max_speed_mps:
                fix.quality = PingQuality.implausible_jump
                fix.jump = {
                    "distance_m": round(dist, 1),
                    "seconds": dt,
                    "implied_speed_mps": round(speed, 1) if math.isfinite(speed) else None,
                    "max_speed_mps": params.max_speed_mps,
                    "previous_fix_at": prev.recorded_at.isoformat(),
                }
                continue
        assert fix.accuracy_m is not None
        prev = LastFix(fix.recorded_at, fix.lon, fix.lat, fix.accuracy_m)


def segments(fixes: list[Fix], last: LastFix | None, params: Params) -> list[tuple[LastFix, Fix]]:
    """Consecutive pairs of triggering fixes close enough in time to look for crossings."""
    out: list[tuple[LastFix, Fix]] = []
    prev = last
    for fix in sorted(fixes, key=sort_key):
        if not fix.triggers:
            continue
        assert fix.accuracy_m is not None
        if prev is not None:
            gap = (fix.recorded_at - prev.recorded_at).total_seconds()
            if 0 < gap <= params.pass_through_max_gap_s:
                out.append((prev, fix))
        prev = LastFix(fix.recorded_at, fix.lon, fix.lat, fix.accuracy_m)
    return out


def _explain(
    fix: Fix, c: Candidate | None, margin: float, reason: str, **extra: Any
) -> dict[str, Any]:
    beyond = extra.pop("beyond_m", None)
    data: dict[str, Any] = {
        "reason": reason,
        "accuracy_m": fix.accuracy_m,
        "margin_m": margin,
        "fix_id": fix.client_id,
        "recorded_at": fix.recorded_at.isoformat(),
    }
    if c is not None:
        data["distance_m"] = round(max(c.signed_m, 0.0), 1)
        data["depth_m"] = round(max(-c.signed_m, 0.0), 1)
        data["trigger_distance_m"] = c.trigger_distance_m
    else:
        # not resolved near this fix: farther than the place's trigger distance plus the margin
        data["distance_m"] = None
        data["beyond_m"] = beyond
    data.update(extra)
    return data


def _explain_if(
    explain: bool, fix: Fix, c: Candidate | None, margin: float, reason: str, **extra: Any
) -> dict[str, Any]:
    return _explain(fix, c, margin, reason, **extra) if explain else {}


def _step(
    fix: Fix,
    gid: uuid.UUID,
    c: Candidate | None,
    st: State | None,
    params: Params,
    *,
    explain: bool = True,
) -> tuple[list[Transition], State | None]:
    """One fix against one place: the transitions and the new state (None = outside).

    `explain=False` leaves the transitions' explanations empty (only their types are needed).
    """
    margin = fix.margin(params)
    acc = fix.accuracy_m or 0.0
    s = c.signed_m if c is not None else math.inf
    t = fix.recorded_at
    out: list[Transition] = []
    cur = st.state if st is not None else PresenceState.outside
    trigger = c.trigger_distance_m if c is not None else (st.trigger_distance_m if st else 0.0)
    dwell_s = c.dwell_s if c is not None else (st.dwell_s if st else 0)
    active = c.active if c is not None else False
    inside = s <= 0
    confident = inside and acc <= params.enter_max_accuracy_m

    def enter() -> State:
        out.append(
            Transition(
                EventType.enter,
                gid,
                fix,
                _explain_if(
                    explain,
                    fix,
                    c,
                    margin,
                    "fix inside the place with enough accuracy",
                    enter_max_accuracy_m=params.enter_max_accuracy_m,
                ),
            )
        )
        new = State(gid, PresenceState.inside, t, t, False, trigger, dwell_s)
        dwell(new)
        return new

    def dwell(state: State) -> None:
        stayed = (t - state.since).total_seconds()
        if not state.dwell_emitted and stayed >= state.dwell_s:
            state.dwell_emitted = True
            out.append(
                Transition(
                    EventType.dwell,
                    gid,
                    fix,
                    _explain_if(
                        explain,
                        fix,
                        c,
                        margin,
                        "stayed inside for the place's dwell time",
                        inside_since=state.since.isoformat(),
                        stayed_s=stayed,
                        dwell_s=state.dwell_s,
                    ),
                )
            )

    if cur is PresenceState.inside:
        assert st is not None
        if s >= margin:
            out.append(
                Transition(
                    EventType.exit,
                    gid,
                    fix,
                    _explain_if(
                        explain,
                        fix,
                        c,
                        margin,
                        "fix beyond the boundary by more than the exit margin",
                        inside_since=st.since.isoformat(),
                        beyond_m=trigger + margin,
                    ),
                )
            )
            if s <= trigger + margin:
                return out, State(gid, PresenceState.nearby, t, t, False, trigger, dwell_s)
            return out, None
        new = replace(st, last_fix_at=t, trigger_distance_m=trigger, dwell_s=dwell_s)
        if active:
            dwell(new)
        return out, new
    if cur is PresenceState.nearby:
        assert st is not None
        if confident and active:
            return out, enter()
        if s > trigger + margin:
            return out, None
        return out, replace(st, last_fix_at=t, trigger_distance_m=trigger, dwell_s=dwell_s)
    # outside
    if not active:
        return out, None
    if confident:
        return out, enter()
    if s <= trigger:
        why = (
            "fix inside the place but too inaccurate to enter; within the trigger distance"
            if inside
            else "fix within the place's trigger distance"
        )
        out.append(
            Transition(EventType.nearby, gid, fix, _explain_if(explain, fix, c, margin, why))
        )
        return out, State(gid, PresenceState.nearby, t, t, False, trigger, dwell_s)
    return out, None


def _suppression(fix: Fix) -> str:
    if fix.late:
        return "late_fix"
    return fix.quality.value


def evaluate(
    fixes: list[Fix],
    candidates: dict[int, list[Candidate]],
    crossings: dict[int, list[Crossing]],
    states: dict[uuid.UUID, State],
    last: LastFix | None,
    params: Params,
) -> Outcome:
    """Walk the fixes in fix-time order; only triggering fixes change presence.

    A non-triggering fix (late, implausible jump) that *would* have caused a transition
    against the current presence is reported as a suppressed candidate, at most once per
    (place, type, reason) per batch.
    """
    outcome = Outcome(states=dict(states), last_fix=last)
    seen_suppressed: set[tuple[uuid.UUID, EventType, str]] = set()
    for fix in sorted(fixes, key=sort_key):
        if fix.quality in (PingQuality.unusable_accuracy, PingQuality.low_accuracy):
            continue  # never resolved: nothing to evaluate or explain beyond its quality
        cands = {c.geofence_id: c for c in candidates.get(fix.idx, [])}
        gids = sorted(set(cands) | set(outcome.states), key=str)
        if not fix.triggers:
            reason = _suppression(fix)
            for gid in gids:
                c, st = cands.get(gid), outcome.states.get(gid)
                # types first: a replayed buffer repeats the same would-be transitions fix
                # after fix, and each is reported once, so most need no explanation
                trans, _ = _step(fix, gid, c, st, params, explain=False)
                if all((gid, tr.type, reason) in seen_suppressed for tr in trans):
                    continue
                trans, _ = _step(fix, gid, c, st, params)
                for tr in trans:
                    key = (gid, tr.type, reason)
                    if key in seen_suppressed:
                        continue
                    seen_suppressed.add(key)
                    tr.suppressed_reason = reason
                    tr.explanation["suppressed"] = reason
                    if fix.jump:
                        tr.explanation["jump"] = fix.jump
                    outcome.transitions.append(tr)
            continue
        for cr in sorted(crossings.get(fix.idx, []), key=lambda c: str(c.geofence_id)):
            st = outcome.states.get(cr.geofence_id)
            prev = outcome.last_fix
            assert prev is not None
            assert fix.accuracy_m is not None
            if (
                cr.active
                and (st is None or st.state is not PresenceState.inside)
                and cr.from_distance_m > prev.accuracy_m
                and cr.to_distance_m > fix.accuracy_m
            ):
                outcome.transitions.append(
                    Transition(
                        EventType.passed_through,
                        cr.geofence_id,
                        fix,
                        {
                            "reason": "straight line between two fixes outside crosses the place",
                            "from_fix_at": prev.recorded_at.isoformat(),
                            "from_distance_m": round(cr.from_distance_m, 1),
                            "from_accuracy_m": prev.accuracy_m,
                            "to_distance_m": round(cr.to_distance_m, 1),
                            "accuracy_m": fix.accuracy_m,
                            "seconds_between": (fix.recorded_at - prev.recorded_at).total_seconds(),
                            "max_gap_s": params.pass_through_max_gap_s,
                            "fix_id": fix.client_id,
                            "recorded_at": fix.recorded_at.isoformat(),
                        },
                    )
                )
        produced: list[Transition] = []
        for gid in gids:
            before = outcome.states.get(gid)
            trans, after = _step(fix, gid, cands.get(gid), before, params)
            produced.extend(trans)
            if after is None:
                if before is not None:
                    del outcome.states[gid]
                    outcome.removed.add(gid)
                    outcome.changed.discard(gid)
            else:
                outcome.states[gid] = after
                outcome.changed.add(gid)
                outcome.removed.discard(gid)
        # one fix, several places: leaving comes before arriving, whatever the place ids
        produced.sort(key=lambda tr: (TYPE_ORDER[tr.type], str(tr.geofence_id)))
        outcome.transitions.extend(produced)
        assert fix.accuracy_m is not None
        outcome.last_fix = LastFix(fix.recorded_at, fix.lon, fix.lat, fix.accuracy_m)
    return outcome
