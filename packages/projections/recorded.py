"""An event at its place in a stream: what every projection applies, live or in a replay."""

from __future__ import annotations

from datetime import datetime

from contracts import Event, EventEnvelope, decode_envelope, decode_stored_event
from eventbus.consumer import StreamEntry
from projections.positions import StreamPosition


class Recorded:
    """One event and where it is; its envelope is decoded at most once, and only if needed.

    A replay reads type, subject and time from the archive's columns, and most events need
    nothing more (an order's timeline step, say): skipping their decoding is most of what
    makes a replay fast. Live entries arrive as bytes and are decoded straight away.
    """

    __slots__ = (
        "stream",
        "position",
        "payload",
        "type",
        "name",
        "subject",
        "time",
        "_envelope",
        "_event",
    )

    def __init__(
        self,
        stream: str,
        position: StreamPosition,
        payload: bytes,
        *,
        type: str,  # - the CloudEvents attribute is called `type`
        subject: str,
        time: datetime,
        envelope: EventEnvelope | None = None,
    ) -> None:
        self.stream = stream
        self.position = position
        # The exact bytes the stream held, which the archive keeps for a faithful replay.
        self.payload = payload
        self.type = type
        # "orderly.OrderPlaced.v2" -> "OrderPlaced": what projections dispatch on, whatever
        # the version (an upcast event has the same name).
        self.name = type.split(".")[1] if type.count(".") >= 2 else type
        self.subject = subject
        self.time = time
        self._envelope = envelope
        self._event: Event | None = None if envelope is None else envelope.data

    @classmethod
    def decode(cls, stream: str, position: StreamPosition, payload: bytes) -> Recorded:
        envelope = decode_envelope(payload)
        return cls(
            stream,
            position,
            payload,
            type=envelope.type,
            subject=envelope.subject,
            time=envelope.time,
            envelope=envelope,
        )

    @classmethod
    def of(cls, entry: StreamEntry) -> Recorded:
        return cls.decode(
            entry.partition.stream, StreamPosition.parse(entry.entry_id), entry.payload
        )

    @property
    def event(self) -> Event:
        """The event's data; decodes only that when the envelope is not decoded yet."""
        if self._event is None:
            self._event = decode_stored_event(self.payload)
        return self._event

    @property
    def envelope(self) -> EventEnvelope:
        if self._envelope is None:
            self._envelope = decode_envelope(self.payload)
        return self._envelope

    def __repr__(self) -> str:
        return f"Recorded({self.stream!r}, {self.position}, {self.type!r}, {self.subject!r})"
