"""All SQL of the presence domain: the event log, pings, presence and the batch resolver.

The ping batch path is set-based: each function below is ONE statement for the whole batch
(arrays in, `unnest` + `LATERAL` joins inside), so a batch costs a constant number of round
trips whatever its size.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection
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
# A batch costs two statements whatever its size: `hereabouts_ping_read` (lock the subject, then
# duplicates + presence + candidate places + crossed places) and `hereabouts_ping_write` (pings +
# presence + last fix + events). Both are SQL functions (migration 0012: the SQL and why it is a
# function) sent as raw asyncpg statements on the request's own connection and transaction
# (app.core.db.driver_connection): SQLAlchemy's per-statement work was over half of a single
# ping's Python time. asyncpg prepares each statement text once per connection.

READ_SQL = "SELECT * FROM hereabouts_ping_read($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
WRITE_SQL = (
    "SELECT hereabouts_ping_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
    " $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
)

# Only when the batch's segments are not the ones the read function assumed (a fix flagged as
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
       (g.active_from IS NULL OR g.active_from <= s.at)
         AND (g.active_until IS NULL OR g.active_until > s.at) AS active
FROM s JOIN geofences g
  ON g.organisation_id = $1 AND g.deleted_at IS NULL
 AND ST_Intersects(g.geom, ST_MakeLine(s.a, s.b))
"""


@dataclass
class FixColumns:
    """The fixes to resolve against the places (column arrays, one element per fix)."""

    idx: list[int]
    lon: list[float]
    lat: list[float]
    margin: list[float]
    at: list[datetime]


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


async def read_batch(
    session: AsyncSession,
    subject_id: uuid.UUID,
    kind: str,
    organisation_id: uuid.UUID,
    client_ids: list[str],
    fixes: FixColumns,
    max_gap_s: float,
) -> BatchView:
    """Lock the subject, then read everything one batch's evaluation needs, in one statement.

    Crossings are for the segments between consecutive fixes (in time order, starting from the
    last evaluated fix, fixes older than it left out, gaps in (0, max_gap_s]).
    """
    conn = await driver_connection(session)
    rows = await conn.fetch(
        READ_SQL,
        subject_id,
        kind,
        organisation_id,
        client_ids,
        fixes.idx,
        fixes.lon,
        fixes.lat,
        fixes.margin,
        fixes.at,
        max_gap_s,
    )
    view = BatchView()
    for r in rows:
        k = r["k"]
        if k == "can":
            view.candidates.setdefault(r["idx"], []).append(
                Candidate(
                    r["geofence_id"], r["a"], r["trigger_distance_m"], r["dwell_s"], r["flag"]
                )
            )
        elif k == "crs":
            view.crossings.setdefault(r["idx"], []).append(
                Crossing(r["idx"], r["geofence_id"], r["a"], r["b"], r["flag"])
            )
        elif k == "pre":
            if r["state"] is None:
                view.deleted.add(r["geofence_id"])
            else:
                view.states[r["geofence_id"]] = State(
                    r["geofence_id"],
                    PresenceState(r["state"]),
                    r["since"],
                    r["last_fix_at"],
                    r["flag"],
                    r["trigger_distance_m"],
                    r["dwell_s"],
                )
        elif k == "dup":
            view.duplicates.add(r["client_id"])
        else:  # "sub"
            view.background_location = bool(r["flag"])
            if r["last_fix_at"] is not None:
                view.last = LastFix(r["last_fix_at"], r["a"], r["b"], r["trigger_distance_m"])
    return view


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
            Crossing(r["idx"], r["geofence_id"], r["from_m"], r["to_m"], r["active"])
        )
    return out


async def write_batch(
    session: AsyncSession,
    subject_id: uuid.UUID,
    kind: str,
    organisation_id: uuid.UUID,
    pings: PingRows,
    delete: list[uuid.UUID],
    upsert: list[State],
    last: LastFix | None,
    events: list[dict[str, Any]],
) -> None:
    """Store the batch's pings, presence, last fix (if changed) and events in one statement.

    The parts touch different rows (`delete` and `upsert` are disjoint), so the order in which
    PostgreSQL runs them does not matter.
    """
    conn = await driver_connection(session)
    await conn.execute(
        WRITE_SQL,
        subject_id,
        kind,
        organisation_id,
        pings.client_id,
        pings.recorded_at,
        pings.lon,
        pings.lat,
        pings.accuracy_m,
        pings.speed_mps,
        pings.heading,
        pings.quality,
        pings.late,
        delete,
        [st.geofence_id for st in upsert],
        [st.state.value for st in upsert],
        [st.since for st in upsert],
        [st.last_fix_at for st in upsert],
        [st.dwell_emitted for st in upsert],
        last.recorded_at if last else None,
        last.lon if last else None,
        last.lat if last else None,
        last.accuracy_m if last else None,
        [e["id"] for e in events],
        [e["geofence_id"] for e in events],
        [e["type"] for e in events],
        [e["occurred_at"] for e in events],
        [e["ping_id"] for e in events],
        [e["lon"] for e in events],
        [e["lat"] for e in events],
        [e["accuracy_m"] for e in events],
        [json.dumps(e["explanation"]) for e in events],
        [e["suppressed_reason"] for e in events],
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
