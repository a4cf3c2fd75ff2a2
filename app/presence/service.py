"""Presence rules. `record_events` is the one way any domain adds to the shared event log.

`ingest_ping_batch` is the theme-6 hot path: validate, store, resolve, evaluate and record one
batch of pings in a constant number of statements inside the caller's transaction, and return
the events it created (see docs/presence.md, "Hooking into events").
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.pace import breathe
from app.core.subject import SubjectRef
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

# `hook(session, events)` runs after a ping batch that created (unsuppressed) events, inside the
# batch's transaction, so whatever it writes (e.g. outbox rows) commits with the events or not
# at all. The app factory hands the rules' hook to its `PingGroups`; presence never imports rules.
EventHook = Callable[[AsyncSession, list[dict[str, Any]]], Awaitable[None]]


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

    @property
    def ref(self) -> SubjectRef:
        return SubjectRef.of(self.kind.value, self.id, self.organisation_id)


class PingInput(NamedTuple):
    """One ping as received (values unchecked beyond their JSON types).

    A named tuple: a 1,000-ping request makes a thousand (a frozen dataclass costs several
    times as much to create).
    """

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
        pass_through_max_speed_mps=settings.presence_pass_through_max_speed_mps,
        enter_evidence=settings.presence_enter_evidence,
    )


def _rejection(p: PingInput, latest: datetime, oldest: datetime) -> str | None:
    """Why a ping is rejected outright (nothing stored), or None.

    `latest` / `oldest`: the newest and oldest `recorded_at` accepted (the clock skew allowed,
    the retention window).
    """
    if not (math.isfinite(p.lon) and math.isfinite(p.lat)):
        return "coordinates_not_finite"
    if not (-180.0 <= p.lon <= 180.0) or not (-90.0 <= p.lat <= 90.0):
        return "coordinates_out_of_range"
    if p.lon == 0.0 and p.lat == 0.0:
        return "null_island"
    if p.recorded_at.tzinfo is None or p.recorded_at.utcoffset() is None:
        return "recorded_at_without_timezone"
    if p.recorded_at > latest:
        return "recorded_at_in_future"
    if p.recorded_at < oldest:
        return "older_than_retention"
    return None


def in_utc(value: datetime) -> datetime:
    """An aware datetime as the same instant in UTC (a naive one as it is, to be rejected).

    The HTTP entries convert `recorded_at` once: pydantic parses offsets into its own tzinfo,
    which every later comparison and conversion of the fix asks for the offset again (~1.4 us
    each, against ~30 ns for `datetime.timezone`).
    """
    return value if value.tzinfo is None else value.astimezone(UTC)


def _optional(value: float | None, low: float, high: float) -> float | None:
    # Phones send -1 for "unknown" speed/course (iOS); keep the fix, drop the value.
    if value is None or not math.isfinite(value) or not (low <= value <= high):
        return None
    return value


def _round6(v: float) -> float:
    return round(v, 6)


# Day partitions this process knows exist, committed: a day is only ever dropped once it is older
# than the retention window, and pings that old are rejected before they reach the insert, so a
# day in this set stays valid (dropping a partition here, in maintenance or tests, forgets it).
# Days are remembered only when the ensure call found them all already there: a partition this
# transaction creates is not known to exist until it commits.
_known_partitions: set[date] = set()


async def _ensure_partitions(session: AsyncSession, days: list[date]) -> None:
    missing = [d for d in days if d not in _known_partitions]
    if not missing:
        return
    if await repository.ensure_ping_partitions(session, min(missing), max(missing)) == 0:
        _known_partitions.update(missing)


def _fixes(pings: list[PingInput], params: Params) -> list[Fix]:
    """The batch's fixes in time order, with their base quality (late and jumps not yet known)."""
    fixes: list[Fix] = []
    for p in sorted(pings, key=lambda q: (q.recorded_at, q.id)):
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
    return fixes


def _resolvable(fixes: list[Fix], params: Params) -> repository.FixColumns:
    """Fixes with a usable accuracy are looked up (jumps too, to explain what they suppress)."""
    ok = [f for f in fixes if f.quality in (PingQuality.ok, PingQuality.implausible_jump)]
    return repository.FixColumns(
        idx=[f.idx for f in ok],
        lon=[f.lon for f in ok],
        lat=[f.lat for f in ok],
        # the read keeps places within trigger distance + this of a fix (its window)
        margin=[engine.window_m(f, params) for f in ok],
        at=[f.recorded_at for f in ok],
    )


