"""All SQL of the presence domain: the event log, pings, presence and the batch resolver.

The ping batch path is set-based: each function below is ONE statement for the whole batch
(arrays in, `unnest` + `LATERAL` joins inside), so a batch costs a constant number of round
trips whatever its size.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.presence.engine import Candidate, Crossing, LastFix, State
from app.presence.models import PresenceEvent, PresenceState

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
            "SET background_location = EXCLUDED.background_location, updated_at = now()"
        ),
        {"d": device_id, "e": enabled},
    )


# --- the batch path ---------------------------------------------------------------------------


async def lock_subject(
    session: AsyncSession, subject_id: uuid.UUID, kind: str, organisation_id: uuid.UUID
) -> LastFix | None:
    """Create-or-lock the subject's row (serialises its batches) and return its last fix."""
    row = (
        await session.execute(
            text(
                "INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id) "
                "VALUES (:s, :k, :o) "
                "ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind "
                "RETURNING last_fix_at, last_lon, last_lat, last_accuracy_m"
            ),
            {"s": subject_id, "k": kind, "o": organisation_id},
        )
    ).one()
    if row.last_fix_at is None:
        return None
    return LastFix(row.last_fix_at, row.last_lon, row.last_lat, row.last_accuracy_m)


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


async def update_subject(session: AsyncSession, subject_id: uuid.UUID, last: LastFix) -> None:
    await session.execute(
        text(
            "UPDATE presence_subjects SET last_fix_at = :t, last_lon = :lon, last_lat = :lat, "
            "last_accuracy_m = :acc, updated_at = now() WHERE subject_id = :s"
        ),
        {
            "s": subject_id,
            "t": last.recorded_at,
            "lon": last.lon,
            "lat": last.lat,
            "acc": last.accuracy_m,
        },
    )


async def existing_ping_ids(
    session: AsyncSession, subject_id: uuid.UUID, client_ids: list[str]
) -> set[str]:
    """Client ids already stored for this subject, in any partition (the idempotency check)."""
    if not client_ids:
        return set()
    rows = await session.scalars(
        text(
            "SELECT client_id FROM pings "
            "WHERE subject_id = :s AND client_id = ANY(CAST(:ids AS varchar[]))"
        ),
        {"s": subject_id, "ids": client_ids},
    )
    return set(rows)


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


async def insert_pings(
    session: AsyncSession,
    subject_id: uuid.UUID,
    kind: str,
    organisation_id: uuid.UUID,
    rows: PingRows,
) -> None:
    if not rows.client_id:
        return
    await session.execute(
        text(
            "INSERT INTO pings (subject_id, client_id, recorded_at, subject_kind, organisation_id,"
            " lon, lat, accuracy_m, speed_mps, heading, quality, late) "
            "SELECT :s, u.client_id, u.recorded_at, :k, :o, u.lon, u.lat, u.accuracy_m,"
            " u.speed_mps, u.heading, u.quality, u.late "
            "FROM unnest(CAST(:client_id AS varchar[]), CAST(:recorded_at AS timestamptz[]),"
            " CAST(:lon AS float8[]), CAST(:lat AS float8[]), CAST(:accuracy_m AS float8[]),"
            " CAST(:speed_mps AS float8[]), CAST(:heading AS float8[]),"
            " CAST(:quality AS varchar[]), CAST(:late AS boolean[]))"
            " AS u(client_id, recorded_at, lon, lat, accuracy_m, speed_mps, heading, quality, late)"
            " ON CONFLICT DO NOTHING"
        ),
        {
            "s": subject_id,
            "k": kind,
            "o": organisation_id,
            "client_id": rows.client_id,
            "recorded_at": rows.recorded_at,
            "lon": rows.lon,
            "lat": rows.lat,
            "accuracy_m": rows.accuracy_m,
            "speed_mps": rows.speed_mps,
            "heading": rows.heading,
            "quality": rows.quality,
            "late": rows.late,
        },
    )


async def load_presence(
    session: AsyncSession, subject_id: uuid.UUID
) -> tuple[dict[uuid.UUID, State], set[uuid.UUID]]:
    """The subject's presence rows, and those whose place has since been deleted."""
    rows = await session.execute(
        text(
            "SELECT p.geofence_id, p.state, p.since, p.last_fix_at, p.dwell_emitted,"
            " g.trigger_distance_m, g.dwell_s, g.deleted_at IS NOT NULL AS deleted "
            "FROM presence p JOIN geofences g ON g.id = p.geofence_id "
            "WHERE p.subject_id = :s"
        ),
        {"s": subject_id},
    )
    states: dict[uuid.UUID, State] = {}
    deleted: set[uuid.UUID] = set()
    for r in rows:
        if r.deleted:
            deleted.add(r.geofence_id)
            continue
        states[r.geofence_id] = State(
            r.geofence_id,
            PresenceState(r.state),
            r.since,
            r.last_fix_at,
            r.dwell_emitted,
            r.trigger_distance_m,
            r.dwell_s,
        )
    return states, deleted


