"""The ledger on its file: durable before answering, one record per key under concurrency,
the same books after a restart, and no answer from the books once the file failed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from payment_provider_sim.durable_ledger import LEDGER_FILE, DurableLedger
from payment_provider_sim.journal import JournalCorrupt, JournalFailed, JournalLocked
from payment_provider_sim.ledger import Captured, CaptureRequest, RefundRequest

REQUEST = CaptureRequest(order_id="o-1", amount=1000, currency="EUR", payment_token="tok_visa")
DECLINED = msgspec.structs.replace(REQUEST, payment_token="tok_decline")


@pytest_asyncio.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[DurableLedger]:
    opened = DurableLedger.open(tmp_path)
    yield opened
    await opened.close()


def lines(directory: Path) -> list[bytes]:
    return (directory / LEDGER_FILE).read_bytes().splitlines()


async def test_ten_concurrent_identical_captures_make_one_charge(
    ledger: DurableLedger, tmp_path: Path
) -> None:
    answers = await asyncio.gather(*(ledger.capture("k-1", REQUEST) for _ in range(10)))
    assert sum(answer.new for answer in answers) == 1
    assert len({answer.record for answer in answers}) == 1
    assert len(ledger.charges("o-1")) == 1
    assert len(lines(tmp_path)) == 1


async def test_a_replay_waits_until_the_first_answer_is_on_disk(
    ledger: DurableLedger, tmp_path: Path
) -> None:
    first = asyncio.ensure_future(ledger.capture("k-1", REQUEST))
    await asyncio.sleep(0)  # the first request has decided; its write may still be running
    await ledger.capture("k-1", REQUEST)
    assert len(lines(tmp_path)) == 1
    await first


async def test_concurrent_writes_share_fsyncs(
    ledger: DurableLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    await asyncio.gather(*(ledger.capture(f"k-{n}", REQUEST) for n in range(50)))
    assert len(lines(tmp_path)) == 50
    assert 1 <= len(fsyncs) < 50


async def test_a_restart_keeps_every_record(tmp_path: Path) -> None:
    before = DurableLedger.open(tmp_path)
    capture = (await before.capture("k-1", REQUEST)).record
    assert isinstance(capture, Captured)
    refund = RefundRequest(order_id="o-1", charge_id=capture.charge_id, amount=400, currency="EUR")
    await before.refund("r-1", refund)
    await before.capture("k-2", DECLINED)
    listed = before.charges("o-1")
    await before.close()

    after = DurableLedger.open(tmp_path)
    try:
        assert after.charges("o-1") == listed
        again = await after.capture("k-1", REQUEST)
        assert (again.new, again.record) == (False, capture)
        assert not (await after.refund("r-1", refund)).new
        assert not (await after.capture("k-2", DECLINED)).new
    finally:
        await after.close()


async def test_a_torn_last_line_is_dropped_and_the_next_record_starts_a_line(
    tmp_path: Path,
) -> None:
    first = DurableLedger.open(tmp_path)
    await first.capture("k-1", REQUEST)
    await first.close()
    with (tmp_path / LEDGER_FILE).open("ab") as file:
        file.write(b'{"kind":"capture","key":"k-2","fingerp')  # a crash mid-write

    second = DurableLedger.open(tmp_path)
    await second.capture("k-3", REQUEST)
    await second.close()
    third = DurableLedger.open(tmp_path)
    try:
        assert [c.idempotency_key for c in third.charges("o-1")] == ["k-1", "k-3"]
    finally:
        await third.close()


async def test_a_damaged_line_before_the_end_stops_the_start(tmp_path: Path) -> None:
    first = DurableLedger.open(tmp_path)
    await first.capture("k-1", REQUEST)
    await first.close()
    path = tmp_path / LEDGER_FILE
    path.write_bytes(b"not json\n" + path.read_bytes())
    with pytest.raises(JournalCorrupt, match=":1:"):
        DurableLedger.open(tmp_path)


async def test_a_repeated_key_in_the_file_stops_the_start(tmp_path: Path) -> None:
    first = DurableLedger.open(tmp_path)
    await first.capture("k-1", REQUEST)
    await first.close()
    path = tmp_path / LEDGER_FILE
    line = path.read_bytes()
    path.write_bytes(line * 2)
    with pytest.raises(JournalCorrupt, match="recorded twice"):
        DurableLedger.open(tmp_path)
    path.write_bytes(line)  # repaired: the refused start did not keep the file locked
    await DurableLedger.open(tmp_path).close()


async def test_a_second_process_cannot_open_the_same_ledger(
    ledger: DurableLedger, tmp_path: Path
) -> None:
    with pytest.raises(JournalLocked):
        DurableLedger.open(tmp_path)


async def test_after_a_failed_write_nothing_is_answered_from_the_books(
    ledger: DurableLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(JournalFailed):
        await ledger.capture("k-1", REQUEST)
    monkeypatch.undo()
    assert ledger.failure is not None
    with pytest.raises(JournalFailed):  # the record is in memory, but maybe not on disk
        await ledger.capture("k-1", REQUEST)
    with pytest.raises(JournalFailed):
        ledger.charges("o-1")
