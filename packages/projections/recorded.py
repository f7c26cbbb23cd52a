"""An event at its place in a stream: what every projection applies, live or in a replay."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import (
    Event,
    decode_stored_attributes,
    decode_stored_event,
)
from eventbus.consumer import StreamEntry
from eventbus.topology import category_of
from projections.positions import StreamPosition


class Recorded:
    """One event and where it is; its data is decoded at most once, and only if needed.

    Its attributes (type, subject, time...) come from the archive's columns in a replay, or
    are decoded alone from a live entry; most events need nothing more (an order's timeline
    step, say), and skipping the decoding of their data is much of what makes a replay fast.
    """

    __slots__ = (
        "category",
        "stream",
        "position",
        "payload",
        "source",
        "id",
        "type",
        "name",
        "subject",
        "time",
        "_event",
    )

    def __init__(
        self,
        stream: str,
        position: StreamPosition,
        payload: bytes,
        *,
        source: str,
        id: str,  # shadows the builtin: the CloudEvents attributes are `id` and `type`
        type: str,
        subject: str,
        time: datetime,
    ) -> None:
        self.stream = stream
        self.position = position
        # The exact bytes the stream held, which the archive keeps for a faithful replay.
        self.payload = payload
        self.source = source
        self.id = id
        self.type = type
        # "orderly.OrderPlaced.v2" -> "OrderPlaced": what projections dispatch on, whatever
        # the version (an upcast event has the same name).
        self.name = _NAMES.get(type) or _name_of(type)
        self.category = CATEGORY_OF_NAME[self.name]  # orders or catalog
        self.subject = subject
        # In UTC whatever offset the sender wrote, as the archive's column comes back: a
        # timeline applied live must equal a rebuilt one. Nearly every time is UTC already,
        # and checking that is cheaper than converting a million of them in a replay.
        self.time = time if time.tzinfo is UTC else time.astimezone(UTC)
        self._event: Event | None = None

    @classmethod
    def decode(cls, stream: str, position: StreamPosition, payload: bytes) -> Recorded:
        """Decode the attributes now (a bad entry fails here) and the data when asked."""
        attributes = decode_stored_attributes(payload)
        return cls(
            stream,
            position,
            payload,
            source=attributes.source,
            id=attributes.id,
            type=attributes.type,
            subject=attributes.subject,
            time=attributes.time,
        )

    @classmethod
    def of(cls, entry: StreamEntry) -> Recorded:
        return cls.decode(
            entry.partition.stream, StreamPosition.parse(entry.entry_id), entry.payload
        )

    @property
    def event(self) -> Event:
        """The event's data, upcast to its current version; decoded on first use."""
        if self._event is None:
            self._event = decode_stored_event(self.payload)
        return self._event

    def __repr__(self) -> str:
        return f"Recorded({self.stream!r}, {self.position}, {self.type!r}, {self.subject!r})"


# Per CloudEvents type: its event name and category. A few dozen types, read a million times
# in a replay, so computed once each.
_NAMES: dict[str, str] = {}
CATEGORY_OF_NAME: dict[str, str] = {}


def _name_of(event_type: str) -> str:
    name = event_type.split(".")[1] if event_type.count(".") >= 2 else event_type
    _NAMES[event_type] = name
    CATEGORY_OF_NAME[name] = category_of(event_type)
    return name
