"""Located only on shift: whether a field worker may be located, their ad-hoc shifts and pauses,
and what a supervisor may see (docs/tasks.md, "Shifts"; docs/privacy.md, "Staff").

A field worker may be located at time t when tracking is not paused at t, and either an ad-hoc
shift covers t or their shift window (`app.rules.windows.on_shift`, the same predicate that
decides task pushes) does. No shift window set means always on shift, for pushes and location
alike. Residents are never asked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.accounts.errors import UserNotFound
from app.accounts.models import Role
from app.accounts.principal import Principal
from app.audit import service as audit_service
from app.core.config import Settings
from app.core.pagination import PageParams, trim_page
from app.presence import service as presence_service
from app.presence.gate import StaffGate
from app.presence.models import SubjectKind
from app.rules import repository as rules_repository
from app.rules.windows import Prefs, effective_prefs, on_shift
from app.shifts import repository
from app.shifts.cache import HORIZON, PeriodRule, Rules, ShiftRulesCache
from app.shifts.errors import (
    AlreadyPaused,
    NoOpenShift,
    NotPaused,
    OffShift,
    ShiftAlreadyStarted,
    ShiftTooLong,
    WorkerNotFound,
)
from app.shifts.models import EndReason, PeriodKind, StaffPeriod

logger = logging.getLogger(__name__)

# pg advisory lock key of the job that ends ad-hoc shifts ("hbshift" in ASCII)
SWEEP_LOCK_KEY = 0x6862736869667400
# a supervisor sees a place only from a fix at most this old (the tasks' presence proof too)
CURRENT_PLACE_MAX_AGE = timedelta(minutes=15)
FOREVER = datetime.max.replace(tzinfo=UTC)
# only ad-hoc periods matter to `on_adhoc_shift` (the window is the rules' own business)
NEVER = Prefs("UTC", None, None, frozenset(), None)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# a stored period, or its cached copy (the gate's rules cache: app/shifts/cache.py)
PeriodLike = StaffPeriod | PeriodRule
P = TypeVar("P", StaffPeriod, PeriodRule)


def shift_end(p: PeriodLike) -> datetime:
    """When an ad-hoc shift ends (or ended): by the worker, or by itself at `ends_by`."""
    ends = [t for t in (p.ended_at, p.ends_by) if t is not None]
    return min(ends) if ends else FOREVER


def _covers(p: PeriodLike, t: datetime) -> bool:
    end = shift_end(p) if p.kind == PeriodKind.shift.value else (p.ended_at or FOREVER)
    return p.started_at <= t < end


@dataclass(frozen=True)
class Tracking(Generic[P]):
    """Everything that decides whether a worker may be located, loaded once."""

    prefs: Prefs
    periods: Sequence[P]

    def paused_at(self, t: datetime) -> bool:
        return any(p.kind == PeriodKind.pause.value and _covers(p, t) for p in self.periods)

    def adhoc_at(self, t: datetime) -> P | None:
        found = [p for p in self.periods if p.kind == PeriodKind.shift.value and _covers(p, t)]
        return found[0] if found else None

    def allowed_at(self, t: datetime) -> bool:
        t = _aware(t)
        return not self.paused_at(t) and (self.adhoc_at(t) is not None or on_shift(self.prefs, t))

    def reason_at(self, t: datetime) -> str:
        """Why the worker is (not) located at t: `paused`, `ad-hoc-shift`, `shift`,
        `no-shift-set` or `outside-shift`."""
        if self.paused_at(t):
            return "paused"
        if self.adhoc_at(t) is not None:
            return "ad-hoc-shift"
        if self.prefs.shift_start is None or self.prefs.shift_end is None:
            return "no-shift-set"
        return "shift" if on_shift(self.prefs, t) else "outside-shift"


async def load_tracking(
    session: AsyncSession, settings: Settings, staff_id: uuid.UUID, since: datetime
) -> Tracking[StaffPeriod]:
    row = (await rules_repository.preferences_of(session, [staff_id])).get(staff_id)
    prefs = effective_prefs(settings, "staff", row)
    return Tracking(prefs, await repository.periods_overlapping(session, staff_id, since))


async def _gate_tracking(
    session: AsyncSession,
    settings: Settings,
    staff_id: uuid.UUID,
    *,
    since: datetime,
    now: datetime,
    cache: ShiftRulesCache | None,
) -> Tracking[StaffPeriod] | Tracking[PeriodRule]:
    """The worker's rules from the cache (app/shifts/cache.py), or loaded and cached: the
    rules only, each fix is still judged at its own time."""
    if cache is None:
        return await load_tracking(session, settings, staff_id, since)
    rules = cache.get(staff_id, since)
    if rules is None:
        generation = cache.generation  # before asking: a change notified meanwhile wins
        load_since = min(since, now - HORIZON)
        loaded = await load_tracking(session, settings, staff_id, load_since)
        rules = Rules(
            loaded.prefs,
            tuple(PeriodRule(p.kind, p.started_at, p.ends_by, p.ended_at) for p in loaded.periods),
            load_since,
        )
        cache.put(staff_id, rules, generation)
    return Tracking(rules.prefs, rules.periods)


async def check_times(
    session: AsyncSession,
    settings: Settings,
    staff_id: uuid.UUID,
    times: Sequence[datetime],
    now: datetime | None = None,
    cache: ShiftRulesCache | None = None,
) -> list[bool]:
    """One flag per fix time: may the worker be located then? Raises `OffShift` (409, nothing
    is stored) when they may not be located now."""
    now = now or datetime.now(UTC)
    since = min([now, *(_aware(t) for t in times)])
    tracking = await _gate_tracking(session, settings, staff_id, since=since, now=now, cache=cache)
    if not tracking.allowed_at(now):
        raise OffShift(tracking.reason_at(now))
    return [tracking.allowed_at(t) for t in times]


def tracking_gate(
    settings: Settings, cache: Callable[[], ShiftRulesCache | None] = lambda: None
) -> StaffGate:
    """The gate handed to presence by the composition root (`app.state.staff_location_gate`);
    `cache` gives the process's rules cache while it runs (None: always ask the database)."""

    async def gate(
        session: AsyncSession, subject: presence_service.Subject, times: Sequence[datetime]
    ) -> list[bool]:
        if subject.kind is not SubjectKind.staff:
            return [True] * len(times)
        return await check_times(session, settings, subject.id, times, cache=cache())

    return gate


