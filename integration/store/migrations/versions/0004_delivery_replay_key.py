"""What a delivery's signature covers, hashed: a signed body sent again under a new delivery id is stored once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("replay_key IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("replay_key", sa.String(length=80), nullable=True))
    op.create_index(
        "uq_deliveries_platform_replay_key", "deliveries", ["platform", "replay_key"], unique=True,
        sqlite_where=WHERE, postgresql_where=WHERE,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_deliveries_platform_replay_key", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("replay_key")
