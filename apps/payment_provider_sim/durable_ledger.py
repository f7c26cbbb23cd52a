"""The ledger and its journal together: no answer leaves before its record is on disk.

A decision is made synchronously (no ``await`` between looking the key up and adding the new
record), so concurrent requests with one key cannot both create a record: the first adds it,
the others find it. Those others may find it before its write has finished; they wait for the
same write, so nobody is told about a charge that a crash could still take back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from payment_provider_sim.journal import Journal, JournalCorrupt, JournalFailed
from payment_provider_sim.ledger import (
    Answer,
    CaptureRequest,
    ChargeListing,
    Ledger,
    RefundRequest,
)

LEDGER_FILE = "ledger.jsonl"


def utc_now() -> datetime:
    return datetime.now(UTC)


class DurableLedger:
    def __init__(
        self, ledger: Ledger, journal: Journal, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._ledger = ledger
        self._journal = journal
        self._clock = clock
        # Writes not finished yet, by key: a replay of such a key waits for the same write.
        self._unwritten: dict[str, asyncio.Future[None]] = {}

    @classmethod
    def open(cls, data_dir: Path, clock: Callable[[], datetime] = utc_now) -> DurableLedger:
        journal, records = Journal.open(data_dir / LEDGER_FILE)
        try:
            ledger = Ledger(records)
        except ValueError as exc:
            journal.release()
            raise JournalCorrupt(f"{journal.path}: {exc}") from None
        return cls(ledger, journal, clock)

    @property
    def failure(self) -> BaseException | None:
        """Why the ledger stopped accepting writes, None while it is healthy."""
        return self._journal.failure

    async def capture(self, key: str, request: CaptureRequest) -> Answer:
        """Raises ``LedgerRefusal`` (nothing recorded) or ``JournalFailed``."""
        self._check_journal()
        return await self._durably(key, self._ledger.capture(key, request, self._clock()))

    async def refund(self, key: str, request: RefundRequest) -> Answer:
        """Raises ``LedgerRefusal`` (nothing recorded) or ``JournalFailed``."""
        self._check_journal()
        return await self._durably(key, self._ledger.refund(key, request, self._clock()))

    def charges(self, order_id: str) -> list[ChargeListing]:
        """Raises ``JournalFailed`` once a write failed: the books may hold what the file lost."""
        self._check_journal()
        # Lists only what is on disk: a record still being written may yet be lost.
        return [
            listing
            for listing in self._ledger.charges(order_id)
            if listing.idempotency_key not in self._unwritten
        ]

    async def close(self) -> None:
        await self._journal.close()

    def _check_journal(self) -> None:
        # After a failed write the books are ahead of the file: answering from them could
        # confirm a charge that a restart forgets.
        if self._journal.failure is not None:
            raise JournalFailed(f"writing {self._journal.path} failed: {self._journal.failure}")

    async def _durably(self, key: str, answer: Answer) -> Answer:
        if answer.new:
            written = self._journal.append(answer.record)
            self._unwritten[key] = written
            written.add_done_callback(lambda _: self._unwritten.pop(key, None))
        else:
            written = self._unwritten.get(key) or _done()
        # Shielded: a request cancelled meanwhile must not cancel the write others wait for.
        await asyncio.shield(written)
        return answer


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
