"""one outbox for every delivery channel; webhook signing secrets encrypted at rest

- `outbox` replaces `push_outbox` (Web Push) and `webhook_messages` (webhooks): one row per
  message with a `channel` column (`webpush` | `webhook`), the columns every channel shares
  (status, attempts, schedule, lease) and each channel's own keys (a check constraint holds
  them present). Rows move over with their ids, so the delivery logs (`push_deliveries`,
  `webhook_attempts`) keep pointing at them; their foreign keys now point at `outbox`.
- webhook rows get `subject_id`, the person the event is about (for erasure), filled for moved
  rows from the presence event they came from, or from the payload when it carried the real id.
- `webhook_endpoints.secret` / `previous_secret` hold `fernet:<token>` (app/webhooks/secretbox.py)
  instead of the plaintext `whsec_…`: existing secrets are encrypted here with the configured key
  (generated into the data directory outside production, like the VAPID key).
- On Citus the new table is placed (a reference table) before the logs' foreign keys point at it.

The downgrade moves the rows back into the two tables and decrypts the secrets.

Revision ID: 0033
Revises: 0030
Create Date: 2026-12-03 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core import citus

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMON = (
    "id, organisation_id, status, attempts, next_attempt_at, lease_expires_at, lease_token, "
    "last_error, created_at, finished_at"
)
PUSH = "notification_id, subscription_id, origin, expires_at"
WEBHOOK = "endpoint_id, msg_id, event_id, event_type, occurred_at, payload, replay_of"
UUID_RE = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _now() -> sa.TextClause:
    return sa.text("now()")


def _place() -> None:
    conn = op.get_bind()
    if citus.has_citus(conn):
        citus.place_tables(conn)


def _create_outbox() -> None:
    op.create_table(
        "outbox",
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("origin", sa.String(length=300), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        sa.Column("msg_id", sa.String(length=40), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("event_type", sa.String(length=40), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("replay_of", sa.Uuid(), nullable=True),
        sa.Column("subject_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "(channel = 'webpush' AND notification_id IS NOT NULL AND origin IS NOT NULL "
            "AND expires_at IS NOT NULL) OR (channel = 'webhook' AND endpoint_id IS NOT NULL "
            "AND msg_id IS NOT NULL AND event_type IS NOT NULL AND occurred_at IS NOT NULL "
            "AND payload IS NOT NULL)",
            name=op.f("ck_outbox_channel_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_outbox_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_outbox_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_outbox_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["push_subscriptions.id"],
            name=op.f("fk_outbox_subscription_id_push_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["channel", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    # each channel's keys are indexed only on its own rows
    op.create_index(
        "ix_outbox_notification_id",
        "outbox",
        ["notification_id"],
        postgresql_where=sa.text("notification_id IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_subscription_id",
        "outbox",
        ["subscription_id"],
        postgresql_where=sa.text("subscription_id IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_endpoint_created",
        "outbox",
        ["endpoint_id", "created_at"],
        postgresql_where=sa.text("endpoint_id IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_subject_id",
        "outbox",
        ["subject_id"],
        postgresql_where=sa.text("subject_id IS NOT NULL"),
    )


def _seal_secrets(up: bool) -> None:
    """Encrypt (up) or decrypt (down) every endpoint's stored secrets with the configured key."""
    from app.core.config import get_settings
    from app.webhooks import secretbox

    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, secret, previous_secret FROM webhook_endpoints FOR UPDATE")
    ).all()
    if not rows:
        return
    settings = get_settings()

    def convert(value: str | None) -> str | None:
        if value is None:
            return None
        if up:
            return value if value.startswith(secretbox.PREFIX) else secretbox.seal(settings, value)
        return (
            secretbox.open_sealed(settings, value) if value.startswith(secretbox.PREFIX) else value
        )

    for endpoint_id, secret, previous in rows:
        conn.execute(
            sa.text("UPDATE webhook_endpoints SET secret = :s, previous_secret = :p WHERE id = :i"),
            {"s": convert(secret), "p": convert(previous), "i": endpoint_id},
        )


