"""The transition engine: pure functions, no SQL, no I/O (docs/presence.md explains every rule).

`mark_late_and_jumps` decides each fix's quality (late fixes, implausible jumps); `evaluate`
walks a subject's fixes in `recorded_at` order against its presence and the places each fix was
resolved to (by the set-based SQL in repository.py) and returns the transitions.

Confidence rules (measured against ground truth by `bench/quality`, docs/presence.md):
- enter: each fix gives evidence, the log-likelihood ratio of "inside by 5 m" against "outside
  by 5 m" for its signed distance and accuracy (linear in its depth, capped per fix); the
  evidence adds up over consecutive fixes (a CUSUM that never goes below 0) and the place is
  entered when it reaches `enter_evidence` from at least `enter_min_fixes` fixes. One fix never
  enters; fixes only a little inside, or inaccurate ones, need more of them, and so does a
  small place (its fixes read shallow). Each fix's error counts the accuracy figure plus the
  error fixes in a row share (`evidence_shared_m`), and each gives up `evidence_drag`, so a long
  run of fixes each a little inside (a walk along a park's railings) does not add up.
- exit: two fixes in a row out of the place: both beyond the exit margin, max(exit margin,
  accuracy), or the first beyond 0.6 of it and the second beyond 1.5 margins; while a stay
  whose mean is inside the place lasts, its fixes do not count as out, and neither do fixes
  away from it until two in a row agree (close together, or the second farther out the same
  way): two outliers on different sides never end a visit.
- stay: where the subject has stayed put; its mean, measured at 6, 9, 14, 21, 32, ... fixes
  (each of the fixes since the milestone before the last), enters a place the stay is in even
  when single fixes read shallow, on a fix of a phone that reports it is not moving.
- passed_through: only at a speed plausible for the crossing, only when the straight line
  between the fixes runs at least `pass_through_min_depth_m` deep inside the place, and (when
  the phone reports its speed) only when the line is about as fast as the phone went and the
  crossing lies deeper than half the bow the path the phone reported could have made off the
  line: after a turn between the fixes the line is a shortcut the person never took.
"""

from __future__ import annotations

import heapq
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from app.core.geo import EARTH_RADIUS_M, haversine_m
from app.core.motion import implausible_jump
from app.presence.models import EventType, PingQuality, PresenceState

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
    # an exit on two fixes: the second beyond 1.5 margins and the first beyond this share of
    # one (someone walking away, the first fix of the departure reported a little short)
    exit_walk_prev_margins: float = 0.6
    enter_max_accuracy_m: float = 100.0
    pass_through_max_gap_s: float = 120.0
    pass_through_max_speed_mps: float = 35.0
    # the middle of the straight line's part inside must lie this deep (not a corner cut: on a
    # real city map, vehicles' lines between fixes 15-30 s apart cut the corners of buildings
    # 10-20 m deep along curving roads)
    pass_through_min_depth_m: float = 20.0
    # a path as long as the reported speed times the time between the fixes, S, can bow
    # sqrt(S^2 - L^2) / 2 away from the straight line of length L: the crossing must lie
    # deeper than this share of that bow (0: not checked)
    pass_through_bow_share: float = 0.5
    # the line is the path only if its speed agrees with the speed the phone reported at the
    # second fix, within this share either way (a turn between the fixes makes it slower; a
    # phone that had stopped did not cross anything at speed)
    pass_through_min_speed_share: float = 0.8
    enter_evidence: float = 4.0  # log-likelihood ratio that must add up before an enter
    evidence_cap: float = 3.5  # most one fix may add (or take away)
    enter_min_fixes: int = 2
    min_accuracy_m: float = 5.0  # below this, accuracy figures are not believed
    # errors an accuracy figure leaves out, which fixes in a row share (a street's multipath
    # bias, slow drift): added to each fix's own
    evidence_shared_m: float = 3.0
    evidence_drag: float = 0.15  # taken from every fix's gain: a long run of fixes that each
    # point a little inside (someone walking along a park's railings) does not add up
    evidence_delta_m: float = 5.0  # the inside and outside positions the evidence weighs
    stay_radius_m: float = 25.0  # a fix within max(this, 2 x accuracy) of a stay's mean joins it
    stay_min_s: float = 60.0  # a stay this long may enter on its mean position
    stay_first_anchor: int = 6  # fixes in a stay when its mean is first measured
    stay_anchor_growth: float = 1.5  # each later measure when the stay has this many times more
    # this many fixes in a row reporting >= stay_max_speed_mps (a walk within the stay's
    # radius: into the building next door, or in from the pavement) start its measures again
    # from the next fix; the stay itself goes on (what it protects holds until the next measure)
    stay_rebase_moving_fixes: int = 3
    # ... and so do the fixes since the last measure (at least `stay_first_anchor` of them)
    # when their mean lies this many sigmas (both means' uncertainties) from the measured one:
    # a walk the phone did not report (no speed, or it fell in a gap between fixes)
    stay_move_sigmas: float = 3.0
    stay_window_back: int = 2  # each measure is of the fixes since this many milestones ago
    stay_spread_floor: float = 0.7  # the mean's own error assumes at least this share of the
    # spread the fixes' accuracy figures predict (phones over-report their accuracy)
    stay_drift_m: float = 2.5  # errors fixes share (multipath), over stay_drift_tau_s
    stay_drift_tau_s: float = 60.0
    stay_floor_m: float = 1.5  # what a stay's mean never gets below (a biased signal)
    # what a stay's mean must give to enter: less than fixes need, as it already sums 6 fixes
    # or more over a minute, and its uncertainty keeps the drift and a bias floor
    stay_enter_evidence: float = 3.0
    stay_max_speed_mps: float = 1.0
    # a phone reporting less than this is still: two fixes away from a stay do not end it then
    # (walking is 1.1-1.7 m/s; a still phone's Doppler speed reads 0-0.3)
    still_max_speed_mps: float = 0.5
    still_hold_after_s: float = 600.0  # ... once the stay has lasted this long
    # a fix farther from a stay's mean than this many of its own sigmas is no outlier of a
    # phone that stays put (multipath lands 3-6 sigma off) if someone walking at
    # `stay_walk_max_mps` could have got there since the stay's last fix (after a gap): two
    # such in a row are a move, whatever their directions (a walk turns corners) or the speed
    # the phone reports
    stay_outlier_max_sigmas: float = 8.0
    stay_walk_max_mps: float = 2.5
    stay_enter_max_out: float = 0.25  # the fix a stay enters on is out by at most this share
    # of the exit margin (not someone already leaving)
    # Indoors, satellite signals come through a roof and walls: a phone that stops and whose
    # accuracy figures get clearly worse than its own while it walked the streets has most
    # likely gone in. The stay's mean gets up to `indoor_gain` more evidence for that, graded
    # by how sure the difference is (its z-score from `indoor_z0` to `indoor_z1`), measured
    # against the mean of the phone's last `indoor_ref_fixes` fixes while moving (at least
    # `indoor_min_ref_fixes` of them); `accuracy_log_spread`: how much a phone's accuracy
    # figure varies from fix to fix (the standard deviation of its logarithm).
    indoor_gain: float = 3.0
    indoor_z0: float = 1.5
    indoor_z1: float = 4.0
    indoor_ref_fixes: int = 20
    indoor_min_ref_fixes: int = 6
    accuracy_log_spread: float = 0.35
    # ... and only for a place whose own walls are nearer the stay's mean than any other
    # place, by this many of the mean's sigmas (indoors says nothing about which of two
    # buildings sharing a wall)
    indoor_neighbour_sigmas: float = 1.0
    # while the stay's mean is outside a place by this much evidence (the stay's enter
    # evidence, `stay_gain`) and the phone stays put, its fixes can only take the place's enter
    # evidence away: a wait on the pavement is measured on its mean, not on a run of its
    # noisiest fixes; and a stay whose mean is outside by less still protects a place the
    # subject is in (a poor phone indoors whose mean came out beyond the wall). 0: neither
    stay_outside_evidence: float = 3.0
    # someone who walked into the place next door (a stay begun after they entered the first,
    # or a walk within the stay: `stay_rebase_moving_fixes`, `stay_move_sigmas`): once the
    # stay's mean measured since the walk is out of a place they were in and inside another,
    # each by this much evidence (`stay_gain`), they have left the first (0: never; they then
    # stay "inside" both until they go beyond the exit margin)
    stay_next_door_evidence: float = 3.0


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
    # (the stay before, the params, the stay after) this fix, as `stay_anchors` computed it:
    # `evaluate` takes the stay after from here when it starts from that very stay
    stay_memo: tuple[Stay | None, Params, Stay] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def triggers(self) -> bool:
        return self.quality is PingQuality.ok and not self.late

    def margin(self, params: Params) -> float:
        return max(params.exit_margin_m, self.accuracy_m or 0.0)


