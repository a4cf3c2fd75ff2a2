-- hereabouts_ensure_ping_partitions: the day partitions of `pings` for [from_day, to_day],
-- created when missing (concurrent callers tolerated; at most 400 at once). Called by the ping
-- path before a write (app/presence/service.py `_ensure_partitions`) and by maintenance.
-- Applied by migrations through app/core/sqlfiles.py.
CREATE OR REPLACE FUNCTION hereabouts_ensure_ping_partitions(from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    d date := from_day;
    part text;
    created integer := 0;
BEGIN
    IF to_day - from_day > 400 THEN
        RAISE EXCEPTION 'refusing to create more than 400 ping partitions at once';
    END IF;
    WHILE d <= to_day LOOP
        part := 'pings_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF pings FOR VALUES FROM (%L) TO (%L)',
                    part,
                    to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
                    to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
                );
                created := created + 1;
            EXCEPTION WHEN duplicate_table OR invalid_object_definition THEN
                -- another transaction created it concurrently
                NULL;
            END;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END;
$fn$