# The reach of the index search for a fix is the organisation's largest trigger distance plus the
# fix's exit margin: every place that can change this subject's presence lies within it (a place
# it is in or near that is *not* returned is farther than trigger + margin, i.e. left).
# The signed distance is the geodesic distance outside, and minus the depth inside.
RESOLVE_SQL = text(
    """
WITH f AS (
    SELECT u.idx, u.at, u.margin,
           ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) AS pt
    FROM unnest(CAST(:idx AS int[]), CAST(:lon AS float8[]), CAST(:lat AS float8[]),
                CAST(:margin AS float8[]), CAST(:at AS timestamptz[]))
         AS u(idx, lon, lat, margin, at)
), reach AS (
    SELECT COALESCE((
        SELECT trigger_distance_m FROM geofences
        WHERE organisation_id = :org AND deleted_at IS NULL
        ORDER BY trigger_distance_m DESC LIMIT 1), 0) AS max_trigger
)
SELECT f.idx, c.id AS geofence_id, c.trigger_distance_m, c.dwell_s, c.active,
       CASE WHEN c.d > 0 THEN c.d
            ELSE -ST_Distance(ST_Boundary(c.geom)::geography, f.pt::geography, false)
       END AS signed_m
FROM f CROSS JOIN reach
JOIN LATERAL (
    SELECT g.id, g.geom, g.trigger_distance_m, g.dwell_s,
           ST_Distance(g.geog, f.pt::geography, false) AS d,
           (g.active_from IS NULL OR g.active_from <= f.at)
             AND (g.active_until IS NULL OR g.active_until > f.at) AS active
    FROM geofences g
    WHERE g.organisation_id = :org AND g.deleted_at IS NULL
      -- the index condition ST_DWithin would add, without its exact test: the distance
      -- filter below is the exact test, and computing the distance once is ~2x faster
      AND g.geog && _ST_Expand(f.pt::geography, reach.max_trigger + f.margin)
    OFFSET 0  -- keep the subquery: otherwise `d` is inlined and computed three times
) c ON c.d <= c.trigger_distance_m + f.margin
UNION
-- the places the subject is already in or near, at any distance (exits explain how far);
-- the same expressions as above, so a place found by both branches is one row after UNION
SELECT f.idx, c.id, c.trigger_distance_m, c.dwell_s, c.active,
       CASE WHEN c.d > 0 THEN c.d
            ELSE -ST_Distance(ST_Boundary(c.geom)::geography, f.pt::geography, false) END
FROM f JOIN LATERAL (
    SELECT g.id, g.geom, g.trigger_distance_m, g.dwell_s,
           ST_Distance(g.geog, f.pt::geography, false) AS d,
           (g.active_from IS NULL OR g.active_from <= f.at)
             AND (g.active_until IS NULL OR g.active_until > f.at) AS active
    FROM geofences g
    WHERE g.id = ANY(CAST(:present AS uuid[]))
      AND g.organisation_id = :org AND g.deleted_at IS NULL
    OFFSET 0
) c ON true
"""
)


async def resolve_fixes(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    idx: list[int],
    lon: list[float],
    lat: list[float],
    margin: list[float],
    at: list[datetime],
    present: list[uuid.UUID],
) -> dict[int, list[Candidate]]:
    """Every fix of a batch against the organisation's places, in one statement."""
    out: dict[int, list[Candidate]] = {}
    if not idx:
        return out
    rows = await session.execute(
        RESOLVE_SQL,
        {
            "org": organisation_id,
            "idx": idx,
            "lon": lon,
            "lat": lat,
            "margin": margin,
            "at": at,
            "present": present,
        },
    )
    for r in rows:
        out.setdefault(r.idx, []).append(
            Candidate(r.geofence_id, r.signed_m, r.trigger_distance_m, r.dwell_s, r.active)
        )
    return out


