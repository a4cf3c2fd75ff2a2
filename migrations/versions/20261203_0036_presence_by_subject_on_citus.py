"""ping functions filter per-subject tables by the group's subjects; on Citus, presence by subject

The ping read and write (app/presence/sql) also say `subject_id = ANY(p_subject)` wherever they
read, update or delete `presence_subjects`, `presence` or `pings`: the same rows (every join
already matches one of the group's subjects), so nothing changes on single-node PostgreSQL.
On Citus (only when the `citus` extension is installed) `presence_subjects` and `presence` become
tables distributed by subject, co-located with `pings`, instead of reference tables (a copy on
every node): a batch's read is then one statement run on the worker that holds its subject, its
writes go to that worker's shards, and the subject's row is locked in one place (two batches of
one subject can no longer deadlock across the copies). `migrations/env.py` places them at head
(`app.core.citus.DISTRIBUTED`); the downgrade makes them reference tables again.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-03 18:20:00+00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from app.core import citus
from app.core.sqlfiles import read_sql

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BY_SUBJECT = ("presence_subjects", "presence")


def upgrade() -> None:
    op.execute(read_sql("presence/sql/ping_read.sql"))
    op.execute(read_sql("presence/sql/ping_write.sql"))
    # on Citus the placement at head (migrations/env.py) distributes BY_SUBJECT


def downgrade() -> None:
    # The functions keep the filters: they select the same rows without Citus, and with
    # reference tables Citus plans them as before.
    conn = op.get_bind()
    if not citus.has_citus(conn):
        return
    conn.execute(text("SET LOCAL citus.enable_unsafe_triggers = on"))
    for table in BY_SUBJECT:
        distributed = conn.execute(
            text(
                "SELECT partmethod = 'h' FROM pg_dist_partition "
                "WHERE logicalrelid = CAST(:t AS regclass)"
            ),
            {"t": table},
        ).scalar()
        if distributed:
            citus.undistribute_keeping_foreign_keys(conn, table)
            conn.execute(text("SELECT create_reference_table(:t)"), {"t": table})
