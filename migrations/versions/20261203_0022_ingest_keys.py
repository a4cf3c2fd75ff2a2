"""ingest: per-device ingest keys (Traccar Client) and OwnTracks waypoint anchors

`ingest_keys` holds the SHA-256 of each key issued by `POST /v1/me/ingest-keys`, owned by one
resident device or one field worker (deleted with them; revoking deletes the row).
`ingest_waypoint_anchors` remembers, per subject, where the last OwnTracks `setWaypoints` was
sent, so the next one is sent only once the phone has moved away from there.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 10:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_keys",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("staff_user_id", sa.Uuid(), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(device_id IS NULL) <> (staff_user_id IS NULL)",
            name=op.f("ck_ingest_keys_one_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_ingest_keys_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_ingest_keys_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_ingest_keys_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_ingest_keys_key_hash")),
    )
    op.create_index(op.f("ix_ingest_keys_device_id"), "ingest_keys", ["device_id"])
    op.create_index(op.f("ix_ingest_keys_organisation_id"), "ingest_keys", ["organisation_id"])
    op.create_index(op.f("ix_ingest_keys_staff_user_id"), "ingest_keys", ["staff_user_id"])
    op.create_table(
        "ingest_waypoint_anchors",
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("staff_user_id", sa.Uuid(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column(
            "sent_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_ingest_waypoint_anchors_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_users.id"],
            name=op.f("fk_ingest_waypoint_anchors_staff_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_ingest_waypoint_anchors")),
    )
    op.create_index(
        op.f("ix_ingest_waypoint_anchors_device_id"), "ingest_waypoint_anchors", ["device_id"]
    )
    op.create_index(
        op.f("ix_ingest_waypoint_anchors_staff_user_id"),
        "ingest_waypoint_anchors",
        ["staff_user_id"],
    )


def downgrade() -> None:
    op.drop_table("ingest_waypoint_anchors")
    op.drop_table("ingest_keys")