CROSSINGS_SQL = text(
    """
WITH s AS (
    SELECT u.idx, u.at,
           ST_SetSRID(ST_MakePoint(u.alon, u.alat), 4326) AS a,
           ST_SetSRID(ST_MakePoint(u.blon, u.blat), 4326) AS b
    FROM unnest(CAST(:idx AS int[]), CAST(:alon AS float8[]), CAST(:alat AS float8[]),
                CAST(:blon AS float8[]), CAST(:blat AS float8[]), CAST(:at AS timestamptz[]))
         AS u(idx, alon, alat, blon, blat, at)
)
SELECT s.idx, g.id AS geofence_id,
       ST_Distance(g.geog, s.a::geography, false) AS from_m,
       ST_Distance(g.geog, s.b::geography, false) AS to_m,
       (g.active_from IS NULL OR g.active_from <= s.at)
         AND (g.active_until IS NULL OR g.active_until > s.at) AS active
FROM s
JOIN LATERAL (
    SELECT g.* FROM geofences g
    WHERE g.organisation_id = :org AND g.deleted_at IS NULL
      AND ST_Intersects(g.geom, ST_MakeLine(s.a, s.b))
) g ON true
"""
)


async def resolve_crossings(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    segments: list[tuple[int, float, float, float, float, datetime]],
) -> dict[int, list[Crossing]]:
    """Places crossed by the straight segments between consecutive fixes, in one statement."""
    out: dict[int, list[Crossing]] = {}
    if not segments:
        return out
    cols = list(zip(*segments, strict=True))
    rows = await session.execute(
        CROSSINGS_SQL,
        {
            "org": organisation_id,
            "idx": list(cols[0]),
            "alon": list(cols[1]),
            "alat": list(cols[2]),
            "blon": list(cols[3]),
            "blat": list(cols[4]),
            "at": list(cols[5]),
        },
    )
    for r in rows:
        out.setdefault(r.idx, []).append(Crossing(r.idx, r.geofence_id, r.from_m, r.to_m, r.active))
    return out


async def delete_presence(
    session: AsyncSession, subject_id: uuid.UUID, geofence_ids: list[uuid.UUID]
) -> None:
    if geofence_ids:
        await session.execute(
            text(
                "DELETE FROM presence WHERE subject_id = :s "
                "AND geofence_id = ANY(CAST(:g AS uuid[]))"
            ),
            {"s": subject_id, "g": geofence_ids},
        )


async def upsert_presence(
    session: AsyncSession,
    subject_id: uuid.UUID,
    kind: str,
    organisation_id: uuid.UUID,
    states: list[State],
) -> None:
    if not states:
        return
    await session.execute(
        text(
            "INSERT INTO presence (subject_id, geofence_id, subject_kind, organisation_id, state,"
            " since, last_fix_at, dwell_emitted) "
            "SELECT :s, u.g, :k, :o, u.state, u.since, u.last_fix_at, u.dwell "
            "FROM unnest(CAST(:g AS uuid[]), CAST(:state AS varchar[]),"
            " CAST(:since AS timestamptz[]), CAST(:last AS timestamptz[]),"
            " CAST(:dwell AS boolean[])) AS u(g, state, since, last_fix_at, dwell) "
            "ON CONFLICT (subject_id, geofence_id) DO UPDATE SET state = EXCLUDED.state,"
            " since = EXCLUDED.since, last_fix_at = EXCLUDED.last_fix_at,"
            " dwell_emitted = EXCLUDED.dwell_emitted, updated_at = now()"
        ),
        {
            "s": subject_id,
            "k": kind,
            "o": organisation_id,
            "g": [st.geofence_id for st in states],
            "state": [st.state.value for st in states],
            "since": [st.since for st in states],
            "last": [st.last_fix_at for st in states],
            "dwell": [st.dwell_emitted for st in states],
        },
    )


# --- reads ------------------------------------------------------------------------------------


async def presence_of(session: AsyncSession, subject_id: uuid.UUID) -> list[Row[Any]]:
    rows = await session.execute(
        text(
            "SELECT p.geofence_id, g.name, g.category, p.state, p.since, p.last_fix_at,"
            " p.dwell_emitted "
            "FROM presence p JOIN geofences g ON g.id = p.geofence_id "
            "WHERE p.subject_id = :s AND g.deleted_at IS NULL "
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
) -> list[Row[Any]]:
    """Newest first by (occurred_at, id); `after` is the keyset cursor of the previous page."""
    where = ["organisation_id = :org"]
    params: dict[str, Any] = {"org": organisation_id, "limit": limit}
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
    """Every ping, presence row and event about one device or staff user (right to erasure)."""
    for sql in (
        "DELETE FROM pings WHERE subject_id = :s",
        "DELETE FROM presence WHERE subject_id = :s",
        "DELETE FROM presence_subjects WHERE subject_id = :s",
        "DELETE FROM presence_events WHERE device_id = :s OR staff_user_id = :s",
        "DELETE FROM device_settings WHERE device_id = :s",
    ):
        await session.execute(text(sql), {"s": subject_id})
