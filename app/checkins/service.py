"""Check-in rules: resolve the place, verify plausibility, record, and say what is here for me.

Resolution (see docs/checkins.md):
- reach of a place = min(trigger_distance_m + accuracy_m, checkin_max_reach_m); a person is
  plausibly at a place when inside it or within its reach;
- with `geofence_id` that place must be within reach, else 422 `too-far` with the figures;
- without it: the one place the point is inside; among nested places (a library inside a park) the
  smallest when it is at most half the area of the next; else the nearest within reach; when two
  candidates are equally plausible (both inside and of similar size, or distances within
  max(5 m, accuracy/2)) → 409 with the candidates so the app can ask.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.accounts.principal import Principal
from app.checkins import repository
from app.checkins.errors import (
    AccuracyTooPoor,
    AmbiguousPlace,
    BadFixTime,
    CheckInNotFound,
    NoPlaceHere,
    PlaceNotFound,
    TooFar,
)
from app.checkins.models import CheckIn
from app.checkins.repository import Candidate, CheckInRow, Context, Place
from app.checkins.schemas import CheckInCreate
from app.core.config import Settings
from app.core.motion import implausible_jump
from app.core.pagination import PageParams, trim_page
from app.events import service as events_service
from app.events.types import Event
from app.geofences.models import Geofence
from app.geofences.opening_hours import is_open
from app.offers import service as offers_service
from app.offers.models import Offer
from app.presence import service as presence_service
from app.presence.models import EventSource, EventType
from app.shifts import service as shifts_service
from app.tasks import service as tasks_service
from app.tasks.models import Task


@dataclass
class CheckInOutcome:
    checkin: CheckInRow
    place: Candidate
    repeated: bool
    offers: list[Offer] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    proof_of_visit_for: list[uuid.UUID] = field(default_factory=list)
    notifications_queued: list[dict[str, Any]] = field(default_factory=list)


def reach_m(settings: Settings, place: Place, accuracy_m: float) -> float:
    return min(place.trigger_distance_m + accuracy_m, settings.checkin_max_reach_m)


def _candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "id": str(c.geofence.id),
        "name": c.geofence.name,
        "category": c.geofence.category,
        "distance_m": round(c.distance_m, 1),
        "inside": c.inside,
    }


def choose_place(plausible: list[Candidate], accuracy_m: float) -> Candidate:
    inside = sorted((c for c in plausible if c.inside), key=lambda c: c.area_m2)
    if len(inside) == 1:
        return inside[0]
    if len(inside) > 1:
        if inside[0].area_m2 <= 0.5 * inside[1].area_m2:
            return inside[0]
        raise AmbiguousPlace(
            "You are inside several places; say which one with geofence_id.",
            extra={"candidates": [_candidate_json(c) for c in inside]},
        )
    near = sorted(plausible, key=lambda c: c.distance_m)
    if len(near) > 1 and near[1].distance_m - near[0].distance_m < max(5.0, accuracy_m / 2):
        tied = [c for c in near if c.distance_m - near[0].distance_m < max(5.0, accuracy_m / 2)]
        raise AmbiguousPlace(
            "Several places are equally near; say which one with geofence_id.",
            extra={"candidates": [_candidate_json(c) for c in tied]},
        )
    return near[0]


def _resolve(settings: Settings, body: CheckInCreate, cands: list[Candidate]) -> Candidate:
    """The place of the check-in among the context's candidates (named: at most one)."""
    if body.geofence_id is not None:
        if not cands:
            raise PlaceNotFound()
        cand = cands[0]
        reach = reach_m(settings, cand.geofence, body.accuracy_m)
        if not cand.inside and cand.distance_m > reach:
            raise TooFar(
                f"You are {cand.distance_m:.0f} m from {cand.geofence.name}; a check-in there "
                f"needs to be within {reach:.0f} m.",
                extra={
                    "distance_m": round(cand.distance_m, 1),
                    "reach_m": round(reach, 1),
                    "accuracy_m": body.accuracy_m,
                },
            )
        return cand
    plausible = [
        c
        for c in cands
        if c.inside or c.distance_m <= reach_m(settings, c.geofence, body.accuracy_m)
    ]
    if not plausible:
        extra: dict[str, Any] = {"accuracy_m": body.accuracy_m}
        if cands:
            extra["nearest"] = _candidate_json(cands[0])
            extra["reach_m"] = round(reach_m(settings, cands[0].geofence, body.accuracy_m), 1)
        raise NoPlaceHere(
            "There is no place to check in to within reach of this position.", extra=extra
        )
    return choose_place(plausible, body.accuracy_m)


