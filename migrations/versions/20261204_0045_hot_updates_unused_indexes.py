"""presence: room for HOT updates, and two indexes no statement uses

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

docs/benchmarks.md ("Per-fix CPU: HOT updates and unused indexes (issue 25)") has the figures.

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-04 04:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0045"
down_revision: str | None = "0044"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 70


def upgrade() -> None:
    op.execute(f"ALTER TABLE presence SET (fillfactor = {FILLFACTOR})")
    op.execute(f"ALTER TABLE presence_subjects SET (fillfactor = {FILLFACTOR})")
    op.drop_index("ix_pings_org_recorded", table_name="pings")
    op.drop_index("ix_ping_queue_organisation_id", table_name="ping_queue")


def downgrade() -> None:
    op.create_index("ix_ping_queue_organisation_id", "ping_queue", ["organisation_id"])
    op.create_index("ix_pings_org_recorded", "pings", ["organisation_id", "recorded_at"])
    op.execute("ALTER TABLE presence_subjects RESET (fillfactor)")
    op.execute("ALTER TABLE presence RESET (fillfactor)")
