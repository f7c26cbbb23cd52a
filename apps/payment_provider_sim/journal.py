"""The ledger's file: one JSON record per line, appended and fsync'd before anyone is answered.

Appends are group-committed: records added while a write is on disk go out together in the
next write, so one fsync serves many requests and the event loop never waits on the disk (the
write runs in a thread). Lines reach the file in the order they were appended, which is the
order the ledger decided them in, so loading the file replays the same decisions.

A crash can leave at most the last line half-written (it was never acknowledged: answers wait
for the fsync). Loading drops that torn tail; anything else that does not decode stops the
start, because a ledger with a hole would silently forget money that moved. An exclusive lock
on the file keeps a second simulator off it. A failed write leaves the books ahead of the
file; the journal then refuses every later append (``JournalFailed``) until a restart reloads
the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path
from typing import BinaryIO

import msgspec

from payment_provider_sim.ledger import Record

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


class JournalCorrupt(Exception):
    """A line other than a torn last one does not decode: the file needs a human."""


class JournalLocked(Exception):
    """Another process holds the journal."""


class JournalFailed(Exception):
    """A write failed earlier; the file no longer holds everything the books hold."""


class Journal:
    """Open with ``Journal.open(path)``: it returns the records already in the file too."""

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path = path
        self._file = file
        self._batch: list[bytes] = []
        self._batch_written: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    @classmethod
    def open(cls, path: Path) -> tuple[Journal, list[Record]]:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        file = path.open("a+b")
        try:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalLocked(f"another process is using {path}") from None
            records = _load(path, file)
            if created:
                _fsync_directory(path.parent)  # the new file's name must survive a crash too
        except BaseException:
            file.close()
            raise
        return cls(path, file), records

    def append(self, record: Record) -> asyncio.Future[None]:
        """Queue ``record``; the future completes once it is on disk (or fails with the write)."""
        if self.failure is not None:
            raise JournalFailed(f"writing {self.path} failed earlier: {self.failure}")
        if self._batch_written is None:
            self._batch_written = asyncio.get_running_loop().create_future()
        self._batch.append(_encoder.encode(record) + b"\n")
        written = self._batch_written
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return written

    async def close(self) -> None:
        """Finish what was appended, then release the file."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        self.release()

    def release(self) -> None:
        """Close the file (and drop its lock) at once; for a journal with nothing in flight."""
        self._file.close()

    async def _write_batches(self) -> None:
        while self._batch:
            batch, written = self._batch, self._batch_written
            self._batch, self._batch_written = [], None
            assert written is not None
            try:
                await asyncio.to_thread(self._write, b"".join(batch))
            except Exception as exc:
                self.failure = exc
                written.set_exception(JournalFailed(f"writing {self.path} failed: {exc}"))
                self._fail_queued()
                return
            written.set_result(None)

    def _fail_queued(self) -> None:
        if self._batch_written is not None:
            self._batch_written.set_exception(JournalFailed(f"writing {self.path} failed"))
        self._batch, self._batch_written = [], None

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())


def _load(path: Path, file: BinaryIO) -> list[Record]:
    file.seek(0)
    content = file.read()
    lines = content.split(b"\n")
    # Everything up to the last newline was acknowledged; after it, at most a torn write.
    complete, tail = lines[:-1], lines[-1]
    records = []
    for number, line in enumerate(complete, start=1):
        try:
            records.append(_decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise JournalCorrupt(f"{path}:{number}: {exc}") from None
    if tail:
        # Never acknowledged, so dropping it loses nothing anyone was told; the next append
        # must start on a line of its own.
        file.truncate(len(content) - len(tail))
        file.flush()
        os.fsync(file.fileno())
    return records


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
