"""Saga health on the orders read model: what each order in flight waits for, since when.

Revision ID: 0005_saga_health
Revises: 0004_orders
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision: str = "0005_saga_health"
down_revision: str | None = "0004_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Orders projected before this revision show no wait until their next event, or until
    # `orderly projections rebuild orders` replays them.
    op.add_column("orders", sa.Column("waiting_for", sa.Text, nullable=True))
    op.add_column("orders", sa.Column("waiting_since", TIMESTAMP(timezone=True), nullable=True))
    op.create_index(
        "orders_waiting",
        "orders",
        ["waiting_since"],
        postgresql_where=sa.text("status = 'PENDING'"),
    )


def downgrade() -> None:
    op.drop_index("orders_waiting", table_name="orders")
    op.drop_column("orders", "waiting_since")
    op.drop_column("orders", "waiting_for")
