-- hereabouts_ping_read: everything a group of ping batches needs before evaluation, in one
-- statement (docs/presence.md, "The batch path"): lock the subjects, their last fix, stay and
-- presence rows, duplicate client ids, the candidate places of every fix with signed
-- distances, and the places crossed between consecutive fixes. The columns come back by
-- position in app/presence/repository.py (READ_COLUMNS, checked against this function's own
-- names by tests/core/test_sql_files.py). Applied by migrations through app/core/sqlfiles.py.
-- Every read of a per-subject table (presence_subjects, presence, pings) also says
-- `subject_id = ANY(p_subject)`: the same rows, but on Citus, where those tables are distributed
-- by subject, it lets the planner send the whole statement to the one worker holding a
-- subject's shards (a join through `unnest` alone does not; docs/scaling.md).
CREATE OR REPLACE FUNCTION hereabouts_ping_read(
    p_subject uuid[], p_kind varchar[], p_org uuid[], p_check_bg boolean[],
    p_dup_s int[], p_dup_id varchar[],
    p_s int[], p_idx int[], p_lon float8[], p_lat float8[], p_margin float8[], p_at timestamptz[],
    p_max_gap_s float8
) RETURNS TABLE (
    k text, s int, idx int, geofence_id uuid, a float8, b float8, trigger_distance_m float8,
    dwell_s int, flag boolean, state varchar, since timestamptz, last_fix_at timestamptz,
    client_id varchar, pending_since timestamptz, stay jsonb
) LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
BEGIN
    -- create-or-lock the subjects (serialises each subject's batches), in id order so that two
    -- groups sharing subjects never deadlock; a device with background location switched off
    -- is not touched when the caller checks it. An existing row is locked, not updated (the
    -- WHERE is never true: a subject's kind never changes; ON CONFLICT DO UPDATE locks every
    -- conflicting row whatever its WHERE says): an update wrote a new version of every
    -- subject's row in every set, besides the write function's own update of its last fix
    INSERT INTO presence_subjects AS ps (subject_id, subject_kind, organisation_id)
    SELECT u.subj, u.kind, u.org
    FROM unnest(p_subject, p_kind, p_org, p_check_bg) AS u(subj, kind, org, chk)
    WHERE NOT u.chk OR u.kind <> 'device'
       OR EXISTS (SELECT 1 FROM device_settings ds
                  WHERE ds.device_id = u.subj AND ds.background_location)
    ORDER BY u.subj
    ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind
        WHERE ps.subject_kind IS DISTINCT FROM EXCLUDED.subject_kind;
    -- A fresh snapshot from here on (VOLATILE function, READ COMMITTED): the reads see what a
    -- concurrent batch of these subjects committed before the locks above were granted.
    RETURN QUERY
    WITH sj AS (
        SELECT u.ord::int AS s, u.subj, p_org[u.ord] AS org, ps.last_fix_at AS at,
               ps.last_lon AS lon, ps.last_lat AS lat, ps.last_accuracy_m AS acc,
               COALESCE(ds.background_location, false) AS bg, ps.stay
        FROM unnest(p_subject) WITH ORDINALITY AS u(subj, ord)
        LEFT JOIN presence_subjects ps ON ps.subject_id = u.subj AND ps.subject_id = ANY(p_subject)
        LEFT JOIN device_settings ds ON ds.device_id = u.subj
    ), u AS (
        SELECT * FROM unnest(p_s, p_idx, p_lon, p_lat, p_margin, p_at)
             AS u(s, idx, lon, lat, margin, at)
        UNION ALL
        -- the mean of the subject's stay (idx -1), measured too: an enter on a stay's mean
        -- (app/presence/engine.py, migration 0021), against the places within their trigger
        -- distance + 25 m of it (a neighbouring building's wall: migration 0038)
        SELECT sj.s, -1, (sj.stay->>'anchor_lon')::float8, (sj.stay->>'anchor_lat')::float8,
               25::float8, sj.at
        FROM sj WHERE sj.stay->>'anchor_lon' IS NOT NULL
    ), f AS (
        SELECT u.s, u.idx, u.at, u.margin, p_org[u.s] AS org, p_subject[u.s] AS subj,
               ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) AS pt,
               floor(u.lon / 0.005) AS cx, floor(u.lat / 0.005) AS cy,
               -- metres per degree of longitude at the middle latitude of the fix's cell, on
               -- PostGIS's sphere (radius 6,371,008.8 m: radians(r) = metres per degree)
               radians(6371008.8) * cos(radians((floor(u.lat / 0.005) + 0.5) * 0.005)) AS kx,
               -- the fix in the cell's local plane, metres east and north (see `dist`)
               ST_MakePoint(
                   u.lon * radians(6371008.8) * cos(radians((floor(u.lat / 0.005) + 0.5) * 0.005)),
                   u.lat * radians(6371008.8)) AS mpt,
               -- next to the antimeridian or a pole, distances on the sphere instead
               abs(u.lon) > 179 OR abs(u.lat) > 80 AS sphere
        FROM u
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
        SELECT y.*,
               -- every place the segment crosses is among its end's cell's `near` places: it is
               -- shorter than the reach of that cell's index scan (the organisation's largest
               -- trigger distance + at least this fix's margin; local-plane metres, with 1 % and
               -- 1 m to spare), so no index scan of its own (most segments of a walk, a ride or
               -- a drive between two fixes)
               NOT y.sphere
                 AND ST_Length(y.mline) * 1.01 + 1.0
                     < (SELECT r.max_trigger FROM reach r WHERE r.org = y.org) + y.margin
                 AS in_near
        FROM (
        SELECT x.s, x.idx, x.at, x.a, x.b, x.org, x.cx, x.cy, x.kx, x.sphere, x.margin,
               ST_MakeLine(x.a, x.b) AS line,
               -- the segment in the local plane of its end's cell (as `dist`)
               ST_MakeLine(ST_MakePoint(ST_X(x.a) * x.kx, ST_Y(x.a) * radians(6371008.8)),
                           ST_MakePoint(ST_X(x.b) * x.kx, ST_Y(x.b) * radians(6371008.8)))
                 AS mline
        FROM (
            SELECT v.s, v.idx, v.at, v.org, v.cx, v.cy, v.kx, v.sphere, v.margin, v.pt AS b,
                   lag(v.pt) OVER w AS a, lag(v.at) OVER w AS prev_at
            FROM (
                SELECT sj.s, NULL::int AS idx, sj.at, sj.org, NULL::float8 AS cx,
                       NULL::float8 AS cy, NULL::float8 AS kx, NULL::boolean AS sphere,
                       NULL::float8 AS margin,
                       ST_SetSRID(ST_MakePoint(sj.lon, sj.lat), 4326) AS pt
                FROM sj WHERE sj.at IS NOT NULL
                UNION ALL
                SELECT f.s, f.idx, f.at, f.org, f.cx, f.cy, f.kx, f.sphere, f.margin, f.pt
                FROM f JOIN sj ON sj.s = f.s
                WHERE f.idx >= 0 AND (sj.at IS NULL OR f.at >= sj.at)
            ) v
            WINDOW w AS (PARTITION BY v.s ORDER BY v.at, v.idx NULLS FIRST)
        ) x
        WHERE x.idx IS NOT NULL AND x.a IS NOT NULL AND x.at > x.prev_at
          AND extract(epoch FROM x.at - x.prev_at) <= p_max_gap_s
        ) y
    ), segcell AS MATERIALIZED (
        -- the other segments' crossings the same way: one index scan for the segments ending
        -- in a cell (the box of their lines holds each line's box), then the exact test per
        -- segment
        SELECT seg.org, seg.cx, seg.cy, min(seg.kx) AS kx, ST_Collect(seg.line) AS lines
        FROM seg WHERE NOT seg.in_near GROUP BY seg.org, seg.cx, seg.cy
    ), crossed AS MATERIALIZED (
        SELECT c.org, c.cx, c.cy, g.id, g.geom, g.geog, g.active_from, g.active_until,
               ST_SetSRID(ST_Affine(g.geom, c.kx, 0, 0, radians(6371008.8), 0, 0), 0) AS mgeom
        FROM segcell c JOIN geofences g
          ON g.organisation_id = c.org AND g.deleted_at IS NULL AND g.geom && c.lines
    ), cell AS MATERIALIZED (
        -- Fixes close together (same organisation, same 0.005-degree cell) share one index
        -- scan: the box of their points widened by the organisation's reach and their largest
        -- margin holds every fix's own box, so the per-fix box test in `pairs` finds exactly
        -- the places one scan per fix would (migration 0018). A phone's 100 fixes over a
        -- walk fall in a handful of cells.
        SELECT f.org, f.cx, f.cy, min(f.kx) AS kx, ST_Collect(f.pt)::geography AS pts,
               max(f.margin) AS margin
        FROM f GROUP BY f.org, f.cx, f.cy
    ), near AS MATERIALIZED (
        -- mgeom: the place in the cell's local metric plane (metres east and north)
        SELECT c.org, c.cx, c.cy, g.id, g.geom, g.geog,
               ST_SetSRID(ST_Affine(g.geom, c.kx, 0, 0, radians(6371008.8), 0, 0), 0) AS mgeom,
               g.trigger_distance_m, g.dwell_s, g.active_from, g.active_until
        FROM cell c JOIN reach ON reach.org = c.org
        JOIN geofences g
          ON g.organisation_id = c.org AND g.deleted_at IS NULL
         AND g.geog && _ST_Expand(c.pts, reach.max_trigger + c.margin)
    ), pres_rows AS MATERIALIZED (
        -- the subjects' presence rows with their places, read once: for the 'pre' rows below
        -- (all of them) and for `pres`. Without the places' outlines: the few present places
        -- beyond a fix's reach fetch theirs in `pairs` (migration 0045: `pres` was copied with
        -- both outlines, and 'pre' read presence and the places a second time)
        SELECT sj.s, p.geofence_id AS id, p.evidence, p.pending_fixes, p.dwell_emitted,
               p.state, p.since, p.last_fix_at, p.pending_since, g.geog,
               g.trigger_distance_m, g.dwell_s, g.active_from, g.active_until,
               g.deleted_at IS NULL AS kept,
               g.organisation_id = sj.org AND g.deleted_at IS NULL AS live
        FROM sj JOIN presence p ON p.subject_id = sj.subj AND p.subject_id = ANY(p_subject)
        JOIN geofences g ON g.id = p.geofence_id
    ), pres AS NOT MATERIALIZED (
        -- the places each subject is already in or near (a place of its organisation, not
        -- deleted; kept at any distance, so exits can say how far)
        SELECT r.s, r.id, r.geog, r.trigger_distance_m, r.dwell_s, r.active_from,
               r.active_until
        FROM pres_rows r WHERE r.live
    ), pres_keys AS (
        -- `pres` as the keys of one jsonb object ('s id'): whether a pair's place is present is
        -- a binary search. A scan of `pres` per pair cost pairs x presence rows: in a set of
        -- 500 subjects' single fixes (the evaluator's) a third of the set's PostgreSQL CPU
        SELECT COALESCE(jsonb_object_agg(pres.s::text || ' ' || pres.id::text, true), '{}')
               AS m
        FROM pres
    ), pairs AS (
        -- (fix, place) pairs to measure: the places of the fix's cell whose box is within the
        -- place's own reach (trigger distance + the fix's margin) of the fix, box against box
        -- in memory (the conservative test ST_DWithin uses), and the present places
        SELECT f.s, f.idx, f.pt, f.sphere, f.mpt, f.margin, f.at, n.id, n.geom, n.geog, n.mgeom,
               n.trigger_distance_m, n.dwell_s, n.active_from, n.active_until,
               (SELECT m FROM pres_keys) ? (f.s::text || ' ' || n.id::text) AS present
        FROM f JOIN near n ON n.org = f.org AND n.cx = f.cx AND n.cy = f.cy
         AND n.geog && _ST_Expand(f.pt::geography, n.trigger_distance_m + f.margin)
        UNION ALL
        SELECT f.s, f.idx, f.pt, f.sphere, f.mpt, f.margin, f.at, p.id, g.geom, p.geog,
               ST_SetSRID(ST_Affine(g.geom, f.kx, 0, 0, radians(6371008.8), 0, 0), 0),
               p.trigger_distance_m,
               p.dwell_s, p.active_from, p.active_until, true
        FROM f JOIN pres p ON p.s = f.s
        JOIN geofences g ON g.id = p.id
        WHERE NOT p.geog && _ST_Expand(f.pt::geography, p.trigger_distance_m + f.margin)
    ), dist AS (
        -- Distances in the cell's local metric plane (equirectangular at the cell's middle
        -- latitude, on the same sphere as PostGIS's geography): a tenth of the cost of a
        -- geography distance, and within 3 cm of it up to 500 m from a place (0.03 % beyond;
        -- migration 0019, docs/presence.md). OFFSET 0 computes `d` once.
        SELECT q.*,
               CASE WHEN q.sphere THEN ST_Distance(q.geog, q.pt::geography, false)
                    ELSE ST_Distance(q.mgeom, q.mpt)
               END AS d
        FROM pairs q
        OFFSET 0
    )
    -- 'sub': each subject's last evaluated fix (a = lon, b = lat, trigger_distance_m =
    -- accuracy, last_fix_at = time), flag = background location switched on (devices), and
    -- its stay
    SELECT 'sub'::text, sj.s, NULL::int, NULL::uuid, sj.lon, sj.lat, sj.acc, NULL::int, sj.bg,
           NULL::varchar, NULL::timestamptz, sj.at, NULL::varchar, NULL::timestamptz, sj.stay
    FROM sj
    UNION ALL
    -- 'dup': a client id of the batch already stored for that subject (any partition)
    SELECT 'dup', d.s, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           pg.client_id::varchar, NULL, NULL
    FROM unnest(p_dup_s, p_dup_id) AS d(s, id)
    JOIN pings pg ON pg.subject_id = p_subject[d.s] AND pg.client_id = d.id
                 AND pg.subject_id = ANY(p_subject)
    UNION ALL
    -- 'pre': a presence row (flag = dwell emitted; state NULL when the place was deleted;
    -- a = evidence, b = pending fixes, with the first pending fix's time)
    SELECT 'pre', p.s, NULL, p.id, p.evidence, p.pending_fixes::float8,
           p.trigger_distance_m, p.dwell_s,
           p.dwell_emitted, CASE WHEN p.kept THEN p.state END, p.since,
           p.last_fix_at, NULL, p.pending_since, NULL
    FROM pres_rows p
    UNION ALL
    -- 'can': a place within reach of a fix (a = signed distance: < 0 inside by that depth), or
    -- one the subject is already in or near, at any distance (so exits can say how far)
    SELECT 'can', d.s, d.idx, d.id,
           CASE WHEN d.d > 0 THEN d.d
                WHEN d.sphere
                THEN -ST_Distance(ST_Boundary(d.geom)::geography, d.pt::geography, false)
                ELSE -ST_Distance(ST_Boundary(d.mgeom), d.mpt)
           END,
           NULL, d.trigger_distance_m, d.dwell_s,
           (d.active_from IS NULL OR d.active_from <= d.at)
             AND (d.active_until IS NULL OR d.active_until > d.at),
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM dist d
    WHERE d.present OR d.d <= d.trigger_distance_m + d.margin
    UNION ALL
    -- 'crs': a place crossed by the segment ending at fix idx (a, b = distances from its ends;
    -- trigger_distance_m = how deep the middle of the part inside lies: a line that cuts a
    -- corner stays shallow). In the local plane like `dist`; the depth only when both ends are
    -- outside (a crossing with an end inside is never a pass-through: the engine asks no more)
    SELECT 'crs', x.s, x.idx, x.id, x.from_m, x.to_m,
           CASE WHEN x.from_m > 0 AND x.to_m > 0 THEN
               CASE WHEN x.sphere
                    THEN ST_Distance(ST_Boundary(x.geom)::geography,
                                     ST_Centroid(ST_Intersection(x.geom, x.line))::geography,
                                     false)
                    ELSE ST_Distance(ST_Boundary(x.mgeom),
                                     ST_Centroid(ST_Intersection(x.mgeom, x.mline)))
               END
           END,
           NULL, x.active, NULL, NULL, NULL, NULL, NULL, NULL
    FROM (
        SELECT seg.s, seg.idx, n.id, n.geom, n.mgeom, seg.line, seg.mline, seg.sphere,
               CASE WHEN seg.sphere THEN ST_Distance(n.geog, seg.a::geography, false)
                    ELSE ST_Distance(n.mgeom, ST_StartPoint(seg.mline)) END AS from_m,
               CASE WHEN seg.sphere THEN ST_Distance(n.geog, seg.b::geography, false)
                    ELSE ST_Distance(n.mgeom, ST_EndPoint(seg.mline)) END AS to_m,
               (n.active_from IS NULL OR n.active_from <= seg.at)
                 AND (n.active_until IS NULL OR n.active_until > seg.at) AS active
        FROM seg JOIN crossed n
          ON n.org = seg.org AND n.cx = seg.cx AND n.cy = seg.cy
         AND NOT seg.in_near AND ST_Intersects(n.geom, seg.line)
        UNION ALL
        SELECT seg.s, seg.idx, n.id, n.geom, n.mgeom, seg.line, seg.mline, seg.sphere,
               ST_Distance(n.mgeom, ST_StartPoint(seg.mline)),
               ST_Distance(n.mgeom, ST_EndPoint(seg.mline)),
               (n.active_from IS NULL OR n.active_from <= seg.at)
                 AND (n.active_until IS NULL OR n.active_until > seg.at)
        FROM seg JOIN near n
          ON n.org = seg.org AND n.cx = seg.cx AND n.cy = seg.cy
         AND seg.in_near AND ST_Intersects(n.geom, seg.line)
        OFFSET 0
    ) x;
END;
$fn$
