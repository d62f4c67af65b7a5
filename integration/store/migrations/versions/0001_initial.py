"""The inbox, escalations, the audit trail and sweep cursors.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Times are stored as naive UTC (integration.store.UtcDateTime adds the offset back on read).
Time = sa.DateTime
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("ticket_ref", sa.String(length=100), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", Time(), nullable=False),
        sa.Column("occurred_at", Time(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", Time(), nullable=True),
        sa.Column("updated_at", Time(), nullable=False),
        sa.Column("processed_at", Time(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "delivery_id", name="uq_deliveries_platform_delivery_id"),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status", "updated_at"])
    op.create_index("ix_deliveries_ticket", "deliveries", ["platform", "ticket_ref", "status", "id"])

    op.create_table(
        "escalations",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("ticket_ref", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=True),
        sa.Column("first_contact_due", Time(), nullable=True),
        sa.Column("contacted_at", Time(), nullable=True),
        sa.Column("updated_at", Time(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "ticket_ref", name="uq_escalations_platform_ticket_ref"),
    )
    op.create_index("ix_escalations_group", "escalations", ["group_name"])
    op.create_index("ix_escalations_state_due", "escalations", ["state", "first_contact_due"])
    op.create_index("ix_escalations_updated", "escalations", ["updated_at"])

    op.create_table(
        "transitions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("escalation_id", Id, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("ticket_ref", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", Time(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("delivery_id", sa.String(length=255), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("escalation_id", "seq", name="uq_transitions_escalation_seq"),
    )
    op.create_index("ix_transitions_ticket", "transitions", ["platform", "ticket_ref", "seq"])

    op.create_table(
        "sweep_cursors",
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", Time(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "name"),
    )


def downgrade() -> None:
    op.drop_table("sweep_cursors")
    op.drop_index("ix_transitions_ticket", table_name="transitions")
    op.drop_table("transitions")
    op.drop_index("ix_escalations_updated", table_name="escalations")
    op.drop_index("ix_escalations_state_due", table_name="escalations")
    op.drop_index("ix_escalations_group", table_name="escalations")
    op.drop_table("escalations")
    op.drop_index("ix_deliveries_ticket", table_name="deliveries")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_table("deliveries")