def window_m(fix: Fix, params: Params) -> float:
    """How far beyond a place's trigger distance a fix is measured against it: 1.5 times its
    exit margin, the farthest distance a rule compares with. Every rule decides the same way
    for a place farther than that (no candidate) as for one measured there, so a batch is
    judged as if its fixes came one by one."""
    return 1.5 * fix.margin(params)


# Immutable values made per fix or per (fix, place) pair: named tuples, which cost a fraction
# of a frozen dataclass to create (that sets each field through object.__setattr__).
class LastFix(NamedTuple):
    recorded_at: datetime
    lon: float
    lat: float
    accuracy_m: float


class Stay(NamedTuple):
    """Where the subject has stayed put since `since`: the weighted mean of its fixes.

    Positions are metres east/north of the stay's first fix (lon0, lat0). The mean is measured
    against the places (the anchor) when the stay reaches 6, 9, 14, 21, ... fixes (each time
    1.5 times more; counted from `n0`, the fix after the last walk within the stay), so where
    it is measured does not depend on how the fixes were batched;
    `out` is 1 after a fix away from it (left out, as an outlier; `out_x`/`out_y` say where):
    a second one away that agrees with it ends the stay.
    """

    since: datetime
    lon0: float
    lat0: float
    n: int
    sum_w: float  # sum of the fixes' weights, 1 / sigma^2
    sum_x: float  # weighted sums of their positions and squared distances from the first fix
    sum_y: float
    sum_r2: float
    out: int = 0
    out_x: float = 0.0  # where the fix away from it was (metres, as the sums)
    out_y: float = 0.0
    out_still: bool = False  # the phone reported it was still at that fix
    out_far: bool = False  # ... and it was farther than any outlier, a walk away in the time
    joined_s: float = 0.0  # seconds from `since` to the last fix that joined the stay
    # the sums at the last milestone: each mean measured is of the fixes since the one before
    # (the first few of a stay are often still the walk in)
    base: tuple[int, float, float, float, float] = (0, 0.0, 0.0, 0.0, 0.0)
    prior: tuple[int, float, float, float, float] = (0, 0.0, 0.0, 0.0, 0.0)  # the one before
    anchor_lon: float | None = None
    anchor_lat: float | None = None
    anchor_n: int = 0
    anchor_sigma_m: float = 0.0
    # the phone's accuracy figures (their logarithms): the running mean of its fixes while
    # moving (`ref_la`, over `ref_n` of them, carried from stay to stay), their sum over this
    # stay's fixes and at its last two milestones, and what the last measure made of them
    ref_la: float = 0.0
    ref_n: int = 0
    sum_la: float = 0.0
    base_la: float = 0.0
    prior_la: float = 0.0
    anchor_indoor: float = 0.0  # evidence the stay's mean gets for its accuracy (indoors)
    anchor_contrast: float = 0.0  # the stay's log accuracy minus the moving phone's
    moving_run: int = 0  # fixes in a row, up to the last, that reported moving
    moved_n: int = 0  # the stay's fix count at its last fix that reported moving
    anchor_from_n: int = 0  # ... and at the first fix of the mean last measured
    n0: int = 0  # measures count from this many fixes (the stay's last move within it)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        kx = M_PER_DEG * math.cos(math.radians(self.lat0))
        return ((lon - self.lon0) * kx, (lat - self.lat0) * M_PER_DEG)

    @property
    def mean_xy(self) -> tuple[float, float]:
        return (self.sum_x / self.sum_w, self.sum_y / self.sum_w)

    def window(self, back: int = 1) -> tuple[int, float, float, float, float]:
        """(n, sum_w, sum_x, sum_y, sum_r2) of the fixes since the last milestone (`back` = 2:
        the one before it)."""
        n, w, x, y, r2 = self.base if back == 1 else self.prior
        return (self.n - n, self.sum_w - w, self.sum_x - x, self.sum_y - y, self.sum_r2 - r2)

    def lonlat(self, mx: float, my: float) -> tuple[float, float]:
        kx = M_PER_DEG * math.cos(math.radians(self.lat0))
        return (round(self.lon0 + mx / kx, 6), round(self.lat0 + my / M_PER_DEG, 6))

    @property
    def anchor(self) -> tuple[float, float] | None:
        if self.anchor_lon is None or self.anchor_lat is None:
            return None
        return (self.anchor_lon, self.anchor_lat)

    def to_json(self) -> dict[str, Any]:
        return {**self._asdict(), "since": self.since.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stay:
        return cls(
            **{
                **data,
                "since": datetime.fromisoformat(data["since"]),
                "base": tuple(data["base"]),
                "prior": tuple(data.get("prior", (0, 0.0, 0.0, 0.0, 0.0))),
            }
        )


M_PER_DEG = math.radians(EARTH_RADIUS_M)


def _sigma(accuracy_m: float, params: Params) -> float:
    return max(accuracy_m, params.min_accuracy_m) * SIGMA_PER_ACCURACY


def _bow_m(fix: Fix, seconds: float, line_speed: float) -> float:
    """How far a path as long as the phone reported (its speed at the second fix times the
    time between the fixes) can bow off the straight line between them: half the other side of
    a right triangle (0 if the phone reported no speed, or the line is as long as the path)."""
    if fix.speed_mps is None:
        return 0.0
    path, line = fix.speed_mps * seconds, line_speed * seconds
    return 0.5 * math.sqrt(max(0.0, path * path - line * line))


def next_stay(stay: Stay | None, fix: Fix, params: Params) -> Stay:
    """The stay after a triggering fix: joined, an outlier left out, or a new stay begun.

    A fix less accurate than twice the stay radius says nothing about where someone stays.
    """
    assert fix.accuracy_m is not None
    if stay is not None and fix.accuracy_m > 2 * params.stay_radius_m:
        return stay
    la = math.log(max(fix.accuracy_m, params.min_accuracy_m))
    ref_la, ref_n = (stay.ref_la, stay.ref_n) if stay is not None else (0.0, 0)
    moving = fix.speed_mps is not None and fix.speed_mps >= params.stay_max_speed_mps
    if moving:
        # a fix of the phone on the move (mostly in the streets): its usual accuracy
        ref_n += 1
        ref_la += (la - ref_la) / min(ref_n, params.indoor_ref_fixes)
    w = 1.0 / _sigma(fix.accuracy_m, params) ** 2
    fresh = Stay(
        fix.recorded_at,
        fix.lon,
        fix.lat,
        1,
        w,
        0.0,
        0.0,
        0.0,
        ref_la=ref_la,
        ref_n=ref_n,
        sum_la=la,
    )
    if stay is None:
        return fresh
    x, y = stay.xy(fix.lon, fix.lat)
    mx, my = stay.mean_xy
    radius = max(params.stay_radius_m, 2.0 * fix.accuracy_m)
    away = math.hypot(x - mx, y - my)
    if away > radius:
        # away from the stay: once is an outlier; twice in a row a move, if the two agree (close
        # together, or the second farther out the same way), unless the phone reported it was
        # still at both (its Doppler speed does not jump with a multipath fix: a phone that says
        # 0 m/s while its fixes land 40 m off has not gone anywhere), once the stay has been
        # lasted `still_hold_after_s`; three that agree are a move whatever the phone says;
        # fixes that disagree are outliers; two in a row farther than any outlier and within a
        # walk of the stay since its last fix (after a gap), a move
        since_last = (fix.recorded_at - stay.since).total_seconds() - stay.joined_s
        far = (
            params.stay_outlier_max_sigmas * _sigma(fix.accuracy_m, params)
            < away
            <= radius + params.stay_walk_max_mps * since_last
        )
        both_far = far and stay.out_far
        if stay.out >= 1 and (both_far or _same_move(stay, mx, my, x, y, radius)):
            if (
                both_far
                or stay.out >= 2
                or (fix.recorded_at - stay.since).total_seconds() < params.still_hold_after_s
                or not (stay.out_still and _still(fix, params))
            ):
                return fresh
            return stay._replace(out=2, out_x=x, out_y=y, out_far=far, ref_la=ref_la, ref_n=ref_n)
        return stay._replace(
            out=1,
            out_x=x,
            out_y=y,
            out_still=_still(fix, params),
            out_far=far,
            ref_la=ref_la,
            ref_n=ref_n,
        )
    joined = stay._replace(
        joined_s=(fix.recorded_at - stay.since).total_seconds(),
        moving_run=stay.moving_run + 1 if moving else 0,
        moved_n=stay.n + 1 if moving else stay.moved_n,
        ref_la=ref_la,
        ref_n=ref_n,
        sum_la=stay.sum_la + la,
        n=stay.n + 1,
        sum_w=stay.sum_w + w,
        sum_x=stay.sum_x + w * x,
        sum_y=stay.sum_y + w * y,
        sum_r2=stay.sum_r2 + w * (x * x + y * y),
        out=0,
    )
    walked = (
        params.stay_rebase_moving_fixes and joined.moving_run >= params.stay_rebase_moving_fixes
    )
    if walked or (
        params.stay_move_sigmas > 0
        and joined.anchor is not None
        and joined.n - joined.base[0] >= params.stay_first_anchor
        and joined.base[0] > joined.n0
        and _moved_from_anchor(joined, params)
    ):
        # someone walking, still within the stay's radius (its mean trails them), or fixes
        # since the last measure that sit elsewhere (a walk the phone did not report): where
        # they were so far says nothing about where they stop next, so the next measure is of
        # the fixes from here on (those since the measure may still hold the walk), the first
        # once there are `stay_first_anchor` of them
        sums = (joined.n, joined.sum_w, joined.sum_x, joined.sum_y, joined.sum_r2)
        return joined._replace(
            n0=joined.n, base=sums, prior=sums, base_la=joined.sum_la, prior_la=joined.sum_la
        )
    k = joined.n - joined.n0
    k_anchor = max(0, stay.anchor_n - joined.n0)
    if (
        k >= params.stay_first_anchor
        and k >= math.ceil(params.stay_anchor_growth * k_anchor)
        # a phone that reports it is moving is not staying: its mean could not enter anyway
        # (and measuring it costs a statement); measured at the first fix that is still
        and not moving
    ):
        # a milestone (6, 9, 14, 21, ... fixes): measure the mean of the fixes since the one
        # before the last (the first few of a stay are often still the walk in) and use it
        # from here on, if they are spread as a phone's that stays put (about sqrt(2) sigma
        # around it); a wider spread is someone moving slowly: start again from this fix
        n, mx, my, spread, expected, sigma = _window_mean(
            joined, params.stay_window_back, fix.recorded_at, params
        )
        if spread > 1.5 * expected + params.stay_drift_m:
            return fresh
        lon, lat = joined.lonlat(mx, my)
        contrast, indoor = _indoor(joined, n, params)
        joined = joined._replace(
            anchor_lon=lon,
            anchor_lat=lat,
            anchor_n=joined.n,
            anchor_sigma_m=sigma,
            anchor_indoor=indoor,
            anchor_contrast=contrast,
            anchor_from_n=(joined.base if params.stay_window_back == 1 else joined.prior)[0],
            base=(joined.n, joined.sum_w, joined.sum_x, joined.sum_y, joined.sum_r2),
            prior=joined.base,
            base_la=joined.sum_la,
            prior_la=joined.base_la,
        )
    return joined


def _window_mean(
    stay: Stay, back: int, at: datetime, params: Params
) -> tuple[int, float, float, float, float, float]:
    """(n, mean x, mean y, spread, expected spread, sigma of the mean) of the fixes since the
    milestone `back` (1: the last): how a measure sees them."""
    n, sw, sx, sy, sr2 = stay.window(back)
    mx, my = sx / sw, sy / sw
    spread = math.sqrt(max(0.0, sr2 / sw - mx * mx - my * my))
    expected = math.sqrt(2.0 * n / sw)
    # the mean's uncertainty: the fixes' own (from their accuracy or, if wider, from how they
    # spread), the drift they share (it averages out over its correlation time only), and
    # what never averages out (a bias of the place's signal)
    own = max(spread, params.stay_spread_floor * expected) / math.sqrt(2.0 * n)
    seconds = max(1.0, (at - stay.since).total_seconds())
    drift = params.stay_drift_m * math.sqrt(min(1.0, params.stay_drift_tau_s / seconds))
    sigma = math.sqrt(own * own + drift * drift + params.stay_floor_m**2)
    return n, mx, my, spread, expected, sigma


def _moved_from_anchor(stay: Stay, params: Params) -> bool:
    """The fixes since the last measure lie `stay_move_sigmas` from the measured mean."""
    anchor = stay.anchor
    assert anchor is not None
    # (`at` = the stay's start: the drift the fixes share counted whole, as over a short time)
    n, mx, my, spread, expected, sigma = _window_mean(stay, 1, stay.since, params)
    if spread > 1.5 * expected + params.stay_drift_m:
        return False  # spread as someone moving: the next measure starts again anyway
    ax, ay = stay.xy(*anchor)
    both = math.hypot(sigma, stay.anchor_sigma_m)
    return math.hypot(mx - ax, my - ay) >= params.stay_move_sigmas * both


def _indoor(stay: Stay, n: int, params: Params) -> tuple[float, float]:
    """(contrast, evidence): how much worse the accuracy figures of the `n` fixes of the
    stay's measured window are than the phone's own while moving (the mean of their
    logarithms), and the evidence that gives for being indoors (0 without enough fixes on the
    move to compare with)."""
    back = stay.prior_la if params.stay_window_back == 2 else stay.base_la
    if stay.ref_n < params.indoor_min_ref_fixes or n <= 0:
        return 0.0, 0.0
    contrast = (stay.sum_la - back) / n - stay.ref_la
    ref = min(stay.ref_n, params.indoor_ref_fixes)
    z = contrast / (params.accuracy_log_spread * math.sqrt(1.0 / n + 1.0 / ref))
    share = min(1.0, max(0.0, (z - params.indoor_z0) / (params.indoor_z1 - params.indoor_z0)))
    return round(contrast, 3), round(params.indoor_gain * share, 3)


def _moved_next_door(
    st: State,
    stay: Stay | None,
    anchor: Candidate | None,
    neighbour_m: float,
    params: Params,
) -> bool:
    """The stay's mean, measured on the fixes since a move (a walk within the stay, or a stay
    begun after this place was entered), is out of this place and inside another, each by
    `stay_next_door_evidence`."""
    if stay is None or anchor is None or params.stay_next_door_evidence <= 0:
        return False
    if not (stay.anchor_n > stay.n0 and (stay.n0 > 0 or stay.since > st.since)):
        return False
    need = params.stay_next_door_evidence
    return (
        _outside_evidence(stay, anchor, params) >= need
        and stay_gain(neighbour_m, stay.anchor_sigma_m, params) >= need
    )


def _outside_evidence(stay: Stay, anchor: Candidate, params: Params) -> float:
    """The evidence the stay's measured mean gives for being outside the place (negative
    inside): `stay_gain` of its distance out."""
    return stay_gain(-anchor.signed_m, stay.anchor_sigma_m, params)


def _still(fix: Fix, params: Params) -> bool:
    """The phone reports (by its Doppler speed) that it is not moving."""
    return fix.speed_mps is not None and fix.speed_mps < params.still_max_speed_mps


def _same_move(stay: Stay, mx: float, my: float, x: float, y: float, radius: float) -> bool:
    ox, oy = stay.out_x, stay.out_y
    if math.hypot(x - ox, y - oy) <= radius:
        return True
    ax, ay, bx, by = ox - mx, oy - my, x - ox, y - oy  # stay -> first away, first -> second
    ra, rb = math.hypot(ax, ay), math.hypot(bx, by)
    return (ax * bx + ay * by) >= 0.5 * ra * rb and math.hypot(x - mx, y - my) > ra


def stay_anchors(
    fixes: list[Fix], stay: Stay | None, last: LastFix | None, params: Params
) -> list[tuple[float, float]]:
    """The stay means this batch will measure that the stored stay does not already have."""
    out: list[tuple[float, float]] = []
    known = stay.anchor if stay is not None else None
    for fix in sorted(fixes, key=sort_key):
        if not fix.triggers or (last is not None and fix.recorded_at < last.recorded_at):
            continue
        before, stay = stay, next_stay(stay, fix, params)
        fix.stay_memo = (before, params, stay)
        if stay.anchor is not None and stay.anchor != known and stay.anchor not in out:
            out.append(stay.anchor)
    return out


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
    depth_m: float = math.inf  # how deep the middle of the part inside lies


@dataclass
class State:
    """A subject's presence at one place, with what is pending (kept between batches).

    `state` outside: a row only while enter evidence is pending. `evidence` is the enter
    evidence when not inside, and while inside the last fix's distance out in its own exit
    margins (while an exit is pending); `pending_fixes` the fixes behind the pending enter
    (not inside) or the consecutive fixes beyond the exit margin (inside), the first of them at
    `pending_since`.
    """

    geofence_id: uuid.UUID
    state: PresenceState
    since: datetime
    last_fix_at: datetime
    dwell_emitted: bool
    trigger_distance_m: float
    dwell_s: int
    evidence: float = 0.0
    pending_fixes: int = 0
    pending_since: datetime | None = None


def _next_fix(
    st: State,
    t: datetime,
    trigger: float,
    dwell_s: int,
    evidence: float,
    pending_fixes: int,
    pending_since: datetime | None,
) -> State:
    """`st` after a fix that leaves its state as it was (what `dataclasses.replace` would make,
    without its introspection at each of the engine's commonest steps)."""
    return State(
        geofence_id=st.geofence_id,
        state=st.state,
        since=st.since,
        last_fix_at=t,
        dwell_emitted=st.dwell_emitted,
        trigger_distance_m=trigger,
        dwell_s=dwell_s,
        evidence=evidence,
        pending_fixes=pending_fixes,
        pending_since=pending_since,
    )


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
    stay: Stay | None = None


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
            jump = implausible_jump(
                prev, fix.lon, fix.lat, fix.accuracy_m, fix.recorded_at, params.max_speed_mps
            )
            if jump is not None:
                fix.quality = PingQuality.implausible_jump
                fix.jump = {
                    "distance_m": round(jump.distance_m, 1),
                    "seconds": jump.seconds,
                    "implied_speed_mps": jump.reported_speed_mps,
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
    if c is not None and beyond is not None and c.signed_m > beyond:
        # a place the subject was in is measured at any distance only when its presence was
        # stored before the batch: farther than the window reads the same from every batching
        c = None
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


SIGMA_PER_ACCURACY = 1 / 1.51  # a 2-D Gaussian's 68 % radius (phones' accuracy) is 1.51 sigma


def inside_probability(signed_m: float, accuracy_m: float, params: Params) -> float:
    """P(truly inside) for a fix `signed_m` from the boundary: the accuracy circle as a 2-D
    Gaussian, the boundary near the fix as a straight line."""
    sigma = _sigma(accuracy_m, params)
    return 0.5 * math.erfc(signed_m / (sigma * math.sqrt(2.0)))


def stay_gain(signed_m: float, sigma_m: float, params: Params) -> float:
    """`evidence_gain` for a stay's mean position, of uncertainty `sigma_m` (not capped)."""
    return 2.0 * params.evidence_delta_m * -signed_m / (sigma_m * sigma_m)


def evidence_gain(signed_m: float, accuracy_m: float, params: Params) -> float:
    """Log-likelihood ratio of one fix for "inside by `evidence_delta_m`" against "outside by as
    much", the fix's error a Gaussian of the accuracy's sigma: linear in the fix's depth, so
    the sum over fixes weighs their mean position; capped so one fix (an outlier) never decides.
    """
    var = _sigma(accuracy_m, params) ** 2 + params.evidence_shared_m**2
    gain = 2.0 * params.evidence_delta_m * -signed_m / var
    return max(-params.evidence_cap, min(params.evidence_cap, gain))


def _step(
    fix: Fix,
    gid: uuid.UUID,
    c: Candidate | None,
    st: State | None,
    params: Params,
    *,
    explain: bool = True,
    stay: Stay | None = None,
    anchor: Candidate | None = None,
    neighbour_m: float = math.inf,
    suspect: bool = False,
    was_active: bool = False,
) -> tuple[list[Transition], State | None]:
    """One fix against one place: the transitions and the new state (None = no row).

    `stay` and `anchor`: the subject's stay, long enough to count, and its mean's distance to
    this place (an enter on the mean of a stay's fixes); `neighbour_m`: how far the mean is
    from the nearest other place (the stay's indoor evidence counts only against being
    outside, not against being next door). `suspect`: the fix is farther from
    the previous one than anyone crosses a town in the time (a hop): it neither adds to nor
    takes from the evidence for an enter. `was_active`: whether the place was active at the
    last fix of the batch that measured it, for a fix that did not (`c` is None: beyond the
    place's reach, and its presence began within the batch).

    `explain=False` leaves the transitions' explanations empty (only their types are needed).
    """
    if st is None and anchor is None and (c is None or c.signed_m > c.trigger_distance_m):
        # most places a fix is measured against: nothing there, and outside the trigger zone
        # (the evidence would only go down from 0): nothing changes
        return [], None
    margin = fix.margin(params)
    acc = fix.accuracy_m or 0.0
    s = c.signed_m if c is not None else math.inf
    t = fix.recorded_at
    out: list[Transition] = []
    cur = st.state if st is not None else PresenceState.outside
    trigger = c.trigger_distance_m if c is not None else (st.trigger_distance_m if st else 0.0)
    dwell_s = c.dwell_s if c is not None else (st.dwell_s if st else 0)
    # a place not measured at this fix is beyond its window: as active as when last measured
    # (a place present before the batch is measured at every fix, at any distance, so a
    # presence that began within the batch must read as it would in a batch of its own)
    active = c.active if c is not None else was_active

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
                        rule="dwell_time",
                        inside_since=state.since.isoformat(),
                        stayed_s=stayed,
                        dwell_s=state.dwell_s,
                    ),
                )
            )

    if cur is PresenceState.inside:
        assert st is not None

        def left(reason: str, **detail: Any) -> tuple[list[Transition], State | None]:
            """An exit on this fix: nearby if still within the trigger zone and margin."""
            why = _explain_if(
                explain,
                fix,
                c,
                margin,
                reason,
                **detail,
                inside_since=st.since.isoformat(),
                beyond_m=trigger + window_m(fix, params),
            )
            out.append(Transition(EventType.exit, gid, fix, why))
            if s <= trigger + margin:
                return out, State(gid, PresenceState.nearby, t, t, False, trigger, dwell_s)
            return out, None

        # a fix that joined a stay whose mean is inside this place is someone still there,
        # however far it reads (a poor fix indoors): leaving means leaving the stay, and a fix
        # away from it while it lasts (an outlier, or the first step of a move) never exits
        # (a mean inside, or outside by less than the stay's evidence: a poor phone indoors
        # whose mean came out a metre beyond the wall)
        staying = (
            stay is not None
            and stay.n > 1
            and anchor is not None
            and _outside_evidence(stay, anchor, params) < params.stay_outside_evidence
        )
        joined = staying and stay is not None and stay.out == 0
        if _moved_next_door(st, stay, anchor, neighbour_m, params):
            assert stay is not None
            assert anchor is not None
            return left(
                "walked into the place next door: the mean of the fixes since is"
                " out of this place and inside the other",
                rule="moved_next_door",
                stay_fixes=stay.anchor_n - stay.n0,
                stay_distance_m=round(anchor.signed_m, 1),
                next_door_depth_m=round(-neighbour_m, 1),
                stay_sigma_m=round(stay.anchor_sigma_m, 1),
                next_door_evidence=params.stay_next_door_evidence,
            )
        if s >= margin / 2 and not joined:
            # out by half the margin or more: an exit needs this fix and the one before it out
            # (one outlier never exits): both beyond the margin, or the earlier one beyond
            # 0.6 of it and this one beyond one and a half margins (walking away)
            # the fix before, out by this many of its own exit margins
            prev_out = st.evidence if st.pending_fixes else None
            first = st.pending_since or t
            if (
                not staying
                and prev_out is not None
                and s >= margin
                and (
                    prev_out >= 1.0
                    or (s >= 1.5 * margin and prev_out >= params.exit_walk_prev_margins)
                )
            ):
                return left(
                    "two fixes in a row out of the place beyond the exit margin",
                    rule="exit_confirmed",
                    previous_fix_out_margins=round(prev_out, 2),
                    first_out_at=first.isoformat(),
                )
            # maybe an outlier: the next fix decides (no dwell on the way out)
            # farther out is all the same to the rules: the evidence stops at 1.5
            return out, _next_fix(st, t, trigger, dwell_s, min(s / margin, 1.5), 1, first)
        new = _next_fix(st, t, trigger, dwell_s, 0.0, 0, None)
        if active:
            dwell(new)
        return out, new

    # outside or nearby: gather the evidence for an enter
    evidence = st.evidence if st is not None else 0.0
    count = st.pending_fixes if st is not None else 0
    first_at = st.pending_since if st is not None else None
    if active or (anchor is not None and anchor.active):
        if c is None or s > trigger + window_m(fix, params):
            gain = -params.evidence_cap  # beyond the window (`window_m`): not there
        else:
            gain = evidence_gain(s, acc, params) - params.evidence_drag
        if acc > params.enter_max_accuracy_m or not active:
            gain = min(gain, 0.0)  # too inaccurate to count towards an enter
        if suspect:
            gain = 0.0
        if (
            params.stay_outside_evidence > 0
            and stay is not None
            and anchor is not None
            and stay.out == 0  # the fix joined the stay
            # ... and no fix of the mean measured, nor since, reported walking
            and stay.moved_n <= stay.anchor_from_n
            # the phone says it is not moving (without a speed, a run of fixes that reads
            # inside may be a walk in: `_moved_from_anchor` needs six fixes to tell)
            and fix.speed_mps is not None
            and fix.speed_mps < params.stay_max_speed_mps
            and _outside_evidence(stay, anchor, params) >= params.stay_outside_evidence
        ):
            # someone who stays put where the mean of their fixes is confidently outside: a
            # run of fixes reading inside is their noise, not a walk in
            gain = min(gain, 0.0)
        if gain > 0:
            if evidence <= 0:
                count, first_at = 0, t
            evidence += gain
            count += 1
        else:
            evidence = max(0.0, evidence + gain)
            if evidence == 0.0:
                count, first_at = 0, None
        why: str | None = None
        detail: dict[str, Any] = {}
        since = first_at
        if active and evidence >= params.enter_evidence and count >= params.enter_min_fixes:
            why = f"inside with confidence: evidence from {count} fixes reached the threshold"
            detail = {
                "rule": "enter_confirmed",
                "p_inside": round(inside_probability(s, acc, params), 3),
                "evidence": round(evidence, 2),
                "fixes": count,
                "first_fix_at": first_at.isoformat() if first_at else None,
                "enter_evidence": params.enter_evidence,
            }
        elif (
            stay is not None
            and anchor is not None
            and anchor.active
            and anchor.signed_m < 0
            and s < params.stay_enter_max_out * margin  # not a fix on its way out
            # nor of someone walking (out of the door): a phone that stays put reports ~0 m/s
            and (fix.speed_mps is None or fix.speed_mps < params.stay_max_speed_mps)
        ):
            gain_stay = stay_gain(anchor.signed_m, stay.anchor_sigma_m, params)
            # that the phone went indoors says nothing about which of two buildings next to
            # each other: only where this place's own walls are nearer the mean than any other
            # place, by `indoor_neighbour_sigmas` of the mean's uncertainty
            indoor = (
                stay.anchor_indoor
                if neighbour_m + anchor.signed_m
                > params.indoor_neighbour_sigmas * stay.anchor_sigma_m
                else 0.0
            )
            gain_stay += indoor
            if gain_stay >= params.stay_enter_evidence:
                why = (
                    f"stayed {round((t - stay.since).total_seconds())} s; the mean of"
                    f" {stay.anchor_n} fixes is inside"
                )
                since = stay.since
                detail = {
                    "rule": "stayed_inside",
                    "stay_since": stay.since.isoformat(),
                    "stay_fixes": stay.anchor_n,
                    "stay_depth_m": round(-anchor.signed_m, 1),
                    "stay_sigma_m": round(stay.anchor_sigma_m, 1),
                    "evidence": round(gain_stay, 2),
                    "indoor_evidence": indoor,
                    "accuracy_contrast": stay.anchor_contrast,
                    "enter_evidence": params.stay_enter_evidence,
                }
        if why is not None:
            assert since is not None
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
                        why,
                        **detail,
                        enter_max_accuracy_m=params.enter_max_accuracy_m,
                    ),
                )
            )
            # the visit started with the first fix that pointed inside (or the stay's first)
            new = State(gid, PresenceState.inside, since, t, False, trigger, dwell_s)
            dwell(new)
            return out, new
    else:
        evidence, count, first_at = 0.0, 0, None
    if cur is PresenceState.nearby:
        assert st is not None
        # a hop (`suspect`) says nothing of where the subject is: it neither leaves nearby ...
        if s > trigger + margin and not suspect:
            if evidence > 0:
                return out, State(
                    gid,
                    PresenceState.outside,
                    t,
                    t,
                    False,
                    trigger,
                    dwell_s,
                    evidence,
                    count,
                    first_at,
                )
            return out, None
        return out, _next_fix(st, t, trigger, dwell_s, evidence, count, first_at)
    # outside
    # ... nor arrives there
    if active and s <= trigger and not suspect:
        why = (
            "fix inside the place, not yet confident; within the trigger distance"
            if s <= 0
            else "fix within the place's trigger distance"
        )
        out.append(
            Transition(
                EventType.nearby,
                gid,
                fix,
                _explain_if(explain, fix, c, margin, why, rule="within_trigger_distance"),
            )
        )
        return out, State(
            gid, PresenceState.nearby, t, t, False, trigger, dwell_s, evidence, count, first_at
        )
    if evidence > 0:
        since = st.since if st is not None else t
        return out, State(
            gid,
            PresenceState.outside,
            since,
            t,
            False,
            trigger,
            dwell_s,
            evidence,
            count,
            first_at,
        )
    return out, None


