"""An event at its place in a stream: what every projection applies, live or in a replay."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import EventEnvelope, decode_envelope
from eventbus.consumer import StreamEntry
from projections.positions import StreamPosition


@dataclass(frozen=True, slots=True)
class Recorded:
    stream: str
    position: StreamPosition
    # The exact bytes the stream held, which the archive keeps for a faithful replay.
    payload: bytes
    envelope: EventEnvelope

    @classmethod
    def decode(cls, stream: str, position: StreamPosition, payload: bytes) -> Recorded:
        """Decode once; every projection of a batch shares the result."""
        return cls(stream, position, payload, decode_envelope(payload))

    @classmethod
    def of(cls, entry: StreamEntry) -> Recorded:
        return cls.decode(
            entry.partition.stream, StreamPosition.parse(entry.entry_id), entry.payload
        )
