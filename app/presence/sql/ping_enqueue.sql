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
-- On Citus (`citus.version` is set only where Citus is loaded) the function takes a branch of
-- per-subject statements instead, each routed to one worker (migration 0043, docs/scaling.md).
CREATE OR REPLACE FUNCTION hereabouts_ping_enqueue(
    p_subject uuid[], p_kind text[], p_org uuid[], p_check boolean[],
    p_k int[], p_client_id text[], p_recorded_at timestamptz[], p_lon float8[], p_lat float8[],
    p_accuracy_m float8[], p_speed_mps float8[], p_heading float8[]
) RETURNS TABLE (k int, ok boolean, client_id text)
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan
SET enable_hashjoin = off SET enable_mergejoin = off AS $fn$
#variable_conflict use_column
DECLARE
    v_k int;
    v_i int;
    v_ok boolean;
    v_cid text;
BEGIN
    IF current_setting('citus.version', true) IS NOT NULL THEN
        -- Citus (migration 0043): the same rows, one subject at a time, in statements that each
        -- name the subject as a constant, so every one is routed to the one worker holding its
        -- shards (ping_queue, pings and presence_subjects are co-located by subject) and a
        -- request's enqueue commits there without a two-phase commit. The set-based statement
        -- below made Citus plan each CTE apart and send its results to every worker.
        FOR v_k IN 1 .. cardinality(p_subject) LOOP
            v_ok := NOT p_check[v_k] OR p_kind[v_k] = 'staff' OR COALESCE(
                (SELECT d.background_location FROM device_settings d
                 WHERE d.device_id = p_subject[v_k]), false);
            k := v_k; ok := v_ok; client_id := NULL;
            RETURN NEXT;
            CONTINUE WHEN NOT v_ok;
            INSERT INTO presence_subjects (subject_id, subject_kind, organisation_id)
            VALUES (p_subject[v_k], p_kind[v_k], p_org[v_k])
            ON CONFLICT (subject_id) DO NOTHING;
            FOR v_i IN SELECT g.i FROM generate_subscripts(p_k, 1) AS g(i)
                       WHERE p_k[g.i] = v_k ORDER BY g.i LOOP
                CONTINUE WHEN EXISTS (SELECT 1 FROM pings p WHERE p.subject_id = p_subject[v_k]
                                      AND p.client_id = p_client_id[v_i]);
                v_cid := NULL;
                INSERT INTO ping_queue (subject_id, subject_kind, organisation_id, client_id,
                                        recorded_at, lon, lat, accuracy_m, speed_mps, heading)
                VALUES (p_subject[v_k], p_kind[v_k], p_org[v_k], p_client_id[v_i],
                        p_recorded_at[v_i], p_lon[v_i], p_lat[v_i], p_accuracy_m[v_i],
                        p_speed_mps[v_i], p_heading[v_i])
                ON CONFLICT (subject_id, client_id) DO NOTHING
                RETURNING ping_queue.client_id INTO v_cid;
                CONTINUE WHEN v_cid IS NULL;
                k := v_k; ok := true; client_id := v_cid;
                RETURN NEXT;
            END LOOP;
        END LOOP;
        RETURN;
    END IF;
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
