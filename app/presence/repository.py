"""All SQL of the presence domain: the event log, pings, presence and the batch resolver.

The ping batch path is set-based: each function below is ONE statement for the whole batch
(arrays in, `unnest` + `LATERAL` joins inside), so a batch costs a constant number of round
trips whatever its size.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import Row, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection
from app.presence.engine import Candidate, Crossing, LastFix, State, Stay
from app.presence.models import PRESENCE_LAST_FIX_AT, PresenceEvent, PresenceState

PARTITION_NAME = re.compile(r"^pings_p(\d{8})$")


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert many events in one statement (Core, not one ORM object per row)."""
    if rows:
        await session.execute(insert(PresenceEvent), rows)


# --- device settings -------------------------------------------------------------------------


async def background_location_enabled(session: AsyncSession, device_id: uuid.UUID) -> bool:
    value = await session.scalar(
        text("SELECT background_location FROM device_settings WHERE device_id = :d"),
        {"d": device_id},
    )
    return bool(value)


async def set_background_location(
    session: AsyncSession, device_id: uuid.UUID, enabled: bool
) -> None:
    await session.execute(
        text(
            "INSERT INTO device_settings (device_id, background_location) VALUES (:d, :e) "
            "ON CONFLICT (device_id) DO UPDATE "
            "SET background_location = EXCLUDED.background_location, "
            "updated_at = EXCLUDED.updated_at"
        ),
        {"d": device_id, "e": enabled},
    )


async def last_fix(session: AsyncSession, subject_id: uuid.UUID) -> LastFix | None:
    """The subject's last evaluated (good) fix, without locking."""
    row = (
        await session.execute(
            text(
                "SELECT last_fix_at, last_lon, last_lat, last_accuracy_m FROM presence_subjects "
                "WHERE subject_id = :s"
            ),
            {"s": subject_id},
        )
    ).first()
    if row is None or row.last_fix_at is None:
        return None
    return LastFix(row.last_fix_at, row.last_lon, row.last_lat, row.last_accuracy_m)


async def ensure_ping_partitions(session: AsyncSession, from_day: date, to_day: date) -> int:
    """Create any missing day partitions in [from_day, to_day] (UTC); returns how many."""
    created = await session.scalar(
        text("SELECT hereabouts_ensure_ping_partitions(:a, :b)"), {"a": from_day, "b": to_day}
    )
    return int(created or 0)


async def ping_partition_days(session: AsyncSession) -> list[date]:
    rows = await session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass('pings')"
        )
    )
    days = []
    for name in rows:
        m = PARTITION_NAME.match(name)
        if m:
            days.append(datetime.strptime(m.group(1), "%Y%m%d").date())
    return sorted(days)


async def drop_ping_partition(session: AsyncSession, day: date) -> None:
    name = f"pings_p{day:%Y%m%d}"
    assert PARTITION_NAME.match(name)
    await session.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


async def archive_staff_pings(session: AsyncSession, before: datetime, oldest: datetime) -> int:
    """Copy field workers' fixes recorded in [oldest, before) from `pings` to the staff
    location history (`staff_track_points`) before they are dropped or deleted; returns how
    many were new there. Residents' fixes are never copied."""
    result = await session.execute(
        text(
            "WITH a AS (INSERT INTO staff_track_points (staff_user_id, client_id, recorded_at, "
            "organisation_id, lon, lat, accuracy_m, speed_mps, heading, quality, received_at) "
            "SELECT p.subject_id, p.client_id, p.recorded_at, p.organisation_id, p.lon, p.lat, "
            "p.accuracy_m, p.speed_mps, p.heading, p.quality, p.received_at FROM pings p "
            "JOIN staff_users s ON s.id = p.subject_id "
            "WHERE p.subject_kind = 'staff' AND p.recorded_at < :before "
            "AND p.recorded_at >= :oldest "
            "ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM a"
        ),
        {"before": before, "oldest": oldest},
    )
    return int(result.scalar_one())


