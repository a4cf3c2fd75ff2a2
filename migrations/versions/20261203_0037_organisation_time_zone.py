"""organisations.time_zone: the zone of times written for the organisation's people

Lone-working pushes say "due to end at 15:30 BST" in this zone; NULL means the deployment's
`HEREABOUTS_TIME_ZONE` (default UTC). Set with `hereabouts organisations time-zone`.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-03 17:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("organisations", sa.Column("time_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("organisations", "time_zone")
