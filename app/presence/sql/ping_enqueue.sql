-- hereabouts_ping_enqueue: the fixes of a group of requests answered 202, queued in one
-- statement (docs/presence.md, "Two modes"; app/presence/acks.py groups the requests): per
-- subject whether it may send (a device needs background location on when `p_check`), a
-- `presence_subjects` row for a subject new to presence (an existing one is left alone: nothing
-- is locked), and the fixes not already queued or stored. Returns one row per subject (k, ok,
-- NULL) and one per fix queued (k, true, its client id). Applied by migrations through
-- app/core/sqlfiles.py.
-- A function for its cached generic plan (`plan_cache_mode`): as a plain prepared statement
-- PostgreSQL planned it afresh at every execution (a custom plan for its parameters), about
-- 0.23 ms of CPU per group, more than the work of a group of three fixes. On Citus every
-- hereabouts_* function is planned per call instead (app/core/citus.py).
-- Duplicates are found as the ping read finds them (the batch's ids joined to pings by subject
-- and id, and `subject_id = ANY(p_subject)`) and new subjects with an anti-join filtered the
-- same way, not with correlated subqueries: Citus refuses those next to unnest, and with the
-- filters it reads only the subjects' shards of pings and presence_subjects (migration 0042,
-- docs/scaling.md). Hash and merge joins are off so that the generic plan probes the pings
-- index per id (with the subject filter it read all of the subjects' pings).
CREATE OR REPLACE FUNCTION hereabouts_ping_enqueue(
    p_subject uuid[], p_kind text[], p_org uuid[], p_check boolean[],
    p_k int[], p_client_id text[], p_recorded_at timestamptz[], p_lon float8[], p_lat float8[],
    p_accuracy_m float8[], p_speed_mps float8[], p_heading float8[]
) RETURNS TABLE (k int, ok boolean, client_id text)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off SET enable_mergejoin = off AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH subj AS (
        SELECT s.id, s.kind, s.org, s.checks, s.k
        FROM unnest(p_subject, p_kind, p_org, p_check)
             WITH ORDINALITY AS s(id, kind, org, checks, k)
    ), allowed AS (
        SELECT s.*, (NOT s.checks OR s.kind = 'staff' OR COALESCE(d.background_location, false))
                 AS ok
        FROM subj s LEFT JOIN device_settings d ON d.device_id = s.id
    ), subjects AS (
        INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id)
        SELECT a.id, a.kind, a.org FROM allowed a
        LEFT JOIN presence_subjects p ON p.subject_id = a.id AND p.subject_id = ANY(p_subject)
        WHERE a.ok AND p.subject_id IS NULL
        ON CONFLICT (subject_id) DO NOTHING
    ), dup AS (
        -- the positions of the batch's ids already stored for their subject (any partition),
        -- as the ping read finds them (by position: Citus typed the columns of a two-array
        -- unnest here by the first array's type when it passed them on)
        SELECT d.i
        FROM generate_subscripts(p_client_id, 1) AS d(i)
        JOIN pings p ON p.subject_id = p_subject[p_k[d.i]] AND p.client_id = p_client_id[d.i]
                    AND p.subject_id = ANY(p_subject)
    ), ins AS (
        INSERT INTO ping_queue (subject_id, subject_kind, organisation_id, client_id,
                                recorded_at, lon, lat, accuracy_m, speed_mps, heading)
        SELECT a.id, a.kind, a.org, u.cid, u.rat, u.lon, u.lat, u.acc, u.spd, u.hdg
        FROM unnest(p_k, p_client_id, p_recorded_at, p_lon, p_lat, p_accuracy_m, p_speed_mps,
                    p_heading) WITH ORDINALITY AS u(k, cid, rat, lon, lat, acc, spd, hdg, i)
        JOIN allowed a ON a.k = u.k
        LEFT JOIN dup ON dup.i = u.i
        WHERE a.ok AND dup.i IS NULL
        ON CONFLICT (subject_id, client_id) DO NOTHING
        RETURNING ping_queue.subject_id, ping_queue.client_id
    )
    SELECT a.k::int, a.ok, NULL::text FROM allowed a
    UNION ALL
    SELECT a.k::int, true, i.client_id::text FROM ins i JOIN allowed a ON a.id = i.subject_id;
END;
$fn$
