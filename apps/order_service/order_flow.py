"""The live order flow: every order event as it is appended, read from the order streams.

A plain XREAD, not a consumer group: the dashboard only watches, so it must not take
entries from any group, leave anything pending, or need acknowledging. It starts at the
streams' heads (what XREAD calls ``$``) and then follows each stream from the last entry it
saw, so nothing appended between two reads is missed, also across a Redis outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts import ContractError, decode_stored_attributes
from eventbus.scripts import as_text
from eventbus.topology import Partition
from orderly_platform.logs import get_logger

log = get_logger(__name__)

# Entries read per stream per round trip: under a burst the flow falls behind gracefully
# instead of holding one huge reply.
BATCH = 500
# How long one XREAD waits for an entry; well under the client's socket timeout (5 s).
BLOCK_MS = 1000
# Between reads while Redis does not answer.
RETRY_S = 1.0
# Never the first entry id of a stream: reading after it reads everything.
_BEFORE_ANY = "0-0"


class FlowEvent(msgspec.Struct, frozen=True, kw_only=True):
    # The stream entry id: "<append ms>-<seq>", unique within its stream.
    entry_id: str
    order_id: str
    # "OrderPlaced", "PaymentCaptured", ... whatever the version.
    event: str
    time: str


async def tail_order_events(
    redis: aioredis.Redis, partitions: Sequence[Partition], *, block_ms: int = BLOCK_MS
) -> AsyncIterator[list[FlowEvent]]:
    """The events appended to ``partitions``' streams from now on, in batches, forever.

    The heads are read before this returns, so whatever is appended after it is in the flow.
    """
    return _follow(redis, await _heads(redis, partitions), block_ms)


async def _follow(
    redis: aioredis.Redis, positions: dict[str, str], block_ms: int
) -> AsyncIterator[list[FlowEvent]]:
    while True:
        try:
            replies = await redis.xread(positions, count=BATCH, block=block_ms)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Keep the positions and read on from them once Redis is back: what was appended
            # meanwhile still shows (the snapshots report the outage itself).
            log.warning("order flow cannot read; retrying", error=str(exc))
            await asyncio.sleep(RETRY_S)
            continue
        batch = []
        for stream, entries in replies or []:
            for entry_id, fields in entries:
                positions[as_text(stream)] = as_text(entry_id)
                event = _flow_event(as_text(entry_id), fields)
                if event is not None:
                    batch.append(event)
        if batch:
            # Streams are read side by side; the entry id's time puts them back in order.
            batch.sort(key=lambda event: _append_ms(event.entry_id))
            yield batch


async def _heads(redis: aioredis.Redis, partitions: Sequence[Partition]) -> dict[str, str]:
    async with redis.pipeline(transaction=False) as pipe:
        for partition in partitions:
            pipe.xinfo_stream(partition.stream)
        replies = await pipe.execute(raise_on_error=False)
    heads = {}
    for partition, info in zip(partitions, replies, strict=True):
        if isinstance(info, ResponseError) and "no such key" in str(info).lower():
            heads[partition.stream] = _BEFORE_ANY  # created later: all of it is new
        elif isinstance(info, Exception):
            raise info
        else:
            heads[partition.stream] = as_text(info["last-generated-id"])
    return heads


def _flow_event(entry_id: str, fields: dict[bytes, bytes]) -> FlowEvent | None:
    payload = fields.get(b"event")
    if payload is None:
        return None
    try:
        attributes = decode_stored_attributes(payload)
    except ContractError:
        return None  # not an orderly event; the consumers dead-letter it, the view skips it
    name = attributes.type.split(".")[-2] if attributes.type.count(".") >= 2 else attributes.type
    return FlowEvent(
        entry_id=entry_id,
        order_id=attributes.subject,
        event=name,
        time=attributes.time.isoformat(),
    )


def _append_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])
