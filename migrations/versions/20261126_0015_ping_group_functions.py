"""ping batch functions for a group of subjects at once

`hereabouts_ping_read` / `hereabouts_ping_write` (migration 0012) took one subject. Single-ping
requests arriving together from many devices are now evaluated as one group in one transaction
(app/presence/groups.py), so both functions take the group's subjects as arrays and every
per-fix, per-presence and per-event array carries the subject's ordinal (1-based) in the
group. A one-subject batch is the group of one: there is a single code path.

- The read locks the subjects in id order (two groups sharing subjects never deadlock) and
  leaves a device whose owner switched background location off untouched when asked to check it
  (`p_check_bg`, per subject): the caller refuses that request, and nothing is stored for it.
- The window that builds the crossing segments is partitioned by subject; candidate and crossing
  look-ups use each subject's own organisation.

Revision ID: 0015
Revises: 0012
Create Date: 2026-11-26 01:00:00+00:00
"""

from collections.abc import Sequence
from typing import Any

from alembic import context, op

revision: str = "0015"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


READ_FUNCTION = """
CREATE FUNCTION hereabouts_ping_read(
    p_subject uuid[], p_kind varchar[], p_org uuid[], p_check_bg boolean[],
    p_dup_s int[], p_dup_id varchar[],
    p_s int[], p_idx int[], p_lon float8[], p_lat float8[], p_margin float8[], p_at timestamptz[],
    p_max_gap_s float8
) RETURNS TABLE (
    k text, s int, idx int, geofence_id uuid, a float8, b float8, trigger_distance_m float8,
    dwell_s int, flag boolean, state varchar, since timestamptz, last_fix_at timestamptz,
    client_id varchar
) LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
BEGIN
    -- create-or-lock the subjects (serialises each subject's batches), in id order so that two
    -- groups sharing subjects never deadlock; a device with background location switched off
    -- is not touched when the caller checks it
    INSERT INTO presence_subjects AS ps (subject_id, subject_kind, organisation_id)
    SELECT u.subj, u.kind, u.org
    FROM unnest(p_subject, p_kind, p_org, p_check_bg) AS u(subj, kind, org, chk)
    WHERE NOT u.chk OR u.kind <> 'device'
       OR EXISTS (SELECT 1 FROM device_settings ds
                  WHERE ds.device_id = u.subj AND ds.background_location)
    ORDER BY u.subj
    ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind;
    -- A fresh snapshot from here on (VOLATILE function, READ COMMITTED): the reads see what a
    -- concurrent batch of these subjects committed before the locks above were granted.
    RETURN QUERY
    WITH sj AS (
        SELECT u.ord::int AS s, u.subj, p_org[u.ord] AS org, ps.last_fix_at AS at,
               ps.last_lon AS lon, ps.last_lat AS lat, ps.last_accuracy_m AS acc,
               COALESCE(ds.background_location, false) AS bg
        FROM unnest(p_subject) WITH ORDINALITY AS u(subj, ord)
        LEFT JOIN presence_subjects ps ON ps.subject_id = u.subj
        LEFT JOIN device_settings ds ON ds.device_id = u.subj
    ), f AS (
        SELECT u.s, u.idx, u.at, u.margin, p_org[u.s] AS org, p_subject[u.s] AS subj,
               ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) AS pt
        FROM unnest(p_s, p_idx, p_lon, p_lat, p_margin, p_at)
             AS u(s, idx, lon, lat, margin, at)
    ), reach AS (
        SELECT o.org, COALESCE((
            SELECT g.trigger_distance_m FROM geofences g
            WHERE g.organisation_id = o.org AND g.deleted_at IS NULL
            ORDER BY g.trigger_distance_m DESC LIMIT 1), 0) AS max_trigger
        FROM (SELECT DISTINCT unnest(p_org) AS org) o
    ), seg AS (
        -- the straight segments between consecutive fixes of each subject, starting from its
        -- last evaluated fix; fixes older than it are late and never start or end one (the
        -- caller checks this matches the evaluation's own segments and asks again otherwise)
        SELECT x.s, x.idx, x.at, x.a, x.b, x.org FROM (
            SELECT v.s, v.idx, v.at, v.org, v.pt AS b,
                   lag(v.pt) OVER w AS a, lag(v.at) OVER w AS prev_at
            FROM (
                SELECT sj.s, NULL::int AS idx, sj.at, sj.org,
                       ST_SetSRID(ST_MakePoint(sj.lon, sj.lat), 4326) AS pt
                FROM sj WHERE sj.at IS NOT NULL
                UNION ALL
                SELECT f.s, f.idx, f.at, f.org, f.pt
                FROM f JOIN sj ON sj.s = f.s
                WHERE sj.at IS NULL OR f.at >= sj.at
            ) v
            WINDOW w AS (PARTITION BY v.s ORDER BY v.at, v.idx NULLS FIRST)
        ) x
        WHERE x.idx IS NOT NULL AND x.a IS NOT NULL AND x.at > x.prev_at
          AND extract(epoch FROM x.at - x.prev_at) <= p_max_gap_s
    )
    -- 'sub': each subject's last evaluated fix (a = lon, b = lat, trigger_distance_m =
    -- accuracy, last_fix_at = time) and flag = background location switched on (devices)
    SELECT 'sub'::text, sj.s, NULL::int, NULL::uuid, sj.lon, sj.lat, sj.acc, NULL::int, sj.bg,
           NULL::varchar, NULL::timestamptz, sj.at, NULL::varchar
    FROM sj
    UNION ALL
    -- 'dup': a client id of the batch already stored for that subject (any partition)
    SELECT 'dup', d.s, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           pg.client_id::varchar
    FROM unnest(p_dup_s, p_dup_id) AS d(s, id)
    JOIN pings pg ON pg.subject_id = p_subject[d.s] AND pg.client_id = d.id
    UNION ALL
    -- 'pre': a presence row (flag = dwell emitted; state NULL when the place was deleted)
    SELECT 'pre', sj.s, NULL, p.geofence_id, NULL, NULL, g.trigger_distance_m, g.dwell_s,
           p.dwell_emitted, CASE WHEN g.deleted_at IS NULL THEN p.state END, p.since,
           p.last_fix_at, NULL
    FROM sj JOIN presence p ON p.subject_id = sj.subj JOIN geofences g ON g.id = p.geofence_id
    UNION ALL
    -- 'can': a place within reach of a fix (a = signed distance: < 0 inside by that depth), or
    -- one the subject is already in or near, at any distance (so exits can say how far)
    SELECT 'can', c.s, c.idx, c.id, c.signed_m, NULL, c.trigger_distance_m, c.dwell_s,
           c.active, NULL, NULL, NULL, NULL
    FROM (
        SELECT f.s, f.idx, c.id, c.trigger_distance_m, c.dwell_s, c.active,
               CASE WHEN c.d > 0 THEN c.d
                    ELSE -ST_Distance(ST_Boundary(c.geom)::geography, f.pt::geography, false)
               END AS signed_m
        FROM f JOIN reach ON reach.org = f.org
        JOIN LATERAL (
            SELECT g.id, g.geom, g.trigger_distance_m, g.dwell_s,
                   ST_Distance(g.geog, f.pt::geography, false) AS d,
                   (g.active_from IS NULL OR g.active_from <= f.at)
                     AND (g.active_until IS NULL OR g.active_until > f.at) AS active
            FROM geofences g
            WHERE g.organisation_id = f.org AND g.deleted_at IS NULL
              -- the index condition ST_DWithin would add, without its exact test: the
              -- distance filter below is the exact test, computing it once is ~2x faster
              AND g.geog && _ST_Expand(f.pt::geography, reach.max_trigger + f.margin)
            OFFSET 0  -- keep the subquery: otherwise `d` is inlined and computed 3 times
        ) c ON c.d <= c.trigger_distance_m + f.margin
        UNION
        SELECT f.s, f.idx, c.id, c.trigger_distance_m, c.dwell_s, c.active,
               CASE WHEN c.d > 0 THEN c.d
                    ELSE -ST_Distance(ST_Boundary(c.geom)::geography, f.pt::geography, false)
               END
        FROM f JOIN LATERAL (
            SELECT g.id, g.geom, g.trigger_distance_m, g.dwell_s,
                   ST_Distance(g.geog, f.pt::geography, false) AS d,
                   (g.active_from IS NULL OR g.active_from <= f.at)
                     AND (g.active_until IS NULL OR g.active_until > f.at) AS active
            FROM geofences g
            WHERE g.id IN (SELECT pp.geofence_id FROM presence pp
                           WHERE pp.subject_id = f.subj)
              AND g.organisation_id = f.org AND g.deleted_at IS NULL
            OFFSET 0
        ) c ON true
    ) c
    UNION ALL
    -- 'crs': a place crossed by the segment ending at fix idx (a, b = distances from its ends)
    SELECT 'crs', seg.s, seg.idx, g.id, ST_Distance(g.geog, seg.a::geography, false),
           ST_Distance(g.geog, seg.b::geography, false), NULL, NULL,
           (g.active_from IS NULL OR g.active_from <= seg.at)
             AND (g.active_until IS NULL OR g.active_until > seg.at),
           NULL, NULL, NULL, NULL
    FROM seg JOIN geofences g
      ON g.organisation_id = seg.org AND g.deleted_at IS NULL
     AND ST_Intersects(g.geom, ST_MakeLine(seg.a, seg.b));
END;
$fn$
"""