SegmentKey = tuple[datetime, float, float, int]


def _segment_keys(pairs: list[tuple[LastFix, Fix]]) -> list[SegmentKey]:
    return [(a.recorded_at, a.lon, a.lat, b.idx) for a, b in pairs]


def _assumed_segments(fixes: list[Fix], last: LastFix | None, params: Params) -> list[SegmentKey]:
    """The segments `hereabouts_ping_read` tested: every usable fix that is not late, in order.

    They are the evaluation's own segments (`engine.segments`) unless a fix is flagged as an
    implausible jump, which the evaluation skips.
    """
    out: list[SegmentKey] = []
    prev = last
    for f in fixes:  # already in time order
        if f.quality not in (PingQuality.ok, PingQuality.implausible_jump):
            continue
        if last is not None and f.recorded_at < last.recorded_at:
            continue
        if prev is not None:
            gap = (f.recorded_at - prev.recorded_at).total_seconds()
            if 0 < gap <= params.pass_through_max_gap_s:
                out.append((prev.recorded_at, prev.lon, prev.lat, f.idx))
        prev = LastFix(f.recorded_at, f.lon, f.lat, f.accuracy_m or 0.0)
    return out


@dataclass(frozen=True)
class BatchRequest:
    """One subject's batch of pings, as one request sent it."""

    subject: Subject
    pings: list[PingInput]
    # refuse the batch (BackgroundLocationOff, nothing stored) when a resident has switched
    # background location off
    check_background_location: bool = False


@dataclass
class _Job:
    request: BatchRequest
    result: BatchResult
    valid: dict[str, PingInput]
    key: repository.SubjectKey
    fixes: list[Fix] = field(default_factory=list)
    view: repository.BatchView | None = None
    refused: BackgroundLocationOff | None = None

    @property
    def checks(self) -> bool:
        return (
            self.request.check_background_location
            and self.request.subject.kind is SubjectKind.device
        )


async def ingest_ping_batch(
    session: AsyncSession,
    settings: Settings,
    subject: Subject,
    pings: list[PingInput],
    now: datetime | None = None,
    *,
    check_background_location: bool = False,
    on_events: EventHook | None = None,
) -> BatchResult:
    """Validate, store and evaluate one batch; returns what happened, events included.

    The group of one (`ingest_ping_batches`). Never commits. With `check_background_location`,
    a device whose owner has switched background location off gets `BackgroundLocationOff` and
    nothing is stored.
    """
    (outcome,) = await ingest_ping_batches(
        session,
        settings,
        [BatchRequest(subject, pings, check_background_location)],
        now,
        on_events=on_events,
    )
    if isinstance(outcome, BackgroundLocationOff):
        raise outcome
    return outcome


# A group of many subjects (an evaluator's set) is read, evaluated and written in chunks of this
# many, pipelined: while this process evaluates a chunk, PostgreSQL writes the one before and
# reads the one after (one statement at a time on the group's connection, in its transaction).
# One after the other, a set's elapsed time was its Python time plus its PostgreSQL time, and
# that bounds the rate of an evaluator (docs/benchmarks.md, "Pipelined sets").
PIPELINE_SUBJECTS = 128


