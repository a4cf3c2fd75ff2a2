"""ping functions: cheap for the evaluator's sets of many subjects and for small 202 groups

The same rows and results, less PostgreSQL CPU per single fix (docs/benchmarks.md, "Single
fixes: where PostgreSQL's CPU went"):
- `hereabouts_ping_read` (app/presence/sql/ping_read.sql): whether a (fix, place) pair's place
  is one the subject is present at is a binary search in one jsonb object of the presence rows
  read, no longer a scan of those rows per pair (a set of 500 subjects' single fixes, ~2,000
  pairs x ~1,000 rows, spent a third of its PostgreSQL CPU there); a subject's existing row is
  locked by the upsert, no longer rewritten (`ON CONFLICT DO UPDATE ... WHERE` a condition that
  never holds still locks the row); a segment shorter than the reach of its end's cell's index
  scan takes its crossed places from that scan's places instead of an index scan of its own;
- `hereabouts_ping_enqueue` (new, app/presence/sql/ping_enqueue.sql): the 202 path's INSERT
  into the queue, as a function for its cached generic plan (as a prepared statement it was
  planned afresh at every execution, ~0.23 ms of CPU per group of requests).

The downgrade drops the new function and reverts the read's statements to the previous ones
(what is left of the new text, the `pres_keys` CTE and the `in_near` column, is then unused).

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

READ = "presence/sql/ping_read.sql"
# the statements' text in this revision, and the previous revision's
LOCK = (
    "    ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind\n"
    "        WHERE ps.subject_kind IS DISTINCT FROM EXCLUDED.subject_kind;",
    "    ON CONFLICT (subject_id) DO UPDATE SET subject_kind = EXCLUDED.subject_kind;",
)
PRESENT = (
    "(SELECT m FROM pres_keys) ? (f.s::text || ' ' || n.id::text) AS present",
    "EXISTS (SELECT 1 FROM pres WHERE pres.s = f.s AND pres.id = n.id) AS present",
)
SEGCELL = (
    "FROM seg WHERE NOT seg.in_near GROUP BY seg.org, seg.cx, seg.cy",
    "FROM seg GROUP BY seg.org, seg.cx, seg.cy",
)
CROSSED_FIRST = "         AND NOT seg.in_near AND ST_Intersects(n.geom, seg.line)\n"
CROSSED_END = "         AND seg.in_near AND ST_Intersects(n.geom, seg.line)\n"


def upgrade() -> None:
    sql = read_sql(READ)
    for now, _ in (LOCK, PRESENT, SEGCELL):
        assert now in sql
    assert CROSSED_FIRST in sql
    assert CROSSED_END in sql
    op.execute(sql)
    op.execute(read_sql("presence/sql/ping_enqueue.sql"))


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS hereabouts_ping_enqueue(uuid[], text[], uuid[], boolean[], "
        "int[], text[], timestamptz[], float8[], float8[], float8[], float8[], float8[])"
    )
    sql = read_sql(READ)
    for now, before in (LOCK, PRESENT, SEGCELL):
        sql = sql.replace(now, before, 1)
    # the crossed places of every segment from its own index scan again
    start = sql.index(CROSSED_FIRST)
    end = sql.index(CROSSED_END) + len(CROSSED_END)
    sql = sql[:start] + "         AND ST_Intersects(n.geom, seg.line)\n" + sql[end:]
    op.execute(sql)
