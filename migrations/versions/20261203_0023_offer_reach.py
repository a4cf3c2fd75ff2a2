"""offers: the most specific offer wins (priority), and "told" caps apart from "redeem" caps

- `offers.priority` (default 0): among offers equally specific at a place (the place's own,
  then its category's), the higher priority wins the place's one push per visit, then the newest.
- `offers.told_max` (null = no count cap): how many times a person may be told about the
  offer; `cooldown_s` is how long apart (now defaulting to a week). `max_per_person` now only
  caps redemptions (it used to stop every push after the first, for ever).
- Existing offers keep their numbers; those still at the old default cooldown (86,400 s) move
  to the new one (604,800 s: told at most once a week). The downgrade drops the two columns and
  leaves cooldowns as they are.
- `offer_redemptions.code` (a short single-use code shown at the desk, unique per organisation),
  `used_at` and `used_by` (the staff member who accepted it).

Revision ID: 0023
Revises: 0028
Create Date: 2026-12-03 11:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0028"
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
    op.add_column("offer_redemptions", sa.Column("code", sa.String(length=8), nullable=True))
    op.add_column(
        "offer_redemptions", sa.Column("used_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("offer_redemptions", sa.Column("used_by", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_offer_redemptions_used_by_staff_users"),
        "offer_redemptions",
        "staff_users",
        ["used_by"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ux_offer_redemptions_org_code",
        "offer_redemptions",
        ["organisation_id", "code"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_offer_redemptions_org_code", table_name="offer_redemptions")
    op.drop_constraint(
        op.f("fk_offer_redemptions_used_by_staff_users"), "offer_redemptions", type_="foreignkey"
    )
    op.drop_column("offer_redemptions", "used_by")
    op.drop_column("offer_redemptions", "used_at")
    op.drop_column("offer_redemptions", "code")
    op.drop_constraint(op.f("ck_offers_told_max"), "offers", type_="check")
    op.drop_column("offers", "told_max")
    op.drop_column("offers", "priority")
