"""devices: tell every API process when a device token stops being valid (LISTEN/NOTIFY)

The API processes resolve device tokens in memory (app/accounts/tokens.py) while they listen
on `hereabouts_device_tokens`. A token stops being valid when its device row is deleted
(erasure, an organisation removed, retention) or, were it ever changed in place, when its
hash or organisation changes: the old hash is sent, at commit, to every listener. TRUNCATE
sends an empty payload: forget every token.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-26 04:10:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION hereabouts_device_token_revoked() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('hereabouts_device_tokens', '');
            ELSE
                PERFORM pg_notify('hereabouts_device_tokens', OLD.token_hash);
            END IF;
            RETURN NULL;
        END;
        $fn$
        """
    )
    op.execute(
        """
        CREATE TRIGGER devices_token_revoked
        AFTER DELETE OR UPDATE OF token_hash, organisation_id ON devices
        FOR EACH ROW EXECUTE FUNCTION hereabouts_device_token_revoked()
        """
    )
    op.execute(
        """
        CREATE TRIGGER devices_truncated
        AFTER TRUNCATE ON devices
        FOR EACH STATEMENT EXECUTE FUNCTION hereabouts_device_token_revoked()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS devices_truncated ON devices")
    op.execute("DROP TRIGGER IF EXISTS devices_token_revoked ON devices")
    op.execute("DROP FUNCTION IF EXISTS hereabouts_device_token_revoked()")
