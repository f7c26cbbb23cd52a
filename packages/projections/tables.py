"""The Postgres tables the projections own (SQLAlchemy Core).

Alembic revisions create them; a blue/green rebuild creates copies from these definitions, so
they must match the migrations exactly (indexes included): a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

metadata = sa.MetaData()

# Every event ever appended, kept after Redis trims its stream; replay reads it first.
event_archive = sa.Table(
    "event_archive",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("stream", sa.Text, nullable=False),
    # A stream entry id "<ms>-<seq>" as two numbers, so positions compare and index well.
    sa.Column("entry_ms", sa.BigInteger, nullable=False),
    sa.Column("entry_seq", sa.BigInteger, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("time", TIMESTAMP(timezone=True), nullable=False),
    # The exact bytes the stream held (structured CloudEvents JSON), for a faithful replay.
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column(
        "archived_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("stream", "entry_ms", "entry_seq", name="event_archive_position"),
)

# How far each projection has applied each stream partition; written in the same transaction
# as the projection's own rows, so a redelivered entry is recognised and skipped.
projection_checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("projection", sa.Text, primary_key=True),
    sa.Column("stream", sa.Text, primary_key=True),
    sa.Column("entry_ms", sa.BigInteger, nullable=False),
    sa.Column("entry_seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Stock and price per SKU, from the catalog and warehouse events (reservations: the saga).
inventory = sa.Table(
    "inventory",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("on_hand", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("price", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.Text, nullable=True),
    sa.Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
)

# One row per order: what the customer sees in GET /orders/{id}; timeline: [{type, at}].
orders = sa.Table(
    "orders",
    metadata,
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
    # Saga health: while the order is not terminal, the step it waits for and since when.
    sa.Column("waiting_for", sa.Text, nullable=True),
    sa.Column("waiting_since", TIMESTAMP(timezone=True), nullable=True),
)
# A customer's history, newest first, paged by (placed_at, order_id).
sa.Index("orders_by_customer", orders.c.customer_id, orders.c.placed_at.desc(), orders.c.order_id)
# The orders still in flight, oldest wait first: the saga-health view reads only these.
sa.Index(
    "orders_waiting",
    orders.c.waiting_since,
    postgresql_where=orders.c.status == "PENDING",
)
