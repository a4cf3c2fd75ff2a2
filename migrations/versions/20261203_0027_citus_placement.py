"""citus: place every table (distributed by subject, or reference) when the database runs Citus

Only when the `citus` extension is installed in the database (docs/scaling.md, "Sharding with
Citus"); on single-node PostgreSQL this migration does nothing. On Citus:
- the ping path's per-subject tables (`app.core.citus.DISTRIBUTED`: pings and its day
  partitions, presence_subjects, presence, device_settings, ingest_waypoint_anchors) are
  distributed by subject, co-located; every other table becomes a reference table;
- the devices trigger that tells API processes of a revoked token (migration 0020) notifies
  only on the coordinator, where the API listens: on a worker, the placement's trigger would run
  `pg_notify` inside a two-phase commit, which PostgreSQL refuses to PREPARE.
`migrations/env.py` calls the same placement after every upgrade to head, so tables that later
migrations add are placed too.

Revision ID: 0027
Revises: 0024
Create Date: 2026-12-03 11:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core import citus

revision: str = "0027"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKEN_NOTIFY_BODY = """
        BEGIN
            {guard}IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('hereabouts_device_tokens', '');
            ELSE
                PERFORM pg_notify('hereabouts_device_tokens', OLD.token_hash);
            END IF;
            RETURN NULL;
        END;
"""
COORDINATOR_ONLY = (
    "IF (SELECT groupid FROM pg_dist_local_group) <> 0 THEN\n"
    "                RETURN NULL;  -- a worker's placement: the API listens on the coordinator\n"
    "            END IF;\n            "
)


def _token_notify(guard: str) -> str:
    return (
        "CREATE OR REPLACE FUNCTION hereabouts_device_token_revoked() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$" + TOKEN_NOTIFY_BODY.format(guard=guard) + "$fn$"
    )


def upgrade() -> None:
    conn = op.get_bind()
    if not citus.has_citus(conn):
        return
    op.execute(_token_notify(COORDINATOR_ONLY))
    citus.place_tables(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if not citus.has_citus(conn):
        return
    citus.unplace_tables(conn)
    op.execute(_token_notify(""))