async def on_adhoc_shift(
    session: AsyncSession, staff_ids: Sequence[uuid.UUID], at: datetime
) -> set[uuid.UUID]:
    """Which of these workers have an ad-hoc shift running at `at` and tracking not paused:
    the rules count them on shift for task pushes too (registered by the composition root)."""
    ids = list(dict.fromkeys(staff_ids))
    if not ids:
        return set()
    periods = await repository.periods_of_many(session, ids, at)
    by_worker: dict[uuid.UUID, list[StaffPeriod]] = {}
    for p in periods:
        by_worker.setdefault(p.staff_user_id, []).append(p)
    out = set()
    for worker, own in by_worker.items():
        tracking = Tracking(NEVER, own)
        if not tracking.paused_at(at) and tracking.adhoc_at(at) is not None:
            out.add(worker)
    return out


async def located_now(
    session: AsyncSession,
    settings: Settings,
    staff_ids: Sequence[uuid.UUID],
    now: datetime | None = None,
) -> set[uuid.UUID]:
    """Which of these workers may be located now (their shift window or an ad-hoc shift, and
    tracking not paused): only their last fixes may be used, e.g. for a push about work nearby."""
    now = now or datetime.now(UTC)
    ids = list(dict.fromkeys(staff_ids))
    if not ids:
        return set()
    # two statements for all of them (not two per worker)
    prefs = await rules_repository.preferences_of(session, ids)
    periods: dict[uuid.UUID, list[StaffPeriod]] = {i: [] for i in ids}
    for p in await repository.periods_of_many(session, ids, now):
        periods[p.staff_user_id].append(p)
    return {
        i
        for i in ids
        if Tracking(effective_prefs(settings, "staff", prefs.get(i)), periods[i]).allowed_at(now)
    }