async def ingest_ping_batches(
    session: AsyncSession,
    settings: Settings,
    requests: list[BatchRequest],
    now: datetime | None = None,
    *,
    on_events: EventHook | None = None,
) -> list[BatchResult | BackgroundLocationOff]:
    """Validate, store and evaluate the batches of several subjects together, in one transaction.

    Two statements per `PIPELINE_SUBJECTS` subjects whatever the number of pings: read (lock the
    subjects, then their last fixes, background-location switches, duplicates, presence,
    candidate places and crossed places) and write (pings, presence, last fixes, events); a
    chunk's are pipelined with the evaluation of the chunk before it. A third only when a client
    repeats stored ids (those batches are read again without them) and one per batch whose fix
    is an implausible jump (crossings are asked for the evaluation's own segments). `on_events`
    runs once after, in the same transaction, with every batch's events. Never commits.

    Subjects must be distinct. Each batch is evaluated exactly as if it were alone: returns its
    result, or `BackgroundLocationOff` for a refused one (nothing of it is stored).
    """
    if len({r.subject.id for r in requests}) != len(requests):
        raise ValueError("one batch per subject in a group")
    now = now or datetime.now(UTC)
    params = params_from(settings)
    latest = now + timedelta(seconds=settings.max_future_skew_s)
    oldest = now - timedelta(hours=settings.ping_retention_h)

    jobs: list[_Job] = []
    for req in requests:
        await breathe()  # a set is hundreds of subjects (app/core/pace.py)
        result = BatchResult()
        valid: dict[str, PingInput] = {}
        for p in req.pings:
            reason = _rejection(p, latest, oldest)
            if reason is not None:
                result.rejected.append({"id": p.id, "reason": reason})
            elif p.id in valid:
                result.duplicates += 1  # the first occurrence in the request wins
            else:
                valid[p.id] = p
        key = repository.SubjectKey(
            req.subject.id, req.subject.kind.value, req.subject.organisation_id
        )
        jobs.append(_Job(req, result, valid, key))

    for job in jobs:
        if not job.valid and job.checks:
            try:
                await ensure_subject_may_ping(session, job.request.subject)
            except BackgroundLocationOff as exc:
                job.refused = exc

    live = [j for j in jobs if j.valid]
    for job in live:
        await breathe()
        job.fixes = _fixes(list(job.valid.values()), params)
    # in chunks, pipelined (`PIPELINE_SUBJECTS`): while this process evaluates a chunk, the
    # previous chunk's write and the next one's read run in PostgreSQL. The chunks in subject
    # order: each read locks its subjects in id order, so the group locks them all in id order,
    # as one read does (two groups sharing subjects never deadlock)
    ordered = sorted(live, key=lambda j: j.key.id) if len(live) > PIPELINE_SUBJECTS else live
    chunks = [ordered[i : i + PIPELINE_SUBJECTS] for i in range(0, len(ordered), PIPELINE_SUBJECTS)]
    pipe = _Pipe(session, params)
    try:
        writes: list[repository.BatchWrite] = []
        for k, chunk in enumerate(chunks):
            views = await (pipe.result() if k else pipe.read(chunk))
            ready = await _chunk_read(session, chunk, views, params)
            if pipe.start(writes, chunks[k + 1] if k + 1 < len(chunks) else None):
                await asyncio.sleep(0)  # the task sends its first statement
            writes = []
            for job in ready:
                await breathe()
                writes.append(await _evaluate(session, job, params, pipe.idle))
        await pipe.result()
        await _write(session, writes)
    finally:
        await pipe.settle()

    # the events in the requests' order, whatever the chunks' (the hooks' rules see them so);
    # a refused batch, or one of stored repeats only, has none
    events = [e for j in live for e in j.result.events]
    if events and on_events is not None:
        await on_events(session, events)
    return [j.refused if j.refused is not None else j.result for j in jobs]


async def _chunk_read(
    session: AsyncSession,
    chunk: list[_Job],
    views: list[repository.BatchView] | None,
    params: Params,
) -> list[_Job]:
    """Take a chunk's read: refused subjects out, stored repeats out (those batches read again
    without them, the rare third statement). Returns the chunk's jobs left to evaluate."""
    assert views is not None
    for job, view in zip(chunk, views, strict=True):
        job.view = view
        if job.checks and not view.background_location:
            job.refused = BackgroundLocationOff()
    live = [j for j in chunk if j.refused is None]
    # a retry: evaluate only the new pings (their order, jumps and segments may differ)
    again: list[_Job] = []
    for job in live:
        assert job.view is not None
        if job.view.duplicates:
            job.result.duplicates += len(job.view.duplicates)
            new = [p for cid, p in job.valid.items() if cid not in job.view.duplicates]
            job.fixes = _fixes(new, params)
            if new:
                again.append(job)
    if again:
        views = await repository.read_batches(
            session,
            [repository.BatchRead(j.key, [], _resolvable(j.fixes, params)) for j in again],
            params.pass_through_max_gap_s,
        )
        for job, view in zip(again, views, strict=True):
            job.view = view
    return [j for j in live if j.fixes]