@dataclass
class PingRows:
    """Column arrays for one batch of new pings (one element per ping)."""

    client_id: list[str]
    recorded_at: list[datetime]
    lon: list[float]
    lat: list[float]
    accuracy_m: list[float | None]
    speed_mps: list[float | None]
    heading: list[float | None]
    quality: list[str]
    late: list[bool]


# --- the batch path ---------------------------------------------------------------------------
#
# A group of batches (one per subject: a request's pings, or single-ping requests from many
# devices arriving together) costs two statements whatever its size: `hereabouts_ping_read`
# (lock the subjects, then duplicates + presence + candidate places + crossed places) and
# `hereabouts_ping_write` (pings + presence + last fixes + events). Both are SQL functions
# (their text: app/presence/sql/ping_read.sql and ping_write.sql; why functions: migrations 0012
# and 0015) sent as raw asyncpg statements on
# the caller's connection and transaction (app.core.db.driver_connection): SQLAlchemy's
# per-statement work was over half of a single ping's Python time. asyncpg prepares each
# statement text once per connection. Every array carries the subject's ordinal in the group
# (1-based), so one statement serves any number of subjects.

READ_SQL = "SELECT * FROM hereabouts_ping_read(" + ", ".join(f"${i}" for i in range(1, 14)) + ")"
# The read's columns, in its order: rows are unpacked by position (a 100-fix batch returns a
# few hundred rows, and a record's lookup by name costs more than the rest of the loop), so
# tests/core/test_sql_files.py checks these names against the function's own.
READ_COLUMNS = (
    "k",
    "s",
    "idx",
    "geofence_id",
    "a",
    "b",
    "trigger_distance_m",
    "dwell_s",
    "flag",
    "state",
    "since",
    "last_fix_at",
    "client_id",
    "pending_since",
    "stay",
)
WRITE_SQL = "SELECT hereabouts_ping_write(" + ", ".join(f"${i}" for i in range(1, 42)) + ")"

# How far beyond its trigger distance a place is measured from a stay's mean: the engine's
# indoor rule asks how near a neighbouring place's wall is (ping_read.sql has the same 25 m).
ANCHOR_REACH_M = 25.0

# Only when a batch reaches a new stay milestone (app/presence/engine.py, `stay_anchors`): the
# places within their trigger distance + ANCHOR_REACH_M of the stays' means (the ping read
# measures the stored one). Geography distances, signed like the read's candidates.
POINTS_SQL = """
WITH u AS (
    SELECT u.k, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326)::geography AS pt
    FROM unnest($2::int[], $3::float8[], $4::float8[]) AS u(k, lon, lat)
), reach AS (
    SELECT COALESCE((
        SELECT g.trigger_distance_m FROM geofences g
        WHERE g.organisation_id = $1 AND g.deleted_at IS NULL
        ORDER BY g.trigger_distance_m DESC LIMIT 1), 0) AS max_trigger
), near AS (
    SELECT u.k, u.pt, g.id, g.geom, g.trigger_distance_m, g.dwell_s,
           (g.active_from IS NULL OR g.active_from <= $5)
             AND (g.active_until IS NULL OR g.active_until > $5) AS active,
           ST_Distance(g.geog, u.pt, false) AS d
    FROM u CROSS JOIN reach
    JOIN geofences g ON g.organisation_id = $1 AND g.deleted_at IS NULL
     AND ST_DWithin(g.geog, u.pt, reach.max_trigger + $6, false)
)
SELECT n.k, n.id AS geofence_id,
       CASE WHEN n.d > 0 THEN n.d
            ELSE -ST_Distance(ST_Boundary(n.geom)::geography, n.pt, false) END AS signed_m,
       n.trigger_distance_m, n.dwell_s, n.active
FROM near n WHERE n.d <= n.trigger_distance_m + $6
"""

