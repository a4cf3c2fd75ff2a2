"""presence: the queue of acknowledged, not yet evaluated pings (asynchronous ingest)

`ping_queue` holds the fixes a `202 Accepted` answer has acknowledged (a single-fix request, or
any request with `Prefer: respond-async`) until the evaluator (app/presence/evaluator.py) claims
them, evaluates them with the same set-based path as a synchronous batch and deletes them in the
same transaction as the pings, presence and events it writes. `(subject_id, client_id)` is unique:
a retry of a queued fix is a duplicate. Rows go with their organisation.

Revision ID: 0028
Revises: 0029
Create Date: 2026-12-03 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ping_queue",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("subject_kind", sa.String(length=8), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("heading", sa.Float(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("subject_id", "client_id", name="uq_ping_queue_subject_client"),
    )
    op.create_index("ix_ping_queue_organisation_id", "ping_queue", ["organisation_id"])


def downgrade() -> None:
    op.drop_index("ix_ping_queue_organisation_id", table_name="ping_queue")
    op.drop_table("ping_queue")
