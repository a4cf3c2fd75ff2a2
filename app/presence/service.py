"""Presence rules. `record_events` is the one way any domain adds to the shared event log.

`ingest_ping_batch` is the theme-6 hot path: validate, store, resolve, evaluate and record one
batch of pings in a constant number of statements inside the caller's transaction, and return
the events it created (see docs/presence.md, "Hooking into events").
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.presence import engine, repository
from app.presence.engine import Fix, LastFix, Params
from app.presence.errors import BackgroundLocationOff
from app.presence.models import EventSource, EventType, PingQuality, SubjectKind


def event_row(
    *,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    type: EventType,
    source: EventSource,
    occurred_at: datetime,
    device_id: uuid.UUID | None = None,
    staff_user_id: uuid.UUID | None = None,
    ping_id: str | None = None,
    checkin_id: uuid.UUID | None = None,
    lon: float | None = None,
    lat: float | None = None,
    accuracy_m: float | None = None,
    explanation: dict[str, Any] | None = None,
    suppressed_reason: str | None = None,
) -> dict[str, Any]:
    if (device_id is None) == (staff_user_id is None):
        raise ValueError("an event is about exactly one device or one staff user")
    return {
        "id": uuid.uuid4(),
        "organisation_id": organisation_id,
        "geofence_id": geofence_id,
        "type": type.value,
        "source": source.value,
        "occurred_at": occurred_at,
        "device_id": device_id,
        "staff_user_id": staff_user_id,
        "ping_id": ping_id,
        "checkin_id": checkin_id,
        "lon": lon,
        "lat": lat,
        "accuracy_m": accuracy_m,
        "explanation": explanation or {},
        "suppressed_reason": suppressed_reason,
    }


async def record_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await repository.insert_events(session, rows)


# --- hooks ------------------------------------------------------------------------------------

EventHook = Callable[[AsyncSession, list[dict[str, Any]]], Awaitable[None]]
_event_hooks: list[EventHook] = []


def register_event_hook(hook: EventHook) -> None:
    """Call `hook(session, events)` after every ping batch that created (unsuppressed) events.

    It runs inside the batch's transaction, so whatever it writes (e.g. outbox rows) commits
    with the events or not at all.
    """
    if hook not in _event_hooks:
        _event_hooks.append(hook)


def unregister_event_hook(hook: EventHook) -> None:
    if hook in _event_hooks:
        _event_hooks.remove(hook)


# --- background location ----------------------------------------------------------------------


async def background_location_enabled(session: AsyncSession, device_id: uuid.UUID) -> bool:
    return await repository.background_location_enabled(session, device_id)


async def set_background_location(
    session: AsyncSession, device_id: uuid.UUID, enabled: bool
) -> None:
    await repository.set_background_location(session, device_id, enabled)


# --- pings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who a batch of pings is about: a resident device or a field worker."""

    kind: SubjectKind
    id: uuid.UUID
    organisation_id: uuid.UUID


@dataclass(frozen=True)
class PingInput:
    """One ping as received (values unchecked beyond their JSON types)."""

    id: str
    lon: float
    lat: float
    recorded_at: datetime
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading: float | None = None


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    # the unsuppressed events this batch created, as inserted (event_row dicts), in fix order
    events: list[dict[str, Any]] = field(default_factory=list)
    # candidates that were not emitted, with `suppressed_reason` (also in the event log)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, str]] = field(default_factory=list)


def params_from(settings: Settings) -> Params:
    return Params(
        max_accuracy_m=settings.ping_max_accuracy_m,
        max_speed_mps=settings.implausible_speed_mps,
        exit_margin_m=settings.presence_exit_margin_m,
        enter_max_accuracy_m=settings.presence_enter_max_accuracy_m,
        pass_through_max_gap_s=settings.presence_pass_through_max_gap_s,
    )