# Only when a batch's segments are not the ones the read function assumed (a fix flagged as
# an implausible jump sits between two good ones): the places crossed by the given segments.
CROSSINGS_SQL = """
WITH s AS (
    SELECT u.idx, u.at,
           ST_SetSRID(ST_MakePoint(u.alon, u.alat), 4326) AS a,
           ST_SetSRID(ST_MakePoint(u.blon, u.blat), 4326) AS b
    FROM unnest($2::int[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                $7::timestamptz[]) AS u(idx, alon, alat, blon, blat, at)
)
SELECT s.idx, g.id AS geofence_id,
       ST_Distance(g.geog, s.a::geography, false) AS from_m,
       ST_Distance(g.geog, s.b::geography, false) AS to_m,
       ST_Distance(ST_Boundary(g.geom)::geography,
                   ST_Centroid(ST_Intersection(g.geom, ST_MakeLine(s.a, s.b)))::geography,
                   false) AS depth_m,
       (g.active_from IS NULL OR g.active_from <= s.at)
         AND (g.active_until IS NULL OR g.active_until > s.at) AS active
FROM s JOIN geofences g
  ON g.organisation_id = $1 AND g.deleted_at IS NULL
 AND ST_Intersects(g.geom, ST_MakeLine(s.a, s.b))
"""


@dataclass(frozen=True)
class SubjectKey:
    """Whose batch: a device or staff user, its kind ('device'/'staff') and organisation."""

    id: uuid.UUID
    kind: str
    organisation_id: uuid.UUID


@dataclass
class FixColumns:
    """The fixes to resolve against the places (column arrays, one element per fix)."""

    idx: list[int]
    lon: list[float]
    lat: list[float]
    margin: list[float]
    at: list[datetime]


@dataclass
class BatchRead:
    """One subject's part of a group read."""

    subject: SubjectKey
    client_ids: list[str]  # to check for duplicates (already stored ids)
    fixes: FixColumns
    check_background_location: bool = False  # leave the subject untouched when it is off


@dataclass
class BatchView:
    """What the database knows that one batch's evaluation needs (the read function's answer)."""

    last: LastFix | None = None  # the subject's last evaluated fix
    background_location: bool = False
    duplicates: set[str] = field(default_factory=set)
    states: dict[uuid.UUID, State] = field(default_factory=dict)
    deleted: set[uuid.UUID] = field(default_factory=set)  # presence at places since deleted
    candidates: dict[int, list[Candidate]] = field(default_factory=dict)
    crossings: dict[int, list[Crossing]] = field(default_factory=dict)
    stay: Stay | None = None  # where the subject has stayed put
    anchor_candidates: list[Candidate] = field(default_factory=list)  # places near its mean


def _subject_arrays(subjects: list[SubjectKey]) -> tuple[list[Any], list[str], list[Any]]:
    return (
        [s.id for s in subjects],
        [s.kind for s in subjects],
        [s.organisation_id for s in subjects],
    )


async def read_batches(
    session: AsyncSession, batches: list[BatchRead], max_gap_s: float
) -> list[BatchView]:
    """Lock the subjects, then read everything their batches' evaluation needs: one statement.

    Subjects must be distinct. Crossings are for the segments between each subject's
    consecutive fixes (in time order, starting from its last evaluated fix, fixes older than it
    left out, gaps in (0, max_gap_s]). Views come back in the order of `batches`.
    """
    ids, kinds, orgs = _subject_arrays([b.subject for b in batches])
    dup_s: list[int] = []
    dup_id: list[str] = []
    f_s: list[int] = []
    for s, b in enumerate(batches, start=1):
        dup_s += [s] * len(b.client_ids)
        dup_id += b.client_ids
        f_s += [s] * len(b.fixes.idx)
    conn = await driver_connection(session)
    rows = await conn.fetch(
        READ_SQL,
        ids,
        kinds,
        orgs,
        [b.check_background_location for b in batches],
        dup_s,
        dup_id,
        f_s,
        [i for b in batches for i in b.fixes.idx],
        [v for b in batches for v in b.fixes.lon],
        [v for b in batches for v in b.fixes.lat],
        [v for b in batches for v in b.fixes.margin],
        [v for b in batches for v in b.fixes.at],
        max_gap_s,
    )
    views = [BatchView() for _ in batches]
    # by position, in READ_COLUMNS' order
    for k, s, idx, gid, a, b, trigger, dwell_s, flag, state, since, last_at, cid, pend, sty in rows:
        view = views[s - 1]
        if k == "can" and idx < 0:  # the stay's mean
            view.anchor_candidates.append(Candidate(gid, a, trigger, dwell_s, flag))
        elif k == "can":
            cands = view.candidates.get(idx)
            if cands is None:
                cands = view.candidates[idx] = []
            cands.append(Candidate(gid, a, trigger, dwell_s, flag))
        elif k == "crs":
            view.crossings.setdefault(idx, []).append(Crossing(idx, gid, a, b, flag, trigger))
        elif k == "pre":
            if state is None:
                view.deleted.add(gid)
            else:
                view.states[gid] = State(
                    gid,
                    PresenceState(state),
                    since,
                    last_at,
                    flag,
                    trigger,
                    dwell_s,
                    a,
                    int(b),
                    pend,
                )
        elif k == "dup":
            view.duplicates.add(cid)
        else:  # "sub"
            view.background_location = bool(flag)
            if last_at is not None:
                view.last = LastFix(last_at, a, b, trigger)
            if sty is not None:
                view.stay = Stay.from_json(orjson.loads(sty) if isinstance(sty, str) else sty)
    return views


