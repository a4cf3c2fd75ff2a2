"""tasks: completion photos and how a visit was proved; staff token versions

`task_photos` holds up to three photos per task, taken when completing it: re-encoded from the
decoded image (so without EXIF), purged with the task's retention (`TASK_PHOTO_RETENTION_DAYS`
after the task was closed). `tasks.proof_source` says how the visit was proved: a check-in at the
place within the visit window, or the worker's presence inside the place.
`staff_users.token_version` is carried in every staff access token; raising it (deactivation, a
role change, a password reset) ends all of the user's sessions at once.

Revision ID: 0025
Revises: 0023
Create Date: 2026-12-03 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "staff_users",
        sa.Column("token_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("tasks", sa.Column("proof_source", sa.String(length=10), nullable=True))
    op.execute("UPDATE tasks SET proof_source = 'checkin' WHERE proof_checkin_id IS NOT NULL")
    op.create_table(
        "task_photos",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("content_type", sa.String(length=20), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["uploaded_by"], ["staff_users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_photos_task", "task_photos", ["task_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_task_photos_task", table_name="task_photos")
    op.drop_table("task_photos")
    op.drop_column("tasks", "proof_source")
    op.drop_column("staff_users", "token_version")
