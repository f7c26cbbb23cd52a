"""Positions in a Redis stream: entry ids ``<milliseconds>-<sequence>``, compared as numbers."""

from __future__ import annotations

from typing import NamedTuple


class StreamPosition(NamedTuple):
    ms: int
    seq: int

    @classmethod
    def parse(cls, entry_id: str) -> StreamPosition:
        ms, _, seq = entry_id.partition("-")
        try:
            return cls(int(ms), int(seq or 0))
        except ValueError:
            raise ValueError(f"not a stream entry id: {entry_id!r}") from None

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


BEGINNING = StreamPosition(0, 0)
