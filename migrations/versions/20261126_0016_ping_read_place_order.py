"""ping read: distances measured place by place (PostGIS's polygon cache), one candidate pass

The candidate look-up of `hereabouts_ping_read` (migration 0015) measured, fix by fix, the
geography distance to every place in reach, then in a second pass to every place the subject
was already in or near. Geography distances to polygons were ~70 % of the look-up on the bench
city (18 µs each); PostGIS caches a polygon's edge tree when the same polygon comes in
consecutive calls, which a fix-by-fix loop never does. Now the (fix, place) pairs of both
passes are collected first (deduplicated) and measured sorted by place. Same rows out
(checked on 20 bench batches of 100 fixes: identical answers), ~30 % less time for the look-up.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26 02:00:00+00:00
"""

from collections.abc import Sequence
from typing import Any

from alembic import context, op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


READ_FUNCTION = """
CREATE OR REPLACE FUNCTION hereabouts_ping_read(
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
    ), pairs AS (
        -- (fix, place) pairs to measure: the places whose box is within reach of the fix (the
        -- geography GiST index; reach = the organisation's largest trigger distance + the
        -- fix's margin), and the places the subject is already in or near (`present`: kept at
        -- any distance, so exits can say how far)
        SELECT p.s, p.idx, p.id, bool_or(p.present) AS present
        FROM (
            SELECT f.s, f.idx, g.id, false AS present
            FROM f JOIN reach ON reach.org = f.org
            JOIN geofences g
              ON g.organisation_id = f.org AND g.deleted_at IS NULL
             AND g.geog && _ST_Expand(f.pt::geography, reach.max_trigger + f.margin)
            UNION ALL
            SELECT f.s, f.idx, pp.geofence_id, true
            FROM f JOIN presence pp ON pp.subject_id = f.subj
        ) p
        GROUP BY p.s, p.idx, p.id
    ), dist AS (
        -- Distances measured place by place: PostGIS keeps a polygon's edge tree between
        -- consecutive calls with the same polygon, so sorting the pairs by place makes every
        -- distance after a place's first one cheap (~30 % off the whole look-up on the bench
        -- city, migration 0016). OFFSET 0 keeps the order and computes `d` once.
        SELECT q.*, ST_Distance(q.geog, q.pt::geography, false) AS d
        FROM (
            SELECT pr.s, pr.idx, pr.present, f.pt, f.margin, f.at, g.id, g.geom, g.geog,
                   g.trigger_distance_m, g.dwell_s, g.active_from, g.active_until
            FROM pairs pr
            JOIN f ON f.s = pr.s AND f.idx = pr.idx
            JOIN geofences g
              ON g.id = pr.id AND g.organisation_id = f.org AND g.deleted_at IS NULL
            ORDER BY g.id
            OFFSET 0
        ) q
        OFFSET 0
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
    SELECT 'can', d.s, d.idx, d.id,
           CASE WHEN d.d > 0 THEN d.d
                ELSE -ST_Distance(ST_Boundary(d.geom)::geography, d.pt::geography, false)
           END,
           NULL, d.trigger_distance_m, d.dwell_s,
           (d.active_from IS NULL OR d.active_from <= d.at)
             AND (d.active_until IS NULL OR d.active_until > d.at),
           NULL, NULL, NULL, NULL
    FROM dist d
    WHERE d.present OR d.d <= d.trigger_distance_m + d.margin
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


def _previous(revision: str) -> Any:
    """Another migration's module, as Alembic loaded it (downgrade restores its functions)."""
    script = context.script.get_revision(revision)
    assert script is not None
    return script.module


def upgrade() -> None:
    op.execute(READ_FUNCTION)


def downgrade() -> None:
    op.execute(
        _previous("0015").READ_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    )
