-- hereabouts_ping_write: one group of evaluated ping batches in one statement: the pings,
-- presence upserts and deletes, each subject's last fix and stay, and the events
-- (docs/presence.md, "The batch path"). Applied by migrations through app/core/sqlfiles.py.
-- The deletes and updates of per-subject tables also say `subject_id = ANY(p_subject)`, as in
-- hereabouts_ping_read: on Citus they then go to the subjects' shards only, not to all of them.
CREATE OR REPLACE FUNCTION hereabouts_ping_write(
    p_subject uuid[], p_kind varchar[], p_org uuid[],
    p_s int[], p_client_id varchar[], p_recorded_at timestamptz[], p_lon float8[],
    p_lat float8[], p_accuracy_m float8[], p_speed_mps float8[], p_heading float8[],
    p_quality varchar[], p_late boolean[],
    p_del_s int[], p_delete uuid[],
    p_up_s int[], p_g uuid[], p_state varchar[], p_since timestamptz[],
    p_last_fix_at timestamptz[], p_dwell boolean[], p_evidence float8[], p_pending int[],
    p_pending_since timestamptz[],
    p_last_s int[], p_last_at timestamptz[], p_last_lon float8[], p_last_lat float8[],
    p_last_acc float8[], p_last_stay jsonb[],
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
          AND p.subject_id = ANY(p_subject)
    ), ups AS (
        INSERT INTO presence (subject_id, geofence_id, subject_kind, organisation_id, state,
                              since, last_fix_at, dwell_emitted, evidence, pending_fixes,
                              pending_since)
        SELECT p_subject[u.s], u.g, p_kind[u.s], p_org[u.s], u.state, u.since,
               u.last_fix_at, u.dwell, u.evidence, u.pending, u.pending_since
        FROM unnest(p_up_s, p_g, p_state, p_since, p_last_fix_at, p_dwell, p_evidence,
                    p_pending, p_pending_since)
             AS u(s, g, state, since, last_fix_at, dwell, evidence, pending, pending_since)
        ON CONFLICT (subject_id, geofence_id) DO UPDATE SET state = EXCLUDED.state,
            since = EXCLUDED.since, last_fix_at = EXCLUDED.last_fix_at,
            dwell_emitted = EXCLUDED.dwell_emitted, evidence = EXCLUDED.evidence,
            pending_fixes = EXCLUDED.pending_fixes, pending_since = EXCLUDED.pending_since,
            updated_at = now()
    ), subj AS (
        UPDATE presence_subjects ps
        SET last_fix_at = u.at, last_lon = u.lon, last_lat = u.lat,
            last_accuracy_m = u.acc, stay = u.stay, updated_at = now()
        FROM unnest(p_last_s, p_last_at, p_last_lon, p_last_lat, p_last_acc, p_last_stay)
             AS u(s, at, lon, lat, acc, stay)
        WHERE ps.subject_id = p_subject[u.s] AND ps.subject_id = ANY(p_subject)
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
