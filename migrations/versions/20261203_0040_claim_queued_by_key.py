"""presence: the evaluator's claim as a function that locks each subject's row by its key

The asynchronous ingest's evaluator claimed subjects with one `FOR UPDATE SKIP LOCKED` over
`presence_subjects` joined to the queue's subjects. `hereabouts_claim_queued`
(app/presence/sql/claim_queued.sql) reads the queue's subjects first, longest waiting first, then
locks each one's row by its key with SKIP LOCKED until it holds as many as asked, and returns
their queued fixes: the same subjects in the same order on a single node, and on Citus, where
`presence_subjects` is distributed by subject (migration 0036), each lock is a single-shard
statement; Citus refuses a multi-shard `FOR UPDATE` (docs/scaling.md). Nothing else changes.

Revision ID: 0040
Revises: 0041
Create Date: 2026-12-03 21:40:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core.sqlfiles import read_sql

revision: str = "0040"
down_revision: str | None = "0041"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(read_sql("presence/sql/claim_queued.sql"))


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS hereabouts_claim_queued(int, uuid[])")
