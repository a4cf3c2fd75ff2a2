"""on Citus, the 202 queue (`ping_queue`) by subject, co-located with pings

Only when the `citus` extension is installed; single-node PostgreSQL is unchanged. Until now the
queue was a reference table: every node wrote each queued fix and its deletion, and each enqueue
was a two-phase commit across all nodes. Distributed by subject and co-located with `pings`,
`presence_subjects` and `presence`, a subject's queued fixes live on the worker that holds its
other rows: the enqueue writes one shard (with the subject's row), the claim's fixes and the
evaluator's delete (which now also names the claimed subjects) go to the claimed subjects'
shards.

Citus refuses a primary or unique key without the distribution column, so on Citus the primary
key becomes `(subject_id, seq)` (seq stays an identity, drawn on the coordinator: still unique,
still the order of arrival); the unique `(subject_id, client_id)` key and the foreign key to
`organisations` (a reference table) are kept. Citus converts no table with an identity column
("cannot complete operation on a table with identity column"), so the queue is copied into a new
table placed as wanted (`app.core.citus.rebuild_placed`: rows, keys, indexes and the identity's
next value kept), here and back in the downgrade, which makes it a reference table with its
`seq` key again.

`hereabouts_ping_enqueue` (app/presence/sql/ping_enqueue.sql) gets a branch taken only where
Citus is loaded: the same rows, one subject at a time, in statements that name the subject as a
constant, so each is routed to the one worker holding the subject's co-located shards and a
request's enqueue commits there alone (the set-based statement made Citus plan every CTE apart,
send its results to every worker and commit on both in two phases). On a single node the
function runs the same statement as before; this migration only replaces its text there.
docs/scaling.md.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-04 01:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

from app.core import citus
from app.core.sqlfiles import read_sql

revision: str = "0043"
down_revision: str | None = "0042"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "ping_queue"
PKEY = "pk_ping_queue"  # the naming convention of app/models


def _method(conn: Connection) -> str | None:
    value = conn.execute(
        text(
            "SELECT CASE WHEN partmethod = 'h' THEN 'h' WHEN repmodel = 't' THEN 'r' ELSE 'l' END "
            "FROM pg_dist_partition WHERE logicalrelid = CAST(:t AS regclass)"
        ),
        {"t": TABLE},
    ).scalar()
    return None if value is None else str(value)


def _primary_key(conn: Connection, columns: str) -> None:
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} DROP CONSTRAINT {PKEY}")
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} ADD CONSTRAINT {PKEY} PRIMARY KEY ({columns})")


ENQUEUE = "presence/sql/ping_enqueue.sql"
# what this revision adds to 0042's enqueue function: its variables and the Citus branch
ENQUEUE_CITUS_START = "DECLARE\n    v_k int;"
ENQUEUE_CITUS_END = "        RETURN;\n    END IF;\n"


def _enqueue_0042() -> str:
    sql = read_sql(ENQUEUE)
    start = sql.index(ENQUEUE_CITUS_START)
    end = sql.index(ENQUEUE_CITUS_END) + len(ENQUEUE_CITUS_END)
    return sql[:start] + "BEGIN\n" + sql[end:]


def upgrade() -> None:
    op.execute(read_sql(ENQUEUE))
    conn = op.get_bind()
    if not citus.has_citus(conn) or _method(conn) == "h":
        return
    _primary_key(conn, "subject_id, seq")
    citus.rebuild_placed(conn, TABLE, "subject_id", colocate_with=citus.COLOCATE_WITH)


def downgrade() -> None:
    op.execute(_enqueue_0042())
    conn = op.get_bind()
    if not citus.has_citus(conn):
        return
    if _method(conn) == "h":
        citus.rebuild_placed(conn, TABLE, None)
    _primary_key(conn, "seq")