WRITE_FUNCTION = """
CREATE FUNCTION hereabouts_ping_write(
    p_subject uuid[], p_kind varchar[], p_org uuid[],
    p_s int[], p_client_id varchar[], p_recorded_at timestamptz[], p_lon float8[],
    p_lat float8[], p_accuracy_m float8[], p_speed_mps float8[], p_heading float8[],
    p_quality varchar[], p_late boolean[],
    p_del_s int[], p_delete uuid[],
    p_up_s int[], p_g uuid[], p_state varchar[], p_since timestamptz[],
    p_last_fix_at timestamptz[], p_dwell boolean[],
    p_last_s int[], p_last_at timestamptz[], p_last_lon float8[], p_last_lat float8[],
    p_last_acc float8[],
    e_s int[], e_id uuid[], e_g uuid[], e_type varchar[], e_at timestamptz[],
    e_ping_id varchar[], e_lon float8[], e_lat float8[], e_acc float8[], e_explanation jsonb[],
    e_suppressed varchar[]
) RETURNS void LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
BEGIN
    WITH ins AS (
        INSERT INTO pings (subject_id, client_id, recorded_at, subject_kind, organisation_id,
                           lon, lat, accuracy_m, speed_mps, heading, quality, late)
        SELECT p_subject[u.s], u.client_id, u.recorded_at, p_kind[u.s], p_org[u.s], u.lon,
               u.lat, u.accuracy_m, u.speed_mps, u.heading, u.quality, u.late
        FROM unnest(p_s, p_client_id, p_recorded_at, p_lon, p_lat, p_accuracy_m,
                    p_speed_mps, p_heading, p_quality, p_late)
             AS u(s, client_id, recorded_at, lon, lat, accuracy_m, speed_mps, heading,
                  quality, late)
        ON CONFLICT DO NOTHING
    ), del AS (
        DELETE FROM presence p USING unnest(p_del_s, p_delete) AS d(s, g)
        WHERE p.subject_id = p_subject[d.s] AND p.geofence_id = d.g
    ), ups AS (
        INSERT INTO presence (subject_id, geofence_id, subject_kind, organisation_id, state,
                              since, last_fix_at, dwell_emitted)
        SELECT p_subject[u.s], u.g, p_kind[u.s], p_org[u.s], u.state, u.since,
               u.last_fix_at, u.dwell
        FROM unnest(p_up_s, p_g, p_state, p_since, p_last_fix_at, p_dwell)
             AS u(s, g, state, since, last_fix_at, dwell)
        ON CONFLICT (subject_id, geofence_id) DO UPDATE SET state = EXCLUDED.state,
            since = EXCLUDED.since, last_fix_at = EXCLUDED.last_fix_at,
            dwell_emitted = EXCLUDED.dwell_emitted, updated_at = now()
    ), subj AS (
        UPDATE presence_subjects ps
        SET last_fix_at = u.at, last_lon = u.lon, last_lat = u.lat,
            last_accuracy_m = u.acc, updated_at = now()
        FROM unnest(p_last_s, p_last_at, p_last_lon, p_last_lat, p_last_acc)
             AS u(s, at, lon, lat, acc)
        WHERE ps.subject_id = p_subject[u.s]
    )
    INSERT INTO presence_events (id, organisation_id, device_id, staff_user_id, geofence_id,
                                 type, source, occurred_at, ping_id, lon, lat, accuracy_m,
                                 explanation, suppressed_reason)
    SELECT u.id, p_org[u.s], CASE WHEN p_kind[u.s] = 'device' THEN p_subject[u.s] END,
           CASE WHEN p_kind[u.s] = 'staff' THEN p_subject[u.s] END, u.g, u.type, 'ping', u.at,
           u.ping_id, u.lon, u.lat, u.acc, u.explanation, u.suppressed
    FROM unnest(e_s, e_id, e_g, e_type, e_at, e_ping_id,
                e_lon, e_lat, e_acc, e_explanation, e_suppressed)
         AS u(s, id, g, type, at, ping_id, lon, lat, acc, explanation, suppressed);
END;
$fn$
"""


def _previous(revision: str) -> Any:
    """Another migration's module, as Alembic loaded it (downgrade restores its functions)."""
    script = context.script.get_revision(revision)
    assert script is not None
    return script.module


def upgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS hereabouts_ping_write")
    op.execute("DROP FUNCTION IF EXISTS hereabouts_ping_read")
    op.execute(READ_FUNCTION)
    op.execute(WRITE_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS hereabouts_ping_write")
    op.execute("DROP FUNCTION IF EXISTS hereabouts_ping_read")
    previous = _previous("0012")
    op.execute(previous.READ_FUNCTION)
    op.execute(previous.WRITE_FUNCTION)
