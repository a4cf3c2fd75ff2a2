-- hereabouts_claim_queued: the evaluator's claim (app/presence/evaluator.py, docs/presence.md,
-- "Asynchronous ingest"): lock up to p_max subjects with queued fixes, the subjects waiting
-- longest first, skipping any another evaluator or a synchronous batch holds (SKIP LOCKED: never
-- waited for), any without a presence_subjects row yet and any in p_exclude; then their queued
-- fixes. Applied by migrations through app/core/sqlfiles.py.
-- The subjects with queued fixes are read first, in order; then the next as many as are still
-- wanted are locked by their keys (`subject_id = ANY(…) FOR UPDATE SKIP LOCKED`), again until
-- p_max are held or none is left (a read that found fewer than wanted was the last): the first p_max subjects not held elsewhere, as one
-- `FOR UPDATE SKIP LOCKED … LIMIT` over a join would lock them. Citus refuses a multi-shard
-- FOR UPDATE, so where presence_subjects is distributed (docs/scaling.md) each lock statement
-- takes the subjects of one shard: a single-shard statement, sent to the worker holding them.
-- The fixes are read after the locks, with a fresh snapshot: a subject another evaluator
-- released just before the lock here shows only the fixes still queued.
CREATE OR REPLACE FUNCTION hereabouts_claim_queued(p_max int, p_exclude uuid[])
RETURNS TABLE (
    seq bigint, subject_id uuid, subject_kind varchar, organisation_id uuid, client_id varchar,
    recorded_at timestamptz, lon float8, lat float8, accuracy_m float8, speed_mps float8,
    heading float8, received_at timestamptz
) LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_seen int := 0;
    v_want int;
    v_batch uuid[];
    v_shard uuid[];
    v_claimed uuid[] := '{}';
    -- Citus: presence_subjects is placed (by subject, or a reference table's one shard)
    v_sharded boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');
BEGIN
    LOOP
        v_want := p_max - cardinality(v_claimed);
        EXIT WHEN v_want <= 0;
        -- the next subjects in line (a top-N sort, as the LIMIT of one locking join does); a
        -- subject seen again because the queue moved meanwhile is not locked twice
        v_batch := ARRAY(
            SELECT h.subject_id
            FROM (SELECT q.subject_id, min(q.seq) AS first_seq FROM ping_queue q
                  WHERE q.subject_id <> ALL(p_exclude) GROUP BY q.subject_id) h
            ORDER BY h.first_seq OFFSET v_seen LIMIT v_want);
        EXIT WHEN cardinality(v_batch) = 0;
        v_seen := v_seen + cardinality(v_batch);
        IF NOT v_sharded THEN
            v_claimed := v_claimed || ARRAY(
                SELECT s.subject_id FROM presence_subjects s
                WHERE s.subject_id = ANY(v_batch) AND s.subject_id <> ALL(v_claimed)
                FOR UPDATE SKIP LOCKED);
        ELSE
            FOR v_shard IN
                SELECT array_agg(b.id)
                FROM unnest(v_batch) AS b(id)
                GROUP BY get_shard_id_for_distribution_column('presence_subjects', b.id)
            LOOP
                v_claimed := v_claimed || ARRAY(
                    SELECT s.subject_id FROM presence_subjects s
                    WHERE s.subject_id = ANY(v_shard) AND s.subject_id <> ALL(v_claimed)
                    FOR UPDATE SKIP LOCKED);
            END LOOP;
        END IF;
        -- fewer in line than wanted: nobody else waits (one queued meanwhile is the next claim's)
        EXIT WHEN cardinality(v_batch) < v_want;
    END LOOP;
    IF cardinality(v_claimed) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT q.seq, q.subject_id, q.subject_kind, q.organisation_id, q.client_id, q.recorded_at,
           q.lon, q.lat, q.accuracy_m, q.speed_mps, q.heading, q.received_at
    FROM ping_queue q WHERE q.subject_id = ANY(v_claimed)
    ORDER BY q.subject_id, q.recorded_at, q.client_id;
END;
$fn$
