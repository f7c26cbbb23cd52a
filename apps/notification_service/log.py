"""The notification log: every notification sent, once per event, in Postgres.

Its key is the event's CloudEvents source+id, so a redelivered event (a crash before the
ack, a takeover by a peer) finds its row and is neither logged nor published again.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TIMESTAMP

metadata = sa.MetaData()

notification_log = sa.Table(
    "notification_log",
    metadata,
    sa.Column("event_source", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("event_time", TIMESTAMP(timezone=True), nullable=False),
    sa.Column("sent_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("notification_log_customer", "customer_id", "event_time"),
    sa.Index("notification_log_order", "order_id"),
)