def _validate_fix(settings: Settings, body: CheckInCreate, now: datetime) -> datetime:
    at = body.recorded_at.astimezone(UTC) if body.recorded_at else now
    if at > now + timedelta(seconds=settings.max_future_skew_s):
        raise BadFixTime("recorded_at is in the future.", extra={"field": "recorded_at"})
    if at < now - timedelta(seconds=settings.checkin_max_age_s):
        raise BadFixTime(
            f"recorded_at is older than {settings.checkin_max_age_s} s; check in again.",
            extra={"field": "recorded_at"},
        )
    if body.accuracy_m > settings.checkin_max_accuracy_m:
        raise AccuracyTooPoor(
            f"Accuracy {body.accuracy_m:.0f} m is worse than the "
            f"{settings.checkin_max_accuracy_m:.0f} m needed to check in; wait for a better fix.",
            extra={
                "accuracy_m": body.accuracy_m,
                "max_accuracy_m": settings.checkin_max_accuracy_m,
            },
        )
    return at


@dataclass(frozen=True)
class PreviousFix:
    """The person's previous position: their last check-in or their last good ping."""

    source: str
    ref: str | None
    lon: float
    lat: float
    accuracy_m: float
    recorded_at: datetime


def jump_check(
    settings: Settings,
    prev: PreviousFix | None,
    lon: float,
    lat: float,
    accuracy_m: float,
    at: datetime,
) -> dict[str, Any] | None:
    """The implausible-jump figures from the previous fix (`app.core.motion`), or None."""
    if prev is None:
        return None
    jump = implausible_jump(prev, lon, lat, accuracy_m, at, settings.implausible_speed_mps)
    if jump is None:
        return None
    return {
        "previous": prev.source,
        "previous_ref": prev.ref,
        "previous_recorded_at": prev.recorded_at.isoformat(),
        "distance_m": round(jump.distance_m, 1),
        "seconds": round(jump.seconds, 1),
        "implied_speed_mps": jump.reported_speed_mps,
        "max_speed_mps": settings.implausible_speed_mps,
    }


def previous_fix(ctx: Context, before: datetime) -> PreviousFix | None:
    """The latest of the person's previous check-in and last good ping at or before `before`."""
    found: list[PreviousFix] = []
    prev = ctx.previous_checkin
    if prev is not None:
        found.append(
            PreviousFix(
                "checkin", str(prev.id), prev.lon, prev.lat, prev.accuracy_m, prev.recorded_at
            )
        )
    ping = ctx.last_ping
    if ping is not None and ping.recorded_at <= before:
        found.append(
            PreviousFix("ping", None, ping.lon, ping.lat, ping.accuracy_m, ping.recorded_at)
        )
    return max(found, key=lambda f: f.recorded_at, default=None)


async def check_in(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    body: CheckInCreate,
    now: datetime | None = None,
) -> CheckInOutcome:
    """Two statements when nothing else applies: the context read, then check-in + event.

    Offers, tasks and notification rules are asked only when they can answer something: a field
    worker (tasks), or a place with at least one active check-in offer listed for it or its
    category (`Candidate.has_offers`, a superset of what the offers query and the rules match).
    """
    now = now or datetime.now(UTC)
    at = _validate_fix(settings, body, now)
    # a field worker off shift or with tracking paused: 409 `off-shift`, nothing stored
    await shifts_service.ensure_may_check_in(session, settings, principal, now)
    lon, lat = round(body.lon, 6), round(body.lat, 6)
    org_id = principal.organisation_id
    ctx = await repository.context(
        session,
        organisation_id=org_id,
        subject_kind=principal.kind,
        subject_id=principal.id,
        lon=lon,
        lat=lat,
        at=at,
        geofence_id=body.geofence_id,
        max_reach_m=settings.checkin_max_reach_m,
        cooldown_since=at - timedelta(seconds=settings.checkin_cooldown_s),
    )
    place = _resolve(settings, body, ctx.places)
    device_id, staff_id = principal.device_id, principal.staff_user_id
    place_open = is_open(place.geofence.opening_hours, at)

    recent = ctx.recent.get(place.geofence.id)
    if recent is not None:
        outcome = CheckInOutcome(recent, place, repeated=True)
        await _fill_whats_here(
            session, principal, outcome, at, recent.place_open, rewarded=not recent.implausible_jump
        )
        return outcome

    prev = previous_fix(ctx, at)
    jump = jump_check(settings, prev, lon, lat, body.accuracy_m, at)
    explanation: dict[str, Any] = {
        "resolution": "named" if body.geofence_id else "nearest",
        "distance_m": round(place.distance_m, 2),
        "inside": place.inside,
        "reach_m": round(reach_m(settings, place.geofence, body.accuracy_m), 1),
        "accuracy_m": body.accuracy_m,
        "place_open": place_open,
        **({"implausible_jump": jump} if jump else {}),
    }
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "organisation_id": org_id,
        "device_id": device_id,
        "staff_user_id": staff_id,
        "geofence_id": place.geofence.id,
        "lon": lon,
        "lat": lat,
        "accuracy_m": body.accuracy_m,
        "recorded_at": at,
        "distance_m": round(place.distance_m, 2),
        "inside": place.inside,
        "place_open": place_open,
        "implausible_jump": jump is not None,
        "explanation": explanation,
    }
    event = presence_service.event_row(
        organisation_id=org_id,
        geofence_id=place.geofence.id,
        type=EventType.checkin,
        source=EventSource.checkin,
        occurred_at=at,
        device_id=device_id,
        staff_user_id=staff_id,
        checkin_id=row["id"],
        lon=lon,
        lat=lat,
        accuracy_m=body.accuracy_m,
        explanation=explanation,
    )
    rules_apply = place.has_offers or principal.role is Role.field_worker
    # whether a hook will write (decisions, outbox rows): then the insert opens the transaction
    more = rules_apply or ctx.webhooks
    created_at = await repository.add_with_event(session, row, event, more_to_come=more)
    checkin = CheckInRow(
        row["id"],
        place.geofence.id,
        device_id,
        staff_id,
        lon,
        lat,
        body.accuracy_m,
        at,
        row["distance_m"],
        place.inside,
        place_open,
        jump is not None,
        created_at,
    )
    outcome = CheckInOutcome(checkin, place, repeated=False)
    await _fill_whats_here(session, principal, outcome, at, place_open, rewarded=jump is None)
    hooked = await events_service.record(
        session,
        [
            Event.from_presence(
                event, rules=rules_apply, implausible=jump is not None, webhooks=ctx.webhooks
            )
        ],
        settings,
    )
    if rules_apply:
        outcome.notifications_queued = hooked.get("rules") or []
    return outcome


