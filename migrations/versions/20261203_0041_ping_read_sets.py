"""ping read: cheap for sets of many subjects (the evaluator's sets of single fixes)

Two changes to `hereabouts_ping_read` (app/presence/sql/ping_read.sql), the same rows returned:
- whether a (fix, place) pair's place is one the subject is present at is a binary search in one
  jsonb object built from the presence rows read, not a scan of those rows per pair: a set of
  500 subjects' single fixes (about 2,000 pairs, 1,000 presence rows) spent a third of its
  PostgreSQL CPU there;
- a subject's existing row is locked by the upsert, no longer updated (`ON CONFLICT DO UPDATE
  ... WHERE` a condition that never holds still locks the row): every evaluated set wrote a
  new version of each subject's row besides the write function's update of its last fix.

docs/benchmarks.md, "Single fixes: where PostgreSQL's CPU went".

Revision ID: 0041
Revises: 0039
Create Date: 2026-12-03 21:40:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core.sqlfiles import read_sql

revision: str = "0041"
down_revision: str | None = "0039"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (this revision's text, the previous one's)
CHANGES = [
    (
        "    ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind\n"
        "        WHERE ps.subject_kind IS DISTINCT FROM EXCLUDED.subject_kind;",
        "    ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind;",
    ),
    (
        "(SELECT m FROM pres_keys) ? (f.s::text || ' ' || n.id::text) AS present",
        "EXISTS (SELECT 1 FROM pres WHERE pres.s = f.s AND pres.id = n.id) AS present",
    ),
]


def upgrade() -> None:
    sql = read_sql("presence/sql/ping_read.sql")
    for now, _ in CHANGES:
        assert now in sql
    op.execute(sql)


def downgrade() -> None:
    sql = read_sql("presence/sql/ping_read.sql")
    for now, before in CHANGES:
        sql = sql.replace(now, before, 1)
    op.execute(sql)
