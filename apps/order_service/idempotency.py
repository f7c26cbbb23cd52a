"""``Idempotency-Key`` for ``POST /orders``: a retried request gets the first answer.

A key's record (the order id it created and the fingerprint of the request) has to be
written in the same atomic step as the order's OrderPlaced event: written apart, a crash
between the two would leave an order without its record (and the retry would place a second
order) or a record without its order. A Lua script touches one hash slot, and an order's
stream partition is ``partition_of(order_id)``, so the record and the order are put in the
same orders partition:

- the record lives at ``orderly:idem:{orders:p}:<sha256(key)>`` where p is the orders
  partition of sha256(key) (hashing also keeps client text, braces included, out of Redis
  key syntax);
- the new order's id is a random UUID4 redrawn until ``partition_of(order_id) == p``: on
  average as many draws as there are partitions, about 2 us each (under 10 us at the default
  4 partitions, about 2 ms at the 1,024 maximum), and the ids stay as unguessable as any
  UUID4;
- the append claims the record's key (``eventbus.appender.Claim``): one script call checks
  that the key is free, appends the event (expected version 0: the order must not exist)
  and stores {order_id, fingerprint}, kept as long as event dedupe keys (7 days). A held
  claim refuses the append and hands back the stored record instead.

A request reads the record first, in the same round trip as the catalog: a key already used
is answered from its record without pricing again, so a retry gets the first answer even if
prices changed since. Same fingerprint: 202 with the first order id (and the header
``Idempotent-Replayed: true``); another fingerprint: 409. Requests racing with one key may all
miss that read, but only one wins the claim; the others get the winner's record back from
the script and answer from it the same way. A request refused before its append (any 4xx)
stores nothing, so its key stays free for a corrected retry.

The fingerprint is the sha256 of the decoded ``PlaceOrder`` encoded again by msgspec, so
key order, whitespace and unknown fields do not make two bodies differ. The header is
optional: without it a request is simply not deduplicated. Keys form one namespace for the
whole service, as every client holds the same API token.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

import msgspec
from aiohttp import web

from contracts import PlaceOrder, encode_command
from eventbus.appender import Claim
from eventbus.topology import ORDERS, Partition, Topology, partition_of
from orderly_platform.http import ApiError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Printable ASCII, no space at either end (HTTP would strip it): a key travels in a header
# and in logs, where nothing else is safe.
_VALID_KEY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


class IdempotencyRecord(msgspec.Struct, frozen=True, array_like=True):
    order_id: str
    fingerprint: str


_RECORD_ENCODER = msgspec.json.Encoder()
_RECORD_DECODER = msgspec.json.Decoder(IdempotencyRecord)


def idempotency_key(request: web.Request) -> str | None:
    """The request's key, None without one; a malformed key is a 400."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise _bad_key("send one Idempotency-Key header, not several")
    [key] = values
    if not key:
        raise _bad_key("must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise _bad_key(f"at most {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not _VALID_KEY.fullmatch(key):
        raise _bad_key("printable ASCII only, not starting or ending with a space")
    return key


def _bad_key(reason: str) -> ApiError:
    return ApiError(400, "bad_header", {"field": HEADER, "reason": reason})


def fingerprint(command: PlaceOrder) -> str:
    return hashlib.sha256(encode_command(command)).hexdigest()


@dataclass(frozen=True)
class IdempotentRequest:
    """A request that carries a key: where its record lives and what it must match."""

    partition: Partition
    record_key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, command: PlaceOrder, topology: Topology) -> IdempotentRequest:
        digest = hashlib.sha256(key.encode()).hexdigest()
        partition = topology.partition(ORDERS, digest)
        return cls(partition, partition.idempotency_key(digest), fingerprint(command))

    def claim(self, order_id: str) -> Claim:
        record = IdempotencyRecord(order_id=order_id, fingerprint=self.fingerprint)
        return Claim(self.record_key, _RECORD_ENCODER.encode(record))

    def first_order_id(self, stored: bytes) -> str:
        """The order id of the first request with this key; 409 if it was another request."""
        record = _RECORD_DECODER.decode(stored)
        if record.fingerprint != self.fingerprint:
            raise ApiError(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was already used for a different request; "
                "send a new key for a new order",
            )
        return record.order_id


def new_order_id(topology: Topology, partition: Partition | None) -> str:
    """A random order id; one whose stream partition is ``partition`` when one is given."""
    while True:
        order_id = str(uuid.uuid4())
        if partition is None or partition_of(order_id, topology.partitions) == partition.index:
            return order_id
