"""staff_periods, notification_preferences: tell every API process a worker's shift rules changed

The shift gate keeps each field worker's rules in memory (app/shifts/cache.py): their shift
window (`notification_preferences.shift_*`, with its time zone) and their ad-hoc shifts and
pauses (`staff_periods`). Any insert, update or delete of a worker's row in either table sends
`staff:<staff_users.id>` on `hereabouts_device_tokens` (the channel every API process listens on
for device tokens and ingest keys, migrations 0020 and 0035) at commit; an update that moves a
row to another worker tells both. Residents' preference rows send nothing. TRUNCATE sends an
empty payload: forget everything.

On Citus only the coordinator notifies, as for the devices and ingest keys triggers.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-03 18:15:00+00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from app.core import citus

revision: str = "0039"
down_revision: str | None = "0038"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("staff_periods", "notification_preferences")


def _allow_triggers_on_citus() -> None:
    """Citus refuses trigger DDL on distributed and reference tables unless told the triggers
    are safe (these only notify, on the coordinator)."""
    conn = op.get_bind()
    if citus.has_citus(conn):
        conn.execute(text("SET LOCAL citus.enable_unsafe_triggers = on"))


def upgrade() -> None:
    _allow_triggers_on_citus()
    op.execute(
        """
        CREATE FUNCTION hereabouts_shift_rules_changed() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            IF to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL THEN
                IF (SELECT groupid FROM pg_catalog.pg_dist_local_group) <> 0 THEN
                    RETURN NULL;  -- a Citus worker's placement: the API listens on the coordinator
                END IF;
            END IF;
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('hereabouts_device_tokens', '');
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.staff_user_id IS NOT NULL THEN
                PERFORM pg_notify('hereabouts_device_tokens', 'staff:' || OLD.staff_user_id);
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.staff_user_id IS NOT NULL
               AND (TG_OP = 'INSERT' OR NEW.staff_user_id IS DISTINCT FROM OLD.staff_user_id) THEN
                PERFORM pg_notify('hereabouts_device_tokens', 'staff:' || NEW.staff_user_id);
            END IF;
            RETURN NULL;
        END;
        $fn$
        """
    )
    for table in TABLES:
        op.execute(
            f"""
            CREATE TRIGGER {table}_shift_rules_changed
            AFTER INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION hereabouts_shift_rules_changed()
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER {table}_shift_rules_truncated
            AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION hereabouts_shift_rules_changed()
            """
        )


def downgrade() -> None:
    _allow_triggers_on_citus()
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_shift_rules_truncated ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_shift_rules_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS hereabouts_shift_rules_changed()")
