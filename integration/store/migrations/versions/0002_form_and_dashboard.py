"""Rate-limit hits for the escalation form and the dashboard login, and the shared web secrets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Times are stored as naive UTC (integration.store.UtcDateTime adds the offset back on read).
Time = sa.DateTime
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rate_limit_hits",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rate_limit_hits_bucket_at", "rate_limit_hits", ["bucket", "at"])
    op.create_index("ix_rate_limit_hits_at", "rate_limit_hits", ["at"])

    op.create_table(
        "web_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("web_secrets")
    op.drop_index("ix_rate_limit_hits_at", table_name="rate_limit_hits")
    op.drop_index("ix_rate_limit_hits_bucket_at", table_name="rate_limit_hits")
    op.drop_table("rate_limit_hits")
