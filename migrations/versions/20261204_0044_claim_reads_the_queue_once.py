"""presence: the evaluator's claim stops when the subjects in line were fewer than it wanted

`hereabouts_claim_queued` (app/presence/sql/claim_queued.sql) read the subjects in line again
after locking them, to find more, even when the first read had found fewer than it wanted: a
second read of the whole queue that finds nobody (on Citus a read of every shard). A read that
finds fewer than wanted is now the last; a subject queued meanwhile is the next claim's (the
evaluator claims again as soon as a set is evaluated or a fix is queued). The same subjects
otherwise.

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-04 02:35:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core.sqlfiles import read_sql

revision: str = "0044"
down_revision: str | None = "0043"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM = "presence/sql/claim_queued.sql"
# the claim's text in this revision, and in 0042
NOW = (
    "        END IF;\n"
    "        -- fewer in line than wanted: nobody else waits (one queued meanwhile is the next"
    " claim's)\n"
    "        EXIT WHEN cardinality(v_batch) < v_want;\n"
    "    END LOOP;"
)
BEFORE = "        END IF;\n    END LOOP;"


def upgrade() -> None:
    sql = read_sql(CLAIM)
    assert NOW in sql
    op.execute(sql)


def downgrade() -> None:
    op.execute(read_sql(CLAIM).replace(NOW, BEFORE, 1))
