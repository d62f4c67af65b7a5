"""Dashboard sessions ended by logging out: a copy of the cookie no longer logs anyone in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Times are stored as naive UTC (integration.store.UtcDateTime adds the offset back on read).
Time = sa.DateTime


def upgrade() -> None:
    op.create_table(
        "ended_sessions",
        sa.Column("session", sa.String(length=64), nullable=False),
        sa.Column("ended_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("session"),
    )
    op.create_index("ix_ended_sessions_ended_at", "ended_sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_ended_sessions_ended_at", table_name="ended_sessions")
    op.drop_table("ended_sessions")