def _changed(before: State, after: State) -> bool:
    """Does `after` differ from `before` in what a presence row stores, its fix time apart?"""
    return (
        after.state is not before.state
        or after.evidence != before.evidence
        or after.pending_fixes != before.pending_fixes
        or after.pending_since != before.pending_since
        or after.since != before.since
        or after.dwell_emitted != before.dwell_emitted
    )


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
    stay: Stay | None = None,
    anchors: dict[tuple[float, float], list[Candidate]] | None = None,
) -> Outcome:
    """Walk the fixes in fix-time order; only triggering fixes change presence.

    `stay`: the subject's stay before the batch; `anchors`: the places near each stay mean
    (`stay_anchors`), the stored stay's included.

    A non-triggering fix (late, implausible jump) that *would* have caused a transition
    against the current presence is reported as a suppressed candidate, at most once per
    (place, type, reason) per batch.
    """
    outcome = Outcome(states=dict(states), last_fix=last, stay=stay)
    anchors = anchors or {}
    seen_suppressed: set[tuple[uuid.UUID, EventType, str]] = set()
    # whether each place was active at the last fix that measured it (`_step`'s `was_active`)
    was_active: dict[uuid.UUID, bool] = {}
    for fix in sorted(fixes, key=sort_key):
        if fix.quality in (PingQuality.unusable_accuracy, PingQuality.low_accuracy):
            continue  # never resolved: nothing to evaluate or explain beyond its quality
        cands = {c.geofence_id: c for c in candidates.get(fix.idx, [])}
        was_active.update((gid, m.active) for gid, m in cands.items())
        # every place measured or present; their events are put in order below
        gids = cands.keys() | outcome.states.keys()
        if not fix.triggers:
            reason = _suppression(fix)
            for gid in sorted(gids, key=str):  # suppressed candidates in place order
                c, st = cands.get(gid), outcome.states.get(gid)
                # types first: a replayed buffer repeats the same would-be transitions fix
                # after fix, and each is reported once, so most need no explanation
                active = was_active.get(gid, False)
                trans, _ = _step(fix, gid, c, st, params, explain=False, was_active=active)
                if all((gid, tr.type, reason) in seen_suppressed for tr in trans):
                    continue
                trans, _ = _step(fix, gid, c, st, params, was_active=active)
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
            seconds = (fix.recorded_at - prev.recorded_at).total_seconds()
            speed = haversine_m(prev.lon, prev.lat, fix.lon, fix.lat) / seconds
            if (
                cr.active
                and (st is None or st.state is not PresenceState.inside)
                and cr.from_distance_m > prev.accuracy_m
                and cr.to_distance_m > fix.accuracy_m
                # a 600 m hop in 10 s is a glitch, not someone crossing the park
                and speed <= params.pass_through_max_speed_mps
                # a turn between the fixes makes the line cut a corner: a shallow crossing
                and cr.depth_m >= params.pass_through_min_depth_m
                and (
                    fix.speed_mps is None
                    or params.pass_through_min_speed_share * fix.speed_mps
                    <= speed
                    <= fix.speed_mps / params.pass_through_min_speed_share + 2.0
                )
                and cr.depth_m >= params.pass_through_bow_share * _bow_m(fix, seconds, speed)
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
                            "seconds_between": seconds,
                            "max_gap_s": params.pass_through_max_gap_s,
                            "speed_mps": round(speed, 1),
                            "depth_m": round(cr.depth_m, 1),
                            "reported_speed_mps": fix.speed_mps,
                            "min_depth_m": params.pass_through_min_depth_m,
                            "bow_m": round(_bow_m(fix, seconds, speed), 1),
                            "max_speed_mps": params.pass_through_max_speed_mps,
                            "rule": "crossing_at_plausible_speed",
                            "fix_id": fix.client_id,
                            "recorded_at": fix.recorded_at.isoformat(),
                        },
                    )
                )
        prev_fix = outcome.last_fix
        suspect = False
        if prev_fix is not None:
            # the jump check's implied speed (after both accuracies), against the crossing limit
            suspect = (
                implausible_jump(
                    prev_fix,
                    fix.lon,
                    fix.lat,
                    fix.accuracy_m or 0.0,
                    fix.recorded_at,
                    params.pass_through_max_speed_mps,
                )
                is not None
            )
        memo = fix.stay_memo
        if memo is not None and memo[0] is outcome.stay and memo[1] is params:
            outcome.stay = cur_stay = memo[2]  # `stay_anchors` computed it (the same inputs)
        else:
            outcome.stay = cur_stay = next_stay(outcome.stay, fix, params)
        near_anchor: dict[uuid.UUID, Candidate] = {}
        if (
            cur_stay.anchor is not None
            and (fix.recorded_at - cur_stay.since).total_seconds() >= params.stay_min_s
        ):
            near_anchor = {a.geofence_id: a for a in anchors.get(cur_stay.anchor, [])}
            gids = gids | near_anchor.keys()
            for a in near_anchor.values():
                if a.geofence_id not in cands:
                    was_active[a.geofence_id] = a.active
        # each place's nearest other place at the stay's mean: the two nearest give them all
        nearest_two = heapq.nsmallest(2, near_anchor.values(), key=lambda a: a.signed_m)
        produced: list[Transition] = []
        for gid in gids:
            before = outcome.states.get(gid)
            trans, after = _step(
                fix,
                gid,
                cands.get(gid),
                before,
                params,
                stay=cur_stay,
                anchor=near_anchor.get(gid),
                neighbour_m=next(
                    (a.signed_m for a in nearest_two if a.geofence_id != gid), math.inf
                ),
                suspect=suspect,
                was_active=was_active.get(gid, False),
            )
            produced.extend(trans)
            if after is None:
                if before is not None:
                    del outcome.states[gid]
                    outcome.removed.add(gid)
                    outcome.changed.discard(gid)
            else:
                outcome.states[gid] = after
                # a row whose fix changed nothing but its time is not written again: every
                # place a subject has a row for is measured at each of its fixes, so that time
                # is the subject's own last fix (presence_subjects.last_fix_at)
                if before is None or _changed(before, after):
                    outcome.changed.add(gid)
                    outcome.removed.discard(gid)
        # one fix, several places: leaving comes before arriving, whatever the place ids
        produced.sort(key=lambda tr: (TYPE_ORDER[tr.type], str(tr.geofence_id)))
        outcome.transitions.extend(produced)
        assert fix.accuracy_m is not None
        outcome.last_fix = LastFix(fix.recorded_at, fix.lon, fix.lat, fix.accuracy_m)
    return outcome