async def _write(session: AsyncSession, writes: list[repository.BatchWrite]) -> None:
    if writes:
        await _ensure_partitions(
            session, sorted({t.date() for w in writes for t in w.pings.recorded_at})
        )
        await repository.write_batches(session, writes)


class _Pipe:
    """The statements of a pipelined group (`PIPELINE_SUBJECTS`): one at a time on the
    session's connection, run as a task while the caller evaluates. `start` queues a chunk's
    write then the next chunk's read; `result` waits for them and returns the read's views;
    `idle` waits for them without taking the views (before any other statement: an evaluation
    that has to ask the database); `settle` leaves nothing running on the connection."""

    def __init__(self, session: AsyncSession, params: Params) -> None:
        self.session, self.params = session, params
        self.task: asyncio.Task[list[repository.BatchView] | None] | None = None

    def start(self, writes: list[repository.BatchWrite], reads: list[_Job] | None) -> bool:
        assert self.task is None
        if writes or reads:
            self.task = asyncio.ensure_future(self._run(writes, reads))
        return self.task is not None

    async def _run(
        self, writes: list[repository.BatchWrite], reads: list[_Job] | None
    ) -> list[repository.BatchView] | None:
        await _write(self.session, writes)
        return None if reads is None else await self.read(reads)

    async def read(self, reads: list[_Job]) -> list[repository.BatchView]:
        return await repository.read_batches(
            self.session,
            [
                repository.BatchRead(
                    j.key, list(j.valid), _resolvable(j.fixes, self.params), j.checks
                )
                for j in reads
            ],
            self.params.pass_through_max_gap_s,
        )

    async def result(self) -> list[repository.BatchView] | None:
        task, self.task = self.task, None
        return None if task is None else await task

    async def idle(self) -> None:
        if self.task is not None and not self.task.done():
            await asyncio.wait([self.task])

    async def settle(self) -> None:
        """After an error: let the running statement end (the caller's rollback needs the
        connection), its own error dropped (the first one is the caller's)."""
        task, self.task = self.task, None
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()


async def _evaluate(
    session: AsyncSession,
    job: _Job,
    params: Params,
    before_query: Callable[[], Awaitable[None]],
) -> repository.BatchWrite:
    """Evaluate one batch against what the read returned; fills its result, returns its write."""
    view, fixes, subject, result = job.view, job.fixes, job.request.subject, job.result
    assert view is not None
    org = subject.organisation_id
    last = view.last
    engine.mark_late_and_jumps(fixes, last, params)
    segments = engine.segments(fixes, last, params)
    if _segment_keys(segments) != _assumed_segments(fixes, last, params):
        await before_query()
        view.crossings = await repository.resolve_crossings(
            session, org, [(b.idx, a.lon, a.lat, b.lon, b.lat, b.recorded_at) for a, b in segments]
        )

    result.accepted = len(fixes)
    result.flagged = [
        {"id": f.client_id, "reason": "late_fix" if f.late else f.quality.value}
        for f in fixes
        if not f.triggers
    ]
    # the stay's means: the stored one (the read measured it) and any milestone this batch
    # reaches (once per milestone of a stay: 6, 9, 14, 21, ... fixes)
    anchors: dict[tuple[float, float], list[engine.Candidate]] = {}
    if view.stay is not None and view.stay.anchor is not None:
        anchors[view.stay.anchor] = view.anchor_candidates
    new_points = engine.stay_anchors(fixes, view.stay, last, params)
    if new_points:
        await before_query()
        anchors.update(
            await repository.resolve_points(session, org, new_points, fixes[-1].recorded_at)
        )
    outcome = engine.evaluate(
        fixes, view.candidates, view.crossings, view.states, last, params, view.stay, anchors
    )

    rows = [
        event_row(
            organisation_id=org,
            geofence_id=tr.geofence_id,
            type=tr.type,
            source=EventSource.ping,
            occurred_at=tr.fix.recorded_at,
            **subject.ref.owner_columns(),
            ping_id=tr.fix.client_id,
            lon=tr.fix.lon,
            lat=tr.fix.lat,
            accuracy_m=tr.fix.accuracy_m,
            explanation=tr.explanation,
            suppressed_reason=tr.suppressed_reason,
        )
        for tr in outcome.transitions
    ]
    result.events = [r for r in rows if r["suppressed_reason"] is None]
    result.suppressed = [r for r in rows if r["suppressed_reason"] is not None]
    return repository.BatchWrite(
        job.key,
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
        delete=sorted((outcome.removed | view.deleted) - outcome.changed, key=str),
        upsert=[outcome.states[g] for g in sorted(outcome.changed, key=str)],
        last=outcome.last_fix if outcome.last_fix != last else None,
        events=rows,
        stay=outcome.stay,
    )


