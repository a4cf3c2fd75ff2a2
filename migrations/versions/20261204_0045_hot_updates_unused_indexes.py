"""presence: room for HOT updates, two unused indexes dropped, the read's presence rows read once

Per evaluated fix the write (`hereabouts_ping_write`) updates the subject's `presence_subjects`
row (its last fix and stay) and, on a map where a fix lies in or near several places, several
`presence` rows (their last fix, evidence, pending fixes). None of the columns it updates is
indexed, so each update can be a HOT update (no new index entries, less WAL), but only when the
row's page has room for the new version: with the default fillfactor (100) the pages were full
and 95 % of them were not. Both tables now leave 30 % of each page free. Only pages written
from now on: a table's existing pages keep their fill until rewritten (VACUUM FULL, pg_repack)
or emptied.

Two indexes were written on every fix and read by no statement (`pg_stat_user_indexes` after
the bench: `idx_scan` 0): `ix_pings_org_recorded` (pings by organisation and time: the
retention purge and the staff archive select by `recorded_at`, which the day partitions
answer; everything else by subject, the primary key) and `ix_ping_queue_organisation_id` (the
queue by organisation: only the foreign key's cascade would use it, and the queue holds a few
seconds of fixes, which an organisation's deletion scans).

`hereabouts_ping_read` (app/presence/sql/ping_read.sql) reads the set's presence rows with
their places once (`pres_rows`), for its 'pre' rows and for the places each subject is present
at (`pres`), and without the places' outlines: `pres` was copied with both (geometry and
geography) for every presence row, 'pre' joined presence and the places a second time, and
only the few present places beyond a fix's reach need an outline (fetched there). The same
rows.

docs/benchmarks.md ("Per fix, by statement: HOT updates, two unused indexes, the read's
presence rows (issue 25)") has the figures.

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-04 04:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core.sqlfiles import read_sql

revision: str = "0045"
down_revision: str | None = "0044"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 70
READ = "presence/sql/ping_read.sql"
# the read's text in this revision, and in 0044
PRES = (
    """    ), pres_rows AS MATERIALIZED (
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
""",
    """    ), pres AS (
        -- the places each subject is already in or near (kept at any distance, so exits can
        -- say how far)
        SELECT sj.s, g.id, g.geom, g.geog, g.trigger_distance_m, g.dwell_s, g.active_from,
               g.active_until
        FROM sj JOIN presence pp ON pp.subject_id = sj.subj AND pp.subject_id = ANY(p_subject)
        JOIN geofences g
          ON g.id = pp.geofence_id AND g.organisation_id = sj.org AND g.deleted_at IS NULL
""",
)
FAR = (
    """        SELECT f.s, f.idx, f.pt, f.sphere, f.mpt, f.margin, f.at, p.id, g.geom, p.geog,
               ST_SetSRID(ST_Affine(g.geom, f.kx, 0, 0, radians(6371008.8), 0, 0), 0),
               p.trigger_distance_m,
               p.dwell_s, p.active_from, p.active_until, true
        FROM f JOIN pres p ON p.s = f.s
        JOIN geofences g ON g.id = p.id
""",
    """        SELECT f.s, f.idx, f.pt, f.sphere, f.mpt, f.margin, f.at, p.id, p.geom, p.geog,
               ST_SetSRID(ST_Affine(p.geom, f.kx, 0, 0, radians(6371008.8), 0, 0), 0),
               p.trigger_distance_m,
               p.dwell_s, p.active_from, p.active_until, true
        FROM f JOIN pres p ON p.s = f.s
""",
)
PRE = (
    """    SELECT 'pre', p.s, NULL, p.id, p.evidence, p.pending_fixes::float8,
           p.trigger_distance_m, p.dwell_s,
           p.dwell_emitted, CASE WHEN p.kept THEN p.state END, p.since,
           p.last_fix_at, NULL, p.pending_since, NULL
    FROM pres_rows p
""",
    """    SELECT 'pre', sj.s, NULL, p.geofence_id, p.evidence, p.pending_fixes::float8,
           g.trigger_distance_m, g.dwell_s,
           p.dwell_emitted, CASE WHEN g.deleted_at IS NULL THEN p.state END, p.since,
           p.last_fix_at, NULL, p.pending_since, NULL
    FROM sj JOIN presence p ON p.subject_id = sj.subj AND p.subject_id = ANY(p_subject)
    JOIN geofences g ON g.id = p.geofence_id
""",
)


def upgrade() -> None:
    op.execute(f"ALTER TABLE presence SET (fillfactor = {FILLFACTOR})")
    op.execute(f"ALTER TABLE presence_subjects SET (fillfactor = {FILLFACTOR})")
    op.drop_index("ix_pings_org_recorded", table_name="pings")
    op.drop_index("ix_ping_queue_organisation_id", table_name="ping_queue")
    sql = read_sql(READ)
    for now, _ in (PRES, FAR, PRE):
        assert now in sql
    op.execute(sql)


def downgrade() -> None:
    sql = read_sql(READ)
    for now, before in (PRES, FAR, PRE):
        sql = sql.replace(now, before, 1)
    op.execute(sql)
    op.create_index("ix_ping_queue_organisation_id", "ping_queue", ["organisation_id"])
    op.create_index("ix_pings_org_recorded", "pings", ["organisation_id", "recorded_at"])
    op.execute("ALTER TABLE presence_subjects RESET (fillfactor)")
    op.execute("ALTER TABLE presence RESET (fillfactor)")
