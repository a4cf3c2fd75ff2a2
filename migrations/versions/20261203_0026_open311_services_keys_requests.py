"""open311: GeoReport v2 services, client api keys, per-organisation settings and reports

`open311_services` (what residents may report and the task each report becomes),
`open311_api_keys` (SHA-256 of each client key, with its own rate), `open311_settings`
(public_read per organisation) and `open311_requests` (the reports; contact fields are
staff-only; each points at its task, its place and, for a duplicate, the first report).

Revision ID: 0026
Revises: 0022
Create Date: 2026-12-03 10:56:24.507307+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0026"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open311_api_keys",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_open311_api_keys_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_open311_api_keys_key_hash")),
    )
    op.create_index(
        op.f("ix_open311_api_keys_organisation_id"),
        "open311_api_keys",
        ["organisation_id"],
        unique=False,
    )
    op.create_table(
        "open311_services",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("group", sa.String(length=100), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "keywords",
            sa.ARRAY(sa.String(length=100)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "place_categories",
            sa.ARRAY(sa.String(length=64)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("match_within_m", sa.Float(), nullable=False),
        sa.Column("task_title", sa.String(length=200), nullable=False),
        sa.Column("task_priority", sa.String(length=10), nullable=False),
        sa.Column("task_due_s", sa.Integer(), nullable=True),
        sa.Column("requires_visit", sa.Boolean(), nullable=False),
        sa.Column(
            "assignee_ids", sa.ARRAY(sa.Uuid()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_open311_services_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_services")),
        sa.UniqueConstraint(
            "organisation_id", "code", name=op.f("uq_open311_services_organisation_id_code")
        ),
    )
    op.create_table(
        "open311_settings",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("public_read", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_open311_settings_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organisation_id", name=op.f("pk_open311_settings")),
    )
    op.create_table(
        "open311_requests",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("geofence_id", sa.Uuid(), nullable=True),
        sa.Column("duplicate_of", sa.Uuid(), nullable=True),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("token", sa.String(length=40), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("location_rounded", sa.Boolean(), nullable=False),
        sa.Column("address_string", sa.String(length=500), nullable=True),
        sa.Column("address_id", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("media_url", sa.String(length=2000), nullable=True),
        sa.Column("attributes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=50), nullable=True),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["open311_api_keys.id"],
            name=op.f("fk_open311_requests_api_key_id_open311_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_open311_requests_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["open311_requests.id"],
            name=op.f("fk_open311_requests_duplicate_of_open311_requests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["geofence_id"],
            ["geofences.id"],
            name=op.f("fk_open311_requests_geofence_id_geofences"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_open311_requests_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["open311_services.id"],
            name=op.f("fk_open311_requests_service_id_open311_services"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_open311_requests_task_id_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open311_requests")),
        sa.UniqueConstraint("token", name=op.f("uq_open311_requests_token")),
    )
    op.create_index(
        op.f("ix_open311_requests_device_id"), "open311_requests", ["device_id"], unique=False
    )
    op.create_index(
        "ix_open311_requests_org_requested",
        "open311_requests",
        ["organisation_id", "requested_at"],
        unique=False,
    )
    op.create_index(
        "ix_open311_requests_service_requested",
        "open311_requests",
        ["service_id", "requested_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_open311_requests_task_id"), "open311_requests", ["task_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_open311_requests_task_id"), table_name="open311_requests")
    op.drop_index("ix_open311_requests_service_requested", table_name="open311_requests")
    op.drop_index("ix_open311_requests_org_requested", table_name="open311_requests")
    op.drop_index(op.f("ix_open311_requests_device_id"), table_name="open311_requests")
    op.drop_table("open311_requests")
    op.drop_table("open311_settings")
    op.drop_table("open311_services")
    op.drop_index(op.f("ix_open311_api_keys_organisation_id"), table_name="open311_api_keys")
    op.drop_table("open311_api_keys")