def _rejection(p: PingInput, now: datetime, settings: Settings) -> str | None:
    """Why a ping is rejected outright (nothing stored), or None."""
    if not (math.isfinite(p.lon) and math.isfinite(p.lat)):
        return "coordinates_not_finite"
    if not (-180.0 <= p.lon <= 180.0) or not (-90.0 <= p.lat <= 90.0):
        return "coordinates_out_of_range"
    if p.lon == 0.0 and p.lat == 0.0:
        return "null_island"
    if p.recorded_at.tzinfo is None or p.recorded_at.utcoffset() is None:
        return "recorded_at_without_timezone"
    if p.recorded_at > now + timedelta(seconds=settings.max_future_skew_s):
        return "recorded_at_in_future"
    if p.recorded_at < now - timedelta(hours=settings.ping_retention_h):
        return "older_than_retention"
    return None


def _optional(value: float | None, low: float, high: float) -> float | None:
    # Phones send -1 for "unknown" speed/course (iOS); keep the fix, drop the value.
    if value is None or not math.isfinite(value) or not (low <= value <= high):
        return None
    return value


def _round6(v: float) -> float:
    return round(v, 6)


async def ingest_ping_batch(
    session: AsyncSession,
    settings: Settings,
    subject: Subject,
    pings: list[PingInput],
    now: datetime | None = None,
) -> BatchResult:
    """Validate, store and evaluate one batch; returns what happened, events included.

    Statements (constant per batch): lock subject, dedupe, ensure partitions, insert pings,
    load presence, resolve fixes, resolve crossings, delete/upsert presence, update subject,
    insert events. Never commits.
    """
    now = now or datetime.now(UTC)
    params = params_from(settings)
    result = BatchResult()

    valid: dict[str, PingInput] = {}
    for p in pings:
        reason = _rejection(p, now, settings)
        if reason is not None:
            result.rejected.append({"id": p.id, "reason": reason})
        elif p.id in valid:
            result.duplicates += 1  # the first occurrence in the request wins
        else:
            valid[p.id] = p
    if not valid:
        return result

    last = await repository.lock_subject(
        session, subject.id, subject.kind.value, subject.organisation_id
    )
    stored = await repository.existing_ping_ids(session, subject.id, list(valid))
    result.duplicates += len(stored)
    new = [p for cid, p in valid.items() if cid not in stored]
    if not new:
        return result

    fixes: list[Fix] = []
    for p in sorted(new, key=lambda q: (q.recorded_at, q.id)):
        acc = p.accuracy_m
        usable_acc = acc if acc is not None and math.isfinite(acc) and acc > 0 else None
        fixes.append(
            Fix(
                idx=len(fixes),
                client_id=p.id,
                recorded_at=p.recorded_at.astimezone(UTC),
                lon=_round6(p.lon),
                lat=_round6(p.lat),
                accuracy_m=usable_acc,
                speed_mps=_optional(p.speed_mps, 0.0, 1000.0),
                heading=_optional(p.heading, 0.0, 360.0),
                quality=engine.base_quality(usable_acc, params),
            )
        )
    engine.mark_late_and_jumps(fixes, last, params)

    days = sorted({f.recorded_at.date() for f in fixes})
    await repository.ensure_ping_partitions(session, days[0], days[-1])
    await repository.insert_pings(
        session,
        subject.id,
        subject.kind.value,
        subject.organisation_id,
        repository.PingRows(
            client_id=[f.client_id for f in fixes],
            recorded_at=[f.recorded_at for f in fixes],
            lon=[f.lon for f in fixes],
            lat=[f.lat for f in fixes],
            accuracy_m=[f.accuracy_m for f in fixes],
            speed_mps=[f.speed_mps for f in fixes],
            heading=[f.heading for f in fixes],
            quality=[f.quality.value for f in fixes],
            late=[f.late for f in fixes],
        ),
    )
    result.accepted = len(fixes)
    result.flagged = [
        {"id": f.client_id, "reason": "late_fix" if f.late else f.quality.value}
        for f in fixes
        if not f.triggers
    ]

    resolvable = [f for f in fixes if f.quality in (PingQuality.ok, PingQuality.implausible_jump)]
    if not resolvable:
        return result
    states, deleted = await repository.load_presence(session, subject.id)
    candidates = await repository.resolve_fixes(
        session,
        subject.organisation_id,
        idx=[f.idx for f in resolvable],
        lon=[f.lon for f in resolvable],
        lat=[f.lat for f in resolvable],
        margin=[f.margin(params) for f in resolvable],
        at=[f.recorded_at for f in resolvable],
        present=sorted(states, key=str),
    )
    segs = engine.segments(fixes, last, params)
    crossings = await repository.resolve_crossings(
        session,
        subject.organisation_id,
        [(b.idx, a.lon, a.lat, b.lon, b.lat, b.recorded_at) for a, b in segs],
    )
    outcome = engine.evaluate(fixes, candidates, crossings, states, last, params)

    await repository.delete_presence(
        session, subject.id, sorted(outcome.removed | deleted, key=str)
    )
    await repository.upsert_presence(
        session,
        subject.id,
        subject.kind.value,
        subject.organisation_id,
        [outcome.states[g] for g in sorted(outcome.changed, key=str)],
    )
    if outcome.last_fix is not None and outcome.last_fix != last:
        await repository.update_subject(session, subject.id, outcome.last_fix)

    rows = [
        event_row(
            organisation_id=subject.organisation_id,
            geofence_id=tr.geofence_id,
            type=tr.type,
            source=EventSource.ping,
            occurred_at=tr.fix.recorded_at,
            device_id=subject.id if subject.kind is SubjectKind.device else None,
            staff_user_id=subject.id if subject.kind is SubjectKind.staff else None,
            ping_id=tr.fix.client_id,
            lon=tr.fix.lon,
            lat=tr.fix.lat,
            accuracy_m=tr.fix.accuracy_m,
            explanation=tr.explanation,
            suppressed_reason=tr.suppressed_reason,
        )
        for tr in outcome.transitions
    ]
    await record_events(session, rows)
    result.events = [r for r in rows if r["suppressed_reason"] is None]
    result.suppressed = [r for r in rows if r["suppressed_reason"] is not None]
    if result.events:
        for hook in list(_event_hooks):
            await hook(session, result.events)
    return result