def upgrade() -> None:
    _create_outbox()
    op.execute(
        f"INSERT INTO outbox (channel, {COMMON}, {PUSH}) "
        f"SELECT 'webpush', {COMMON}, {PUSH} FROM push_outbox"
    )
    op.execute(
        f"INSERT INTO outbox (channel, {COMMON}, {WEBHOOK}, subject_id) "
        f"SELECT 'webhook', {', '.join('m.' + c.strip() for c in COMMON.split(','))}, "
        f"{', '.join('m.' + c.strip() for c in WEBHOOK.split(','))}, "
        "coalesce((SELECT coalesce(e.device_id, e.staff_user_id) FROM presence_events e "
        "          WHERE e.id = m.event_id), "
        "         CASE WHEN m.payload::jsonb #>> '{data,person,id}' ~ "
        f"'{UUID_RE}' THEN (m.payload::jsonb #>> '{{data,person,id}}')::uuid END) "
        "FROM webhook_messages m"
    )
    _place()  # on Citus: a reference table before reference tables' foreign keys point at it
    op.drop_constraint(
        "fk_push_deliveries_outbox_id_push_outbox", "push_deliveries", type_="foreignkey"
    )
    op.create_foreign_key(
        op.f("fk_push_deliveries_outbox_id_outbox"),
        "push_deliveries",
        "outbox",
        ["outbox_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_constraint(
        "fk_webhook_attempts_message_id_webhook_messages", "webhook_attempts", type_="foreignkey"
    )
    op.create_foreign_key(
        op.f("fk_webhook_attempts_message_id_outbox"),
        "webhook_attempts",
        "outbox",
        ["message_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_table("push_outbox")
    op.drop_table("webhook_messages")
    for column in ("secret", "previous_secret"):
        op.alter_column(
            "webhook_endpoints",
            column,
            type_=sa.String(length=300),
            existing_type=sa.String(length=100),
        )
    _seal_secrets(up=True)


def downgrade() -> None:
    _seal_secrets(up=False)
    for column in ("secret", "previous_secret"):
        op.alter_column(
            "webhook_endpoints",
            column,
            type_=sa.String(length=100),
            existing_type=sa.String(length=300),
        )
    op.create_table(
        "push_outbox",
        sa.Column("notification_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=True),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("origin", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_push_outbox_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_push_outbox_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["push_subscriptions.id"],
            name=op.f("fk_push_outbox_subscription_id_push_subscriptions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_outbox")),
    )
    op.create_index(
        "ix_push_outbox_due",
        "push_outbox",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_push_outbox_notification_id"), "push_outbox", ["notification_id"])
    op.create_index(op.f("ix_push_outbox_subscription_id"), "push_outbox", ["subscription_id"])
    op.create_table(
        "webhook_messages",
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("msg_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("replay_of", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_messages_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_webhook_messages_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_messages")),
    )
    op.create_index(
        "ix_webhook_messages_due",
        "webhook_messages",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_messages_endpoint_created", "webhook_messages", ["endpoint_id", "created_at"]
    )
    op.execute(
        f"INSERT INTO push_outbox ({COMMON}, {PUSH}) "
        f"SELECT {COMMON}, {PUSH} FROM outbox WHERE channel = 'webpush'"
    )
    op.execute(
        f"INSERT INTO webhook_messages ({COMMON}, {WEBHOOK}) "
        f"SELECT {COMMON}, {WEBHOOK} FROM outbox WHERE channel = 'webhook'"
    )
    _place()
    op.drop_constraint("fk_push_deliveries_outbox_id_outbox", "push_deliveries", type_="foreignkey")
    op.create_foreign_key(
        op.f("fk_push_deliveries_outbox_id_push_outbox"),
        "push_deliveries",
        "push_outbox",
        ["outbox_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_constraint(
        "fk_webhook_attempts_message_id_outbox", "webhook_attempts", type_="foreignkey"
    )
    op.create_foreign_key(
        op.f("fk_webhook_attempts_message_id_webhook_messages"),
        "webhook_attempts",
        "webhook_messages",
        ["message_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_table("outbox")
