"""shifts: field workers' ad-hoc shifts and tracking pauses; the staff location history

`staff_periods` holds a field worker's ad-hoc shifts (`kind = 'shift'`, ending by themselves at
`ends_by`) and tracking pauses (`kind = 'pause'`); at most one open period of each kind per worker.
`staff_track_points` keeps field workers' fixes past the pings' 24 h window, for
STAFF_TRACK_RETENTION_DAYS (docs/privacy.md). Both go with their organisation and staff user.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-03 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_periods",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("staff_user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=8), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("kind IN ('shift', 'pause')", name=op.f("ck_staff_periods_kind")),
        sa.CheckConstraint(
            "end_reason IS NULL OR end_reason IN ('worker', 'auto')",
            name=op.f("ck_staff_periods_reason"),
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at", name=op.f("ck_staff_periods_order")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_staff_periods_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_periods_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_periods")),
    )
    op.create_index(
        "ix_staff_periods_staff_started",
        "staff_periods",
        ["staff_user_id", "started_at"],
        unique=False,
    )
    op.create_index(
        "uq_staff_periods_one_open",
        "staff_periods",
        ["staff_user_id", "kind"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "staff_track_points",
        sa.Column("staff_user_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("speed_mps", sa.Float(), nullable=True),
        sa.Column("heading", sa.Float(), nullable=True),
        sa.Column("quality", sa.String(length=20), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_staff_track_points_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_track_points_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "staff_user_id", "client_id", "recorded_at", name=op.f("pk_staff_track_points")
        ),
    )
    op.create_index(
        "ix_staff_track_points_recorded", "staff_track_points", ["recorded_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_staff_track_points_recorded", table_name="staff_track_points")
    op.drop_table("staff_track_points")
    op.drop_index("uq_staff_periods_one_open", table_name="staff_periods")
    op.drop_index("ix_staff_periods_staff_started", table_name="staff_periods")
    op.drop_table("staff_periods")