async def ensure_subject_may_ping(session: AsyncSession, subject: Subject) -> None:
    """Residents only with background location switched on (409 otherwise, nothing stored)."""
    if subject.kind is SubjectKind.device and not await repository.background_location_enabled(
        session, subject.id
    ):
        raise BackgroundLocationOff()


async def maintain_ping_partitions(
    session: AsyncSession, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """Create day partitions for [today - retention, today + 2] and drop the expired ones.

    Called at startup and by maintenance (`hereabouts pings maintain`); a batch also creates its
    own days on demand, so a missed run never loses a ping.
    """
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    retention = timedelta(hours=settings.ping_retention_h)
    oldest_kept = (now - retention).astimezone(UTC).date()
    created = await repository.ensure_ping_partitions(
        session, oldest_kept, today + timedelta(days=2)
    )
    dropped = []
    for day in await repository.ping_partition_days(session):
        if day < oldest_kept:
            await repository.drop_ping_partition(session, day)
            dropped.append(day.isoformat())
    return {"created": created, "dropped": dropped}


# --- reads ------------------------------------------------------------------------------------


async def presence_of(session: AsyncSession, subject_id: uuid.UUID) -> list[Any]:
    return await repository.presence_of(session, subject_id)


async def list_events(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    geofence_id: uuid.UUID | None,
    types: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    include_suppressed: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Any]:
    return await repository.list_events(
        session,
        organisation_id,
        geofence_id=geofence_id,
        types=types,
        since=since,
        until=until,
        include_suppressed=include_suppressed,
        after=after,
        limit=limit,
    )


async def events_created_after(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID],
    limit: int,
) -> list[Any]:
    return await repository.events_created_after(session, organisation_id, after, limit)


async def db_now(session: AsyncSession) -> datetime:
    return await repository.db_now(session)


async def last_fix(session: AsyncSession, subject_id: uuid.UUID) -> LastFix | None:
    """The last good fix from this device or staff user's pings (for plausibility checks)."""
    return await repository.last_fix(session, subject_id)


async def erase_subject(session: AsyncSession, subject_id: uuid.UUID) -> None:
    """Erase everything the presence domain holds about a device or staff user.

    For `DELETE /v1/me` (privacy issue): pings have no foreign key to devices (one column for
    both kinds of subject), so deleting the device row alone would leave them behind.
    """
    await repository.erase_subject(session, subject_id)
