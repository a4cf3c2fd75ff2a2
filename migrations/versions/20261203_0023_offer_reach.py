"""offers: the most specific offer wins (priority), and "told" caps apart from "redeem" caps

- `offers.priority` (default 0): among offers equally specific at a place (the place's own,
  then its category's), the higher priority wins the place's one push per visit, then the newest.
- `offers.told_max` (null = no count cap): how many times a person may be told about the
  offer; `cooldown_s` is how long apart (now defaulting to a week). `max_per_person` now only
  caps redemptions (it used to stop every push after the first, for ever).
- Existing offers keep their numbers; those still at the old default cooldown (86,400 s) move
  to the new one (604,800 s: told at most once a week). The downgrade drops the two columns and
  leaves cooldowns as they are.

Revision ID: 0023
Revises: 0026
Create Date: 2026-12-03 11:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "offers", sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("offers", sa.Column("told_max", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_offers_told_max"), "offers", "told_max IS NULL OR told_max >= 1"
    )
    op.execute("UPDATE offers SET cooldown_s = 604800 WHERE cooldown_s = 86400")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_offers_told_max"), "offers", type_="check")
    op.drop_column("offers", "told_max")
    op.drop_column("offers", "priority")
