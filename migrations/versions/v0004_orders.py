"""The orders read model: status, reason, items, totals and timeline per order.

Revision ID: 0004_orders
Revises: 0003_inventory
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision: str = "0004_orders"
down_revision: str | None = "0003_inventory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("items", JSONB, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("timeline", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("placed_at", TIMESTAMP(timezone=True), nullable=False),
        sa.Column("updated_at", TIMESTAMP(timezone=True), nullable=False),
    )
    # A customer's history, newest first, paged by (placed_at, order_id).
    op.create_index(
        "orders_by_customer", "orders", ["customer_id", sa.text("placed_at DESC"), "order_id"]
    )


def downgrade() -> None:
    op.drop_index("orders_by_customer", table_name="orders")
    op.drop_table("orders")
