"""lone working: task visits, safety alerts, the on-call list, visit lengths per category

A visit (`lone_visits`) is a field worker inside a place for a task, from check-in or presence
enter to check-out or exit; `due_at` is when it should end. `safety_alerts` holds the alarms
(overdue visits and "I need help"), at most one per visit (unique index), re-sent until
acknowledged. `tasks.expected_duration_min` and `open311_services.task_expected_duration_min`
(the template) give a task's visit length; `category_visit_lengths` a place category's.

Revision ID: 0032
Revises: 0030
Create Date: 2026-12-03 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("expected_duration_min", sa.Integer(), nullable=True))
    op.add_column(
        "open311_services",
        sa.Column("task_expected_duration_min", sa.Integer(), nullable=True),
    )
    op.create_table(
        "lone_visits",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("geofence_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=10), nullable=False),
        sa.Column("expected_min", sa.Integer(), nullable=False),
        sa.Column("expected_from", sa.String(length=10), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extended_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("prompted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=10), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("state IN ('active', 'ended')", name="ck_lone_visits_state"),
        sa.ForeignKeyConstraint(["geofence_id"], ["geofences.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["worker_id"], ["staff_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_lone_visits_due",
        "lone_visits",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index(
        "ix_lone_visits_organisation_id", "lone_visits", ["organisation_id"], unique=False
    )
    op.create_index("ix_lone_visits_worker_id", "lone_visits", ["worker_id"], unique=False)
    op.create_index(
        "uq_lone_visits_active",
        "lone_visits",
        ["worker_id", "geofence_id"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_table(
        "safety_alerts",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("visit_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("geofence_id", sa.Uuid(), nullable=True),
        sa.Column("place_name", sa.String(length=200), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_lon", sa.Float(), nullable=True),
        sa.Column("last_lat", sa.Float(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("level", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sends", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Uuid(), nullable=True),
        sa.Column("ack_note", sa.String(length=500), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("kind IN ('overdue', 'help')", name="ck_safety_alerts_kind"),
        sa.ForeignKeyConstraint(["acknowledged_by"], ["staff_users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["geofence_id"], ["geofences.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["visit_id"], ["lone_visits.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["worker_id"], ["staff_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_safety_alerts_next_send",
        "safety_alerts",
        ["next_send_at"],
        unique=False,
        postgresql_where=sa.text("acknowledged_at IS NULL"),
    )
    op.create_index(
        "ix_safety_alerts_org_raised",
        "safety_alerts",
        ["organisation_id", "raised_at"],
        unique=False,
    )
    op.create_index("uq_safety_alerts_visit", "safety_alerts", ["visit_id"], unique=True)
    op.create_index("ix_safety_alerts_worker_id", "safety_alerts", ["worker_id"], unique=False)
    op.create_table(
        "on_call_contacts",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("staff_user_id", sa.Uuid(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.CheckConstraint("rank BETWEEN 1 AND 9", name="ck_on_call_rank"),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["staff_user_id"], ["staff_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("organisation_id", "staff_user_id"),
    )
    op.create_table(
        "category_visit_lengths",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("expected_duration_min", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("organisation_id", "category"),
    )


def downgrade() -> None:
    op.drop_table("category_visit_lengths")
    op.drop_table("on_call_contacts")
    op.drop_table("safety_alerts")
    op.drop_table("lone_visits")
    op.drop_column("open311_services", "task_expected_duration_min")
    op.drop_column("tasks", "expected_duration_min")
