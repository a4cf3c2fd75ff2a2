"""ping read: a stay's mean is measured against the places within 25 m beyond their reach

The presence engine now lets a stay whose phone's accuracy turned indoor enter a building it is
barely inside, but only where no other place's wall is about as near the stay's mean (being
indoors says nothing about which of two buildings sharing a wall). For that the read returns,
for the stay's mean, the places within their trigger distance + 25 m of it (before: within
their trigger distance). docs/presence.md, "The rules exactly".

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-03 18:20:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from app.core.sqlfiles import read_sql

revision: str = "0038"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = "25::float8, sj.at"
BEFORE = "0::float8, sj.at"


def upgrade() -> None:
    sql = read_sql("presence/sql/ping_read.sql")
    assert NOW in sql
    op.execute(sql)


def downgrade() -> None:
    op.execute(read_sql("presence/sql/ping_read.sql").replace(NOW, BEFORE, 1))