# --- the asynchronous ingest (202: stored now, evaluated in sets moments later) ----------------


@dataclass
class AckResult:
    """What a 202 answer says: the fixes stored (queued), the repeats, the refused and flagged.

    `flagged` holds what is known without evaluating (accuracy); `late_fix` and
    `implausible_jump` are decided by the evaluation (stored in `pings`, suppressed candidates in
    the event log), as the evaluation's events are.
    """

    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    flagged: list[dict[str, str]] = field(default_factory=list)


async def enqueue_ping_batch(
    session: AsyncSession,
    settings: Settings,
    subject: Subject,
    pings: list[PingInput],
    now: datetime | None = None,
    *,
    check_background_location: bool = True,
) -> AckResult:
    """Validate one batch and queue its fixes for the evaluator (the group of one).

    The same per-ping rejections as `ingest_ping_batches` (nothing of a rejected ping is
    stored); a repeated id (in the request, already queued or already stored) is a duplicate. A
    device whose background location is off gets `BackgroundLocationOff` and nothing is stored.
    Never commits.
    """
    (outcome,) = await enqueue_ping_batches(
        session, settings, [BatchRequest(subject, pings, check_background_location)], now
    )
    if isinstance(outcome, BackgroundLocationOff):
        raise outcome
    return outcome


async def enqueue_ping_batches(
    session: AsyncSession,
    settings: Settings,
    requests: list[BatchRequest],
    now: datetime | None = None,
    *,
    autocommit: bool = False,
) -> list[AckResult | BackgroundLocationOff]:
    """Validate several subjects' batches and queue their fixes in one statement. Never commits.

    Subjects must be distinct. Returns each batch's `AckResult`, or `BackgroundLocationOff` for
    a refused one (nothing of it stored). `autocommit`: the caller commits right after and has
    nothing else to do in the transaction, so if the session has not begun one the statement
    may be its own (`repository.enqueue_pings`).
    """
    if len({r.subject.id for r in requests}) != len(requests):
        raise ValueError("one batch per subject in a group")
    now = now or datetime.now(UTC)
    params = params_from(settings)
    latest = now + timedelta(seconds=settings.max_future_skew_s)
    oldest = now - timedelta(hours=settings.ping_retention_h)
    acks: list[AckResult] = []
    valids: list[list[PingInput]] = []
    for req in requests:
        ack = AckResult()
        valid: dict[str, PingInput] = {}
        for p in req.pings:
            reason = _rejection(p, latest, oldest)
            if reason is not None:
                ack.rejected.append({"id": p.id, "reason": reason})
            elif p.id in valid:
                ack.duplicates.append(p.id)
            else:
                valid[p.id] = p
        acks.append(ack)
        valids.append(list(valid.values()))
    writes = [
        repository.QueueWrite(
            repository.SubjectKey(
                req.subject.id, req.subject.kind.value, req.subject.organisation_id
            ),
            repository.PingRows(
                client_id=[p.id for p in rows],
                recorded_at=[p.recorded_at for p in rows],
                lon=[p.lon for p in rows],
                lat=[p.lat for p in rows],
                accuracy_m=[p.accuracy_m for p in rows],
                speed_mps=[p.speed_mps for p in rows],
                heading=[p.heading for p in rows],
                quality=[],
                late=[],
            ),
            req.check_background_location and req.subject.kind is SubjectKind.device,
        )
        for req, rows in zip(requests, valids, strict=True)
    ]
    stored = await repository.enqueue_pings(session, writes, autocommit=autocommit)
    out: list[AckResult | BackgroundLocationOff] = []
    for ack, rows, (allowed, ids) in zip(acks, valids, stored, strict=True):
        if not allowed:
            out.append(BackgroundLocationOff())
            continue
        fresh = set(ids)
        for p in rows:
            if p.id not in fresh:
                ack.duplicates.append(p.id)
                continue
            ack.accepted.append(p.id)
            acc = p.accuracy_m
            quality = engine.base_quality(
                acc if acc is not None and math.isfinite(acc) and acc > 0 else None, params
            )
            if quality is not PingQuality.ok:
                ack.flagged.append({"id": p.id, "reason": quality.value})
        out.append(ack)
    return out


