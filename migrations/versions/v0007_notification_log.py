"""The notification service's log: one row per notification, unique by the event it is about.

Revision ID: 0007_notification_log
Revises: 0006_payment_ledger
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision: str = "0007_notification_log"
down_revision: str | None = "0006_payment_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_log",
        sa.Column("event_source", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("event_time", TIMESTAMP(timezone=True), nullable=False),
        sa.Column(
            "sent_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("notification_log_customer", "notification_log", ["customer_id", "event_time"])
    op.create_index("notification_log_order", "notification_log", ["order_id"])


def downgrade() -> None:
    op.drop_table("notification_log")
