"""presence: the 202 ingest's enqueue and the evaluator's claim in a form Citus runs

`hereabouts_ping_enqueue` (app/presence/sql/ping_enqueue.sql, migration 0041) found duplicates
with correlated subqueries next to `unnest`, which Citus refuses: it now finds them as the ping
read does (the batch's ids joined to `pings` by subject and id, filtered by the batch's subjects)
and new subjects with an anti-join filtered the same way: the same rows. Hash and merge joins
are off inside it, so that its generic plan on a single node probes the pings index per id.

`hereabouts_claim_queued` (app/presence/sql/claim_queued.sql, new) replaces the evaluator's one
`FOR UPDATE SKIP LOCKED` over `presence_subjects` joined to the queue's subjects: it reads the
subjects in line first, longest waiting first, then locks the next as many as it still wants by
key with SKIP LOCKED until it holds as many as asked, and returns their queued fixes. The same
subjects in the same order on a single node; on Citus, where `presence_subjects` is distributed
by subject (migration 0036), each lock statement takes one shard's subjects (Citus refuses a
multi-shard `FOR UPDATE`). docs/scaling.md.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-03 21:40:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core.sqlfiles import read_sql

revision: str = "0042"
down_revision: str | None = "0041"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ENQUEUE = "presence/sql/ping_enqueue.sql"
# the enqueue's text in this revision, and in 0041
ENQUEUE_NOW_BEFORE = (
    (
        "force_generic_plan\nSET enable_hashjoin = off SET enable_mergejoin = off AS $fn$",
        "force_generic_plan AS $fn$",
    ),
    (
        "        LEFT JOIN presence_subjects p ON p.subject_id = a.id"
        " AND p.subject_id = ANY(p_subject)\n"
        "        WHERE a.ok AND p.subject_id IS NULL\n",
        "        WHERE a.ok AND NOT EXISTS"
        " (SELECT 1 FROM presence_subjects p WHERE p.subject_id = a.id)\n",
    ),
    (
        "        LEFT JOIN dup ON dup.i = u.i\n        WHERE a.ok AND dup.i IS NULL\n",
        "        WHERE a.ok\n          AND NOT EXISTS"
        " (SELECT 1 FROM pings p WHERE p.subject_id = a.id AND p.client_id = u.cid)\n",
    ),
)


def upgrade() -> None:
    sql = read_sql(ENQUEUE)
    for now, _ in ENQUEUE_NOW_BEFORE:
        assert now in sql
    op.execute(sql)
    op.execute(read_sql("presence/sql/claim_queued.sql"))


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS hereabouts_claim_queued(int, uuid[])")
    sql = read_sql(ENQUEUE)
    for now, before in ENQUEUE_NOW_BEFORE:
        sql = sql.replace(now, before, 1)
    # 0041's statement has no `dup` part (its NOT EXISTS above reads pings itself)
    start = sql.index("    ), dup AS (")
    sql = sql[:start] + sql[sql.index("    ), ins AS (") :]
    op.execute(sql)