@dataclass
class EvaluationResult:
    """One set evaluated from the queue."""

    subjects: int = 0
    fixes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    # when the oldest fix of the set was acknowledged (None: nothing was queued)
    oldest_received_at: datetime | None = None


async def prepare_queued(session: AsyncSession) -> None:
    """Create the subject rows `evaluate_queued` claims by, for subjects new to presence.

    In a transaction of its own, committed before the set's: a new subject's row inserted by an
    uncommitted set would make every other evaluator wait for that set instead of skipping it.
    """
    await repository.ensure_queued_subjects(session)


class EvaluationFailed(Exception):
    """A set failed (nothing of it is stored); `subjects` were in it."""

    def __init__(self, subjects: list[uuid.UUID]) -> None:
        super().__init__(f"evaluating {len(subjects)} subject(s) failed")
        self.subjects = subjects


async def evaluate_queued(
    session: AsyncSession,
    settings: Settings,
    max_subjects: int,
    now: datetime | None = None,
    *,
    exclude: list[uuid.UUID] | None = None,
    on_events: EventHook | None = None,
) -> EvaluationResult:
    """Claim up to `max_subjects` subjects' queued fixes and evaluate them as one group.

    Subjects held by another evaluator (or by a synchronous batch) are skipped, and so are
    subjects without a `presence_subjects` row yet (`prepare_queued` first) and `exclude`d
    ones. A failure is `EvaluationFailed` naming the set's subjects. Each subject's
    fixes are one batch of `ingest_ping_batches` (sorted by `recorded_at`, late and duplicate
    fixes as for any batch; hooks run as for any batch: rules, outbox), and the rows read are
    deleted in the same transaction. Never commits: the caller's commit makes the events, the
    pings, the subjects' last fixes (their watermark) and the release one step, so a crash
    before it leaves the queue as it was and one after it leaves nothing to evaluate again.
    """
    out = EvaluationResult()
    rows = await repository.claim_queued(session, max_subjects, exclude)
    if not rows:
        return out
    by_subject: dict[uuid.UUID, list[repository.QueuedRow]] = {}
    for r in rows:
        by_subject.setdefault(r.subject.id, []).append(r)
    requests = [
        BatchRequest(
            Subject(SubjectKind(rs[0].subject.kind), sid, rs[0].subject.organisation_id),
            [
                PingInput(
                    r.client_id, r.lon, r.lat, r.recorded_at, r.accuracy_m, r.speed_mps, r.heading
                )
                for r in rs
            ],
        )
        for sid, rs in by_subject.items()
    ]
    try:
        outcomes = await ingest_ping_batches(session, settings, requests, now, on_events=on_events)
    except Exception as exc:
        raise EvaluationFailed(list(by_subject)) from exc
    await repository.delete_queued(session, rows)
    out.subjects = len(requests)
    out.fixes = len(rows)
    out.oldest_received_at = min(r.received_at for r in rows)
    for outcome in outcomes:
        if isinstance(outcome, BatchResult):
            out.events.extend(outcome.events)
    return out


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
    days = await repository.ping_partition_days(session)
    if any(day < oldest_kept for day in days):
        # field workers' fixes outlive the partitions: their own retention (docs/privacy.md)
        await repository.archive_staff_pings(
            session,
            datetime.combine(oldest_kept, time(0), tzinfo=UTC),
            now - timedelta(days=settings.staff_track_retention_days),
        )
    for day in days:
        if day < oldest_kept:
            await repository.drop_ping_partition(session, day)
            _known_partitions.discard(day)
            dropped.append(day.isoformat())
    return {"created": created, "dropped": dropped}


async def archive_staff_pings(session: AsyncSession, before: datetime, oldest: datetime) -> int:
    """Copy field workers' fixes in [oldest, before) to their location history (the purge
    calls it before deleting expired pings; `maintain_ping_partitions` before dropping)."""
    return await repository.archive_staff_pings(session, before, oldest)


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
    viewer_id: uuid.UUID | None = None,
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
        viewer_id=viewer_id,
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