async def _fill_whats_here(
    session: AsyncSession,
    principal: Principal,
    outcome: CheckInOutcome,
    at: datetime,
    place_open: bool,
    *,
    rewarded: bool,
) -> None:
    place = outcome.place.geofence
    if principal.role is Role.field_worker:
        # proof first, so the task list read afterwards shows it
        if rewarded and not outcome.repeated:
            outcome.proof_of_visit_for = await tasks_service.record_visit(
                session,
                organisation_id=principal.organisation_id,
                worker_id=principal.id,
                geofence_id=place.id,
                checkin_id=outcome.checkin.id,
                at=at,
            )
        outcome.tasks = await tasks_service.tasks_for_checkin(
            session,
            organisation_id=principal.organisation_id,
            geofence_id=place.id,
            worker_id=principal.id,
        )
    if rewarded and outcome.place.has_offers:
        outcome.offers = await offers_service.offers_for_checkin(
            session,
            organisation_id=principal.organisation_id,
            # the offers service reads only the id and category of the place
            geofence=Geofence(id=place.id, name=place.name, category=place.category),
            at=at,
            audience="residents" if principal.kind == "device" else "staff",
            place_open=place_open,
        )


async def get_checkin(
    session: AsyncSession, principal: Principal, checkin_id: uuid.UUID
) -> CheckIn:
    checkin = await repository.get(session, principal.organisation_id, checkin_id)
    if checkin is None:
        raise CheckInNotFound()
    if checkin.owned_by(principal):
        return checkin
    # Someone else's: only a resident's check-in, and only to the organisation's editors and
    # admins. A staff member's check-in is where they were: their location history, which no
    # colleague or supervisor reads (docs/privacy.md, "Staff"); an admin gets it only through
    # the audited staff export.
    if checkin.staff_user_id is not None or principal.kind == "device":
        raise CheckInNotFound()
    if principal.role is Role.field_worker:
        raise CheckInNotFound()
    return checkin


async def list_own(
    session: AsyncSession, principal: Principal, page: PageParams
) -> tuple[list[CheckIn], str | None]:
    rows = await repository.list_for_subject(
        session,
        device_id=principal.device_id,
        staff_user_id=principal.staff_user_id,
        page=page,
    )
    return trim_page(rows, page)


@dataclass
class StatsRow:
    start: datetime
    residents_checkins: int | None
    residents_distinct: int | None
    staff_checkins: int | None
    staff_distinct: int | None


async def stats(
    session: AsyncSession,
    settings: Settings,
    organisation_id: uuid.UUID,
    geofence: Geofence,
    *,
    bucket: str,
    since: datetime,
    until: datetime,
    tz: str,
) -> list[StatsRow]:
    rows = await repository.stats(
        session, organisation_id, geofence.id, bucket=bucket, since=since, until=until, tz=tz
    )
    # Staff cells are suppressed like residents': with one field worker on shift, "1 staff
    # check-in here, 14:00-15:00" is where that worker was, and a worker's location is shown to
    # no one but themself (docs/privacy.md, "Staff members").
    small = settings.stats_min_cell_size
    out = []
    for start, r_n, r_people, s_n, s_people in rows:
        out.append(
            StatsRow(
                start=start,
                residents_checkins=None if r_people < small else r_n,
                residents_distinct=None if r_people < small else r_people,
                staff_checkins=None if s_people < small else s_n,
                staff_distinct=None if s_people < small else s_people,
            )
        )
    return out


async def count_regulars(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence: Geofence,
    *,
    days: int,
    min_checkins: int,
    now: datetime | None = None,
) -> int:
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    rows = await repository.regulars(
        session, organisation_id, geofence.id, since=since, min_checkins=min_checkins
    )
    return len(rows)
