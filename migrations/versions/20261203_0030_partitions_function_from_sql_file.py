"""ping partitions function from app/presence/sql (the text of migration 0007, unchanged)

`hereabouts_ensure_ping_partitions` joins the ping functions as a `.sql` file of the presence
domain (app/core/sqlfiles.py). The trigger function that tells API processes a device token
was revoked (migration 0020) stays in its migration: on Citus, migration 0027 replaces it with a
coordinator-only variant, so the database does not always run one text.

Revision ID: 0030
Revises: 0027
Create Date: 2026-12-03 12:50:00+00:00
"""

from collections.abc import Sequence
from typing import Any

from alembic import context, op

from app.core.sqlfiles import read_sql

revision: str = "0030"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _previous(revision: str) -> Any:
    """Another migration's module, as Alembic loaded it (downgrade restores its function)."""
    script = context.script.get_revision(revision)
    assert script is not None
    return script.module


def upgrade() -> None:
    op.execute(read_sql("presence/sql/ensure_ping_partitions.sql"))


def downgrade() -> None:
    op.execute(_previous("0007").ENSURE_PARTITIONS_SQL)
