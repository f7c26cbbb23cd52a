"""The payment service's own record of every capture and refund, by idempotency key.

A row is written before the provider is called and completed after it answers, so a retry
(a worker killed mid-call, a lost reply) finds the key and asks the provider again under the
same key, which the provider answers without charging twice; an answer already recorded is
returned without calling the provider at all. The key is unique here for good, unlike
Temporal's history, which is deleted after the namespace's retention period: a capture
retried after that still cannot charge twice.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TIMESTAMP, insert
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData()

Kind = Literal["capture", "refund"]
# pending: asked, no answer yet (or the answer was lost); the others are final.
Status = Literal["pending", "captured", "declined", "refunded"]

payment_ledger = sa.Table(
    "payment_ledger",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    # The provider's charge or refund id once it answered; the decline reason for a decline.
    sa.Column("provider_ref", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    # A capture's payment token, to ask again under the same key after a lost reply (the
    # provider answers a key only for the same request).
    sa.Column("payment_token", sa.Text, nullable=True),
    sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("payment_ledger_order", "order_id"),
)


class LedgerMismatch(Exception):
    """The key was used before for another amount, currency, order or kind."""


async def begin_entry(
    connection: AsyncConnection,
    *,
    key: str,
    order_id: str,
    kind: Kind,
    amount: int,
    currency: str,
    payment_token: str | None = None,
    status: Status = "pending",
) -> sa.Row[Any]:
    """The key's row: created as given if new, else as it stands (locked for this transaction)."""
    await connection.execute(
        insert(payment_ledger)
        .values(
            idempotency_key=key,
            order_id=order_id,
            kind=kind,
            amount=amount,
            currency=currency,
            status=status,
            payment_token=payment_token,
        )
        .on_conflict_do_nothing()
    )
    row = (
        await connection.execute(
            sa.select(payment_ledger)
            .where(payment_ledger.c.idempotency_key == key)
            .with_for_update()
        )
    ).one()
    if (row.order_id, row.kind, row.amount, row.currency) != (order_id, kind, amount, currency):
        raise LedgerMismatch(
            f"idempotency key {key!r} was used for {row.kind} of {row.amount} {row.currency}"
            f" on order {row.order_id}"
        )
    return row


async def complete_entry(
    connection: AsyncConnection,
    key: str,
    status: Status,
    *,
    provider_ref: str | None = None,
    reason: str | None = None,
) -> None:
    await connection.execute(
        sa.update(payment_ledger)
        .where(payment_ledger.c.idempotency_key == key)
        .values(status=status, provider_ref=provider_ref, reason=reason, updated_at=sa.func.now())
    )


async def entry(connection: AsyncConnection, key: str) -> sa.Row[Any] | None:
    return (
        await connection.execute(
            sa.select(payment_ledger).where(payment_ledger.c.idempotency_key == key)
        )
    ).first()
