"""ingest_keys: tell every API process when an ingest key stops being valid (LISTEN/NOTIFY)

The API processes resolve ingest keys in memory (app/ingest/keycache.py) while they listen on
`hereabouts_device_tokens`, the device tokens' channel (migration 0020). A key stops being valid
when its row is deleted (revoked, or its device, field worker or organisation removed: foreign
keys cascade) or, were it ever changed in place, when its hash or owner changes: the old hash is
sent, at commit, to every listener. TRUNCATE sends an empty payload: forget everything.

On Citus the trigger is copied onto every placement of the table; as for the devices trigger
(migration 0027) only the coordinator, where the API listens, notifies (a worker's `pg_notify`
inside a two-phase commit cannot be prepared).

Revision ID: 0035
Revises: 0030
Create Date: 2026-12-03 14:10:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION hereabouts_ingest_key_revoked() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            IF to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL THEN
                IF (SELECT groupid FROM pg_catalog.pg_dist_local_group) <> 0 THEN
                    RETURN NULL;  -- a Citus worker's placement: the API listens on the coordinator
                END IF;
            END IF;
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('hereabouts_device_tokens', '');
            ELSE
                PERFORM pg_notify('hereabouts_device_tokens', OLD.key_hash);
            END IF;
            RETURN NULL;
        END;
        $fn$
        """
    )
    op.execute(
        """
        CREATE TRIGGER ingest_keys_revoked
        AFTER DELETE OR UPDATE OF key_hash, device_id, staff_user_id, organisation_id
        ON ingest_keys
        FOR EACH ROW EXECUTE FUNCTION hereabouts_ingest_key_revoked()
        """
    )
    op.execute(
        """
        CREATE TRIGGER ingest_keys_truncated
        AFTER TRUNCATE ON ingest_keys
        FOR EACH STATEMENT EXECUTE FUNCTION hereabouts_ingest_key_revoked()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ingest_keys_truncated ON ingest_keys")
    op.execute("DROP TRIGGER IF EXISTS ingest_keys_revoked ON ingest_keys")
    op.execute("DROP FUNCTION IF EXISTS hereabouts_ingest_key_revoked()")