async def ensure_may_check_in(
    session: AsyncSession, settings: Settings, principal: Principal, now: datetime | None = None
) -> None:
    """A field worker's check-in: refused with `OffShift` unless they may be located now.

    A check-in is the worker's own act at the moment they make it, so it is judged at the
    server's time (a phone's fix time can lag: a cached position, a slow clock); background
    fixes are judged one by one at their own times (`check_times`). Other callers pass.
    """
    if not principal.is_staff or principal.role is not Role.field_worker:
        return
    await check_times(session, settings, principal.id, [], now)


# --- the worker's own controls -----------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    on_shift: bool
    reason: str
    prefs: Prefs
    adhoc_shift: StaffPeriod | None
    paused_since: datetime | None


async def status(
    session: AsyncSession, settings: Settings, principal: Principal, now: datetime | None = None
) -> Status:
    now = now or datetime.now(UTC)
    tracking = await load_tracking(session, settings, principal.id, now)
    pause = next(
        (p for p in tracking.periods if p.kind == PeriodKind.pause.value and _covers(p, now)),
        None,
    )
    return Status(
        on_shift=tracking.allowed_at(now),
        reason=tracking.reason_at(now),
        prefs=tracking.prefs,
        adhoc_shift=tracking.adhoc_at(now),
        paused_since=pause.started_at if pause else None,
    )


async def _close_if_expired(
    session: AsyncSession, period: StaffPeriod | None, now: datetime
) -> StaffPeriod | None:
    """An open ad-hoc shift past its maximum length is ended now, as the job would have."""
    if period is None or period.ends_by is None or period.ends_by > now:
        return period
    period.ended_at, period.end_reason = period.ends_by, EndReason.auto.value
    await session.flush()
    await audit_service.record_system(
        session,
        period.organisation_id,
        "shift.auto_end",
        "staff_period",
        period.id,
        {"staff_user_id": str(period.staff_user_id), "ended_at": period.ends_by.isoformat()},
    )
    return None


async def start_shift(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    hours: float | None,
    now: datetime | None = None,
) -> StaffPeriod:
    """Start an ad-hoc shift of `hours` (at most `STAFF_ADHOC_SHIFT_MAX_H`, the default)."""
    now = now or datetime.now(UTC)
    limit = settings.staff_adhoc_shift_max_h
    if hours is not None and hours > limit:
        raise ShiftTooLong(
            f"An ad-hoc shift lasts at most {limit:g} hours.",
            extra={"field": "hours", "max_hours": limit},
        )
    current = await repository.open_period(session, principal.id, PeriodKind.shift, lock=True)
    if await _close_if_expired(session, current, now) is not None:
        raise ShiftAlreadyStarted("End the running ad-hoc shift before starting another.")
    period = await repository.add(
        session,
        StaffPeriod(
            organisation_id=principal.organisation_id,
            staff_user_id=principal.id,
            kind=PeriodKind.shift.value,
            started_at=now,
            ends_by=now + timedelta(hours=hours or limit),
        ),
    )
    await audit_service.record(
        session,
        principal,
        "shift.start",
        "staff_period",
        period.id,
        {"ends_by": _iso(period.ends_by)},
    )
    return period


async def end_shift(
    session: AsyncSession, principal: Principal, now: datetime | None = None
) -> StaffPeriod:
    now = now or datetime.now(UTC)
    current = await repository.open_period(session, principal.id, PeriodKind.shift, lock=True)
    if current is None or (current.ends_by is not None and current.ends_by <= now):
        raise NoOpenShift("No ad-hoc shift is running (one that reached its length ended).")
    current.ended_at, current.end_reason = now, EndReason.worker.value
    await session.flush()
    await audit_service.record(session, principal, "shift.end", "staff_period", current.id)
    return current


async def pause(
    session: AsyncSession, principal: Principal, now: datetime | None = None
) -> StaffPeriod:
    now = now or datetime.now(UTC)
    if await repository.open_period(session, principal.id, PeriodKind.pause, lock=True):
        raise AlreadyPaused("Tracking is already paused.")
    period = await repository.add(
        session,
        StaffPeriod(
            organisation_id=principal.organisation_id,
            staff_user_id=principal.id,
            kind=PeriodKind.pause.value,
            started_at=now,
        ),
    )
    await audit_service.record(session, principal, "tracking.pause", "staff_period", period.id)
    return period


