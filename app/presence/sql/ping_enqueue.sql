-- hereabouts_ping_enqueue: the fixes of a group of requests answered 202, queued in one
-- statement (docs/presence.md, "Two modes"; app/presence/acks.py groups the requests): per
-- subject whether it may send (a device needs background location on when `p_check`), a
-- `presence_subjects` row for a subject new to presence (an existing one is left alone: nothing
-- is locked), and the fixes not already queued or stored. Returns one row per subject (k, ok,
-- NULL) and one per fix queued (k, true, its client id). Applied by migrations through
-- app/core/sqlfiles.py.
-- A function for its cached generic plan (`plan_cache_mode`): as a plain prepared statement
-- PostgreSQL planned it afresh at every execution (a custom plan for its parameters), about
-- 0.23 ms of CPU per group, more than the work of a group of three fixes.
CREATE OR REPLACE FUNCTION hereabouts_ping_enqueue(
    p_subject uuid[], p_kind text[], p_org uuid[], p_check boolean[],
    p_k int[], p_client_id text[], p_recorded_at timestamptz[], p_lon float8[], p_lat float8[],
    p_accuracy_m float8[], p_speed_mps float8[], p_heading float8[]
) RETURNS TABLE (k int, ok boolean, client_id text)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH subj AS (
        SELECT s.id, s.kind, s.org, s.checks, s.k
        FROM unnest(p_subject, p_kind, p_org, p_check) WITH ORDINALITY AS s(id, kind, org, checks, k)
    ), allowed AS (
        SELECT s.*, (NOT s.checks OR s.kind = 'staff' OR COALESCE(d.background_location, false))
                 AS ok
        FROM subj s LEFT JOIN device_settings d ON d.device_id = s.id
    ), subjects AS (
        INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id)
        SELECT a.id, a.kind, a.org FROM allowed a
        WHERE a.ok AND NOT EXISTS (SELECT 1 FROM presence_subjects p WHERE p.subject_id = a.id)
        ON CONFLICT (subject_id) DO NOTHING
    ), ins AS (
        INSERT INTO ping_queue (subject_id, subject_kind, organisation_id, client_id,
                                recorded_at, lon, lat, accuracy_m, speed_mps, heading)
        SELECT a.id, a.kind, a.org, u.cid, u.rat, u.lon, u.lat, u.acc, u.spd, u.hdg
        FROM unnest(p_k, p_client_id, p_recorded_at, p_lon, p_lat, p_accuracy_m, p_speed_mps,
                    p_heading) AS u(k, cid, rat, lon, lat, acc, spd, hdg)
        JOIN allowed a ON a.k = u.k
        WHERE a.ok
          AND NOT EXISTS (SELECT 1 FROM pings p WHERE p.subject_id = a.id AND p.client_id = u.cid)
        ON CONFLICT (subject_id, client_id) DO NOTHING
        RETURNING subject_id, client_id
    )
    SELECT a.k::int, a.ok, NULL::text FROM allowed a
    UNION ALL
    SELECT a.k::int, true, i.client_id::text FROM ins i JOIN allowed a ON a.id = i.subject_id;
END;
$fn$
