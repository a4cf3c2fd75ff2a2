-- hereabouts_claim_queued: the evaluator's claim (app/presence/evaluator.py, docs/presence.md,
-- "Asynchronous ingest"): lock up to p_max subjects with queued fixes, the subjects waiting
-- longest first, skipping any another evaluator or a synchronous batch holds (SKIP LOCKED: never
-- waited for), any without a presence_subjects row yet and any in p_exclude; then their queued
-- fixes. Applied by migrations through app/core/sqlfiles.py.
-- The subjects with queued fixes are read first, then each subject's row is locked by its key,
-- one at a time until p_max are held. On a single node this locks the same rows in the same
-- order as one `FOR UPDATE SKIP LOCKED` over a join would; on Citus, where presence_subjects is
-- distributed by subject, each lock is a single-shard statement (Citus refuses a multi-shard
-- FOR UPDATE), sent to the worker holding the subject (docs/scaling.md).
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
    v_subject uuid;
    v_claimed uuid[] := '{}';
BEGIN
    IF p_max < 1 THEN
        RETURN;
    END IF;
    FOR v_subject IN
        SELECT q.subject_id FROM ping_queue q
        WHERE q.subject_id <> ALL(p_exclude)
        GROUP BY q.subject_id ORDER BY min(q.seq)
    LOOP
        PERFORM 1 FROM presence_subjects s WHERE s.subject_id = v_subject
        FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            v_claimed := v_claimed || v_subject;
            EXIT WHEN cardinality(v_claimed) >= p_max;
        END IF;
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