async def resume(
    session: AsyncSession, principal: Principal, now: datetime | None = None
) -> StaffPeriod:
    now = now or datetime.now(UTC)
    current = await repository.open_period(session, principal.id, PeriodKind.pause, lock=True)
    if current is None:
        raise NotPaused("Tracking is not paused.")
    current.ended_at, current.end_reason = max(now, current.started_at), EndReason.worker.value
    await session.flush()
    await audit_service.record(session, principal, "tracking.resume", "staff_period", current.id)
    return current


async def list_periods(
    session: AsyncSession, principal: Principal, page: PageParams, kind: PeriodKind | None
) -> tuple[list[StaffPeriod], str | None]:
    rows = await repository.list_periods(session, principal.id, page, kind)
    return trim_page(rows, page, "started_at")


async def export_periods(session: AsyncSession, staff_id: uuid.UUID) -> list[dict[str, Any]]:
    """The worker's shifts and pauses for their own export, oldest first."""
    return [period_dict(p) for p in await repository.all_periods(session, staff_id)]


def period_dict(p: StaffPeriod, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    end = shift_end(p) if p.kind == PeriodKind.shift.value else p.ended_at
    ended = end if end is not None and end != FOREVER and end <= now else None
    return {
        "id": p.id,
        "kind": p.kind,
        "started_at": p.started_at,
        "ends_by": p.ends_by,
        "ended_at": ended,
        "end_reason": p.end_reason
        or (EndReason.auto.value if ended is not None and p.ended_at is None else None),
        "open": ended is None,
    }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# --- the scheduled job ------------------------------------------------------------------------


async def end_expired_shifts(session: AsyncSession, now: datetime | None = None) -> int | None:
    """Close the ad-hoc shifts that reached their maximum length (audited `shift.auto_end`);
    None when another process holds the job's lock."""
    now = now or datetime.now(UTC)
    if not await repository.try_advisory_lock(session, SWEEP_LOCK_KEY):
        return None
    closed = await repository.close_expired_shifts(session, now)
    for p in closed:
        await audit_service.record_system(
            session,
            p.organisation_id,
            "shift.auto_end",
            "staff_period",
            p.id,
            {"staff_user_id": str(p.staff_user_id), "ended_at": _iso(p.ended_at)},
        )
    return len(closed)


# --- what a supervisor may see -----------------------------------------------------------------


@dataclass(frozen=True)
class CurrentPlace:
    staff_id: uuid.UUID
    on_shift: bool
    places: list[dict[str, Any]]
    last_fix_at: datetime | None


async def current_place(
    session: AsyncSession,
    settings: Settings,
    supervisor: Principal,
    staff_id: uuid.UUID,
    now: datetime | None = None,
) -> CurrentPlace:
    """A worker's current place for an admin or editor: the places they are inside or near from
    a fix at most 15 minutes old, only while they are on shift; never where they were before."""
    now = now or datetime.now(UTC)
    try:
        worker = await accounts_service.get_user_in_org(
            session, supervisor.organisation_id, staff_id
        )
    except UserNotFound as exc:  # another organisation's, or no such user
        raise WorkerNotFound() from exc
    if worker.role is not Role.field_worker:
        raise WorkerNotFound("This user is not a field worker.")
    tracking = await load_tracking(session, settings, staff_id, now)
    if not tracking.allowed_at(now):
        return CurrentPlace(staff_id, False, [], None)
    fresh = [
        dict(r._mapping)
        for r in await presence_service.presence_of(session, staff_id)
        if r.last_fix_at is not None and now - r.last_fix_at <= CURRENT_PLACE_MAX_AGE
    ]
    places = [
        {k: r[k] for k in ("geofence_id", "name", "category", "state", "since")} for r in fresh
    ]
    last = max((r["last_fix_at"] for r in fresh), default=None)
    return CurrentPlace(staff_id, True, places, last)