async def resolve_crossings(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    segments: list[tuple[int, float, float, float, float, datetime]],
) -> dict[int, list[Crossing]]:
    """Places crossed by the given segments (to-fix idx, from lon/lat, to lon/lat, to time)."""
    out: dict[int, list[Crossing]] = {}
    if not segments:
        return out
    cols = [list(c) for c in zip(*segments, strict=True)]
    conn = await driver_connection(session)
    for r in await conn.fetch(CROSSINGS_SQL, organisation_id, *cols):
        out.setdefault(r["idx"], []).append(
            Crossing(r["idx"], r["geofence_id"], r["from_m"], r["to_m"], r["active"], r["depth_m"])
        )
    return out


async def resolve_points(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    points: list[tuple[float, float]],
    at: datetime,
) -> dict[tuple[float, float], list[Candidate]]:
    """Places within their trigger distance of each point (lon, lat), active at `at`."""
    out: dict[tuple[float, float], list[Candidate]] = {p: [] for p in points}
    if not points:
        return out
    conn = await driver_connection(session)
    rows = await conn.fetch(
        POINTS_SQL,
        organisation_id,
        list(range(len(points))),
        [p[0] for p in points],
        [p[1] for p in points],
        at,
        ANCHOR_REACH_M,
    )
    for r in rows:
        out[points[r["k"]]].append(
            Candidate(
                r["geofence_id"], r["signed_m"], r["trigger_distance_m"], r["dwell_s"], r["active"]
            )
        )
    return out


@dataclass
class BatchWrite:
    """One subject's part of a group write."""

    subject: SubjectKey
    pings: PingRows
    delete: list[uuid.UUID]  # presence rows to remove (disjoint from `upsert`)
    upsert: list[State]
    last: LastFix | None  # the new last evaluated fix, when it changed
    events: list[dict[str, Any]]
    stay: Stay | None = None  # the subject's stay after the batch (written with `last`)


def _json_text(value: Any) -> str:
    """JSON text for a jsonb parameter: orjson (a tenth of `json.dumps`' time for an event's
    explanation or a stay); non-string keys written as strings, as `json.dumps` does."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def write_batches(session: AsyncSession, batches: list[BatchWrite]) -> None:
    """Store the batches' pings, presence, last fixes and events in one statement.

    The parts touch different rows (per subject, `delete` and `upsert` are disjoint), so the
    order in which PostgreSQL runs them does not matter. Subjects must be distinct.
    """
    ids, kinds, orgs = _subject_arrays([b.subject for b in batches])
    ping_s: list[int] = []
    del_s: list[int] = []
    up_s: list[int] = []
    last_s: list[int] = []
    ev_s: list[int] = []
    for s, b in enumerate(batches, start=1):
        ping_s += [s] * len(b.pings.client_id)
        del_s += [s] * len(b.delete)
        up_s += [s] * len(b.upsert)
        if b.last is not None:
            last_s.append(s)
        ev_s += [s] * len(b.events)
    lasts = [b.last for b in batches if b.last is not None]
    events = [e for b in batches for e in b.events]
    states = [st for b in batches for st in b.upsert]
    conn = await driver_connection(session)
    await conn.execute(
        WRITE_SQL,
        ids,
        kinds,
        orgs,
        ping_s,
        [v for b in batches for v in b.pings.client_id],
        [v for b in batches for v in b.pings.recorded_at],
        [v for b in batches for v in b.pings.lon],
        [v for b in batches for v in b.pings.lat],
        [v for b in batches for v in b.pings.accuracy_m],
        [v for b in batches for v in b.pings.speed_mps],
        [v for b in batches for v in b.pings.heading],
        [v for b in batches for v in b.pings.quality],
        [v for b in batches for v in b.pings.late],
        del_s,
        [g for b in batches for g in b.delete],
        up_s,
        [st.geofence_id for st in states],
        [st.state.value for st in states],
        [st.since for st in states],
        [st.last_fix_at for st in states],
        [st.dwell_emitted for st in states],
        [st.evidence for st in states],
        [st.pending_fixes for st in states],
        [st.pending_since for st in states],
        last_s,
        [f.recorded_at for f in lasts],
        [f.lon for f in lasts],
        [f.lat for f in lasts],
        [f.accuracy_m for f in lasts],
        [
            _json_text(b.stay.to_json()) if b.stay is not None else None
            for b in batches
            if b.last is not None
        ],
        ev_s,
        [e["id"] for e in events],
        [e["geofence_id"] for e in events],
        [e["type"] for e in events],
        [e["occurred_at"] for e in events],
        [e["ping_id"] for e in events],
        [e["lon"] for e in events],
        [e["lat"] for e in events],
        [e["accuracy_m"] for e in events],
        [_json_text(e["explanation"]) for e in events],
        [e["suppressed_reason"] for e in events],
    )


# --- the asynchronous ingest: queue, claim, release --------------------------------------------
#
# A 202 answer means the fixes are in `ping_queue` (migration 0028), committed. The evaluator
# (app/presence/evaluator.py) claims whole subjects with `FOR UPDATE SKIP LOCKED` on their
# `presence_subjects` row (the same row lock the synchronous path takes first), evaluates their
# queued fixes through the batch path above and deletes exactly the rows it read, in the same
# transaction as the pings, presence, last fix (the subject's watermark) and events it writes.

# Many subjects' fixes in one statement (each array element carries its subject's ordinal): the
# requests acknowledged together share it and one commit (app/presence/acks.py). A subject new
# to presence gets its `presence_subjects` row here (nothing is locked: an existing row is left
# alone), so the evaluator can claim it. The statement is a function
# (app/presence/sql/ping_enqueue.sql) for its cached generic plan.
ENQUEUE_SQL = (
    "SELECT * FROM hereabouts_ping_enqueue(" + ", ".join(f"${i}" for i in range(1, 13)) + ")"
)

# A subject with queued fixes and no presence_subjects row yet gets one, so it can be claimed.
ENSURE_QUEUED_SUBJECTS_SQL = """
INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id)
SELECT DISTINCT q.subject_id, q.subject_kind, q.organisation_id FROM ping_queue q
LEFT JOIN presence_subjects s ON s.subject_id = q.subject_id
WHERE s.subject_id IS NULL
ON CONFLICT (subject_id) DO NOTHING
"""

# The subjects waiting longest first, up to $1 of them, none of $2; a subject another evaluator
# holds (or a synchronous batch is evaluating) is skipped, never waited for. The function
# (app/presence/sql/claim_queued.sql) locks each subject's row by its key, so on Citus every lock
# is a single-shard statement.
CLAIM_SQL = "SELECT * FROM hereabouts_claim_queued($1, $2)"


@dataclass(frozen=True)
class QueuedRow:
    seq: int
    subject: SubjectKey
    client_id: str
    recorded_at: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    speed_mps: float | None
    heading: float | None
    received_at: datetime


@dataclass
class QueueWrite:
    """One subject's fixes to queue (one request's)."""

    subject: SubjectKey
    pings: PingRows
    check_background_location: bool


async def enqueue_pings(
    session: AsyncSession, batches: list[QueueWrite], *, autocommit: bool = False
) -> list[tuple[bool, list[str]]]:
    """Queue the subjects' fixes (one statement); per batch: (allowed, the ids stored).

    Subjects must be distinct. Ids already queued or already stored in `pings` are left out
    (duplicates). A device whose background location is off stores nothing (not allowed).
    `autocommit`: when the session has not begun its transaction, the statement is its own
    (committed by the database as it completes: no BEGIN and COMMIT round trips).
    """
    ids, kinds, orgs = _subject_arrays([b.subject for b in batches])
    ks: list[int] = []
    for k, b in enumerate(batches, start=1):
        ks += [k] * len(b.pings.client_id)
    conn = await driver_connection(session, transaction=not autocommit)
    rows = await conn.fetch(
        ENQUEUE_SQL,
        ids,
        kinds,
        orgs,
        [b.check_background_location for b in batches],
        ks,
        [v for b in batches for v in b.pings.client_id],
        [v for b in batches for v in b.pings.recorded_at],
        [v for b in batches for v in b.pings.lon],
        [v for b in batches for v in b.pings.lat],
        [v for b in batches for v in b.pings.accuracy_m],
        [v for b in batches for v in b.pings.speed_mps],
        [v for b in batches for v in b.pings.heading],
    )
    out: list[tuple[bool, list[str]]] = [(False, []) for _ in batches]
    for k, ok, cid in rows:
        allowed, stored = out[k - 1]
        if cid is None:
            out[k - 1] = (bool(ok), stored)
        else:
            stored.append(cid)
    return out


async def ensure_queued_subjects(session: AsyncSession) -> None:
    """Give every subject with queued fixes a `presence_subjects` row (to claim it by)."""
    conn = await driver_connection(session)
    await conn.execute(ENSURE_QUEUED_SUBJECTS_SQL)


async def claim_queued(
    session: AsyncSession, max_subjects: int, exclude: list[uuid.UUID] | None = None
) -> list[QueuedRow]:
    """Lock up to `max_subjects` subjects with queued fixes (SKIP LOCKED, none of `exclude`);
    their queued rows."""
    conn = await driver_connection(session)
    rows = await conn.fetch(CLAIM_SQL, max_subjects, exclude or [])
    return [
        QueuedRow(
            r["seq"],
            SubjectKey(r["subject_id"], r["subject_kind"], r["organisation_id"]),
            r["client_id"],
            r["recorded_at"],
            r["lon"],
            r["lat"],
            r["accuracy_m"],
            r["speed_mps"],
            r["heading"],
            r["received_at"],
        )
        for r in rows
    ]


# The claimed rows by their keys; the subjects too, so that on Citus (the queue distributed by
# subject, migration 0043) the delete goes to the claimed subjects' shards only, not to every
# shard. The same rows on a single node (`seq` is unique).
DELETE_QUEUED_SQL = (
    "DELETE FROM ping_queue WHERE subject_id = ANY($1::uuid[]) AND seq = ANY($2::bigint[])"
)


async def delete_queued(session: AsyncSession, rows: list[QueuedRow]) -> None:
    """Release evaluated fixes: exactly the rows claimed (in the evaluating transaction)."""
    if rows:
        conn = await driver_connection(session)
        subjects = list(dict.fromkeys(r.subject.id for r in rows))
        await conn.execute(DELETE_QUEUED_SQL, subjects, [r.seq for r in rows])


async def queued_count(session: AsyncSession) -> int:
    value = await session.scalar(text("SELECT count(*) FROM ping_queue"))
    return int(value or 0)


# --- reads ------------------------------------------------------------------------------------


async def presence_of(session: AsyncSession, subject_id: uuid.UUID) -> list[Row[Any]]:
    rows = await session.execute(
        text(
            "SELECT p.geofence_id, g.name, g.category, p.state, p.since,"
            f" {PRESENCE_LAST_FIX_AT} AS last_fix_at, p.dwell_emitted "
            "FROM presence p JOIN geofences g ON g.id = p.geofence_id "
            "JOIN presence_subjects ps"
            " ON ps.subject_id = p.subject_id AND ps.subject_id = :s "
            "WHERE p.subject_id = :s AND g.deleted_at IS NULL AND p.state <> 'outside' "
            "ORDER BY p.since DESC, p.geofence_id"
        ),
        {"s": subject_id},
    )
    return list(rows)


EVENT_COLUMNS = (
    "id, organisation_id, device_id, staff_user_id, geofence_id, type, source, occurred_at,"
    " ping_id, checkin_id, lon, lat, accuracy_m, explanation, suppressed_reason, created_at"
)


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
) -> list[Row[Any]]:
    """Newest first by (occurred_at, id); `after` is the keyset cursor of the previous page.
    With `viewer_id`, other staff members' events are left out (their location history is
    not for colleagues or supervisors: docs/privacy.md, "Staff")."""
    where = ["organisation_id = :org"]
    params: dict[str, Any] = {"org": organisation_id, "limit": limit}
    if viewer_id is not None:
        where.append("(staff_user_id IS NULL OR staff_user_id = :viewer)")
        params["viewer"] = viewer_id
    if geofence_id is not None:
        where.append("geofence_id = :g")
        params["g"] = geofence_id
    if types:
        where.append("type = ANY(CAST(:types AS varchar[]))")
        params["types"] = types
    if since is not None:
        where.append("occurred_at >= :since")
        params["since"] = since
    if until is not None:
        where.append("occurred_at < :until")
        params["until"] = until
    if not include_suppressed:
        where.append("suppressed_reason IS NULL")
    if after is not None:
        where.append("(occurred_at, id) < (:ca, :ci)")
        params["ca"], params["ci"] = after
    sql = (
        f"SELECT {EVENT_COLUMNS} FROM presence_events WHERE {' AND '.join(where)} "
        "ORDER BY occurred_at DESC, id DESC LIMIT :limit"
    )
    return list(await session.execute(text(sql), params))


async def events_created_after(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID],
    limit: int,
) -> list[Row[Any]]:
    """Events created after the (created_at, id) key, oldest first (the console stream)."""
    return list(
        await session.execute(
            text(
                f"SELECT {EVENT_COLUMNS} FROM presence_events "
                "WHERE organisation_id = :org AND (created_at, id) > (:ca, :ci) "
                "AND suppressed_reason IS NULL "
                "ORDER BY created_at, id LIMIT :limit"
            ),
            {"org": organisation_id, "ca": after[0], "ci": after[1], "limit": limit},
        )
    )


async def db_now(session: AsyncSession) -> datetime:
    value = await session.scalar(text("SELECT now()"))
    assert isinstance(value, datetime)
    return value


async def erase_subject(session: AsyncSession, subject_id: uuid.UUID) -> None:
    """Every ping, presence row and event about one device or staff user (right to erasure).

    The subject's `presence_subjects` row is locked first, as the evaluator claims a subject
    (there with SKIP LOCKED): an evaluation of its queued fixes in flight finishes before the
    erasure deletes, and a later one skips the subject. Deleting in another order deadlocked
    with an evaluation of the same subject (found by tests/ingest/test_key_cache.py).
    """
    await session.execute(
        text("SELECT 1 FROM presence_subjects WHERE subject_id = :s FOR UPDATE"), {"s": subject_id}
    )
    for sql in (
        "DELETE FROM pings WHERE subject_id = :s",
        "DELETE FROM ping_queue WHERE subject_id = :s",
        "DELETE FROM presence WHERE subject_id = :s",
        "DELETE FROM presence_subjects WHERE subject_id = :s",
        "DELETE FROM presence_events WHERE device_id = :s OR staff_user_id = :s",
        "DELETE FROM device_settings WHERE device_id = :s",
    ):
        await session.execute(text(sql), {"s": subject_id})
