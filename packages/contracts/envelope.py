"""The CloudEvents 1.0 envelope every orderly event travels in.

Attribute names follow the spec, which allows only lowercase alphanumerics for extension
attributes: hence ``correlationid``, ``causationid`` and ``aggregateversion``.
``traceparent`` is the CloudEvents distributed-tracing extension (a W3C Trace Context
``traceparent``): present only when the producer traces, so a trace crosses the streams.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Final, TypeAlias

import msgspec

from contracts.errors import SchemaViolation
from contracts.events import Event, event_type_of
from contracts.values import Identifier

SPEC_VERSION: Final = "1.0"
JSON_CONTENT_TYPE: Final = "application/json"

EventId: TypeAlias = Identifier
Source: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
"""A URI-reference naming the producer, e.g. ``/order-service``."""

EventTypeName: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Subject: TypeAlias = Identifier
"""The id of the aggregate the event belongs to (an order id, a SKU)."""

EventTime: TypeAlias = Annotated[datetime, msgspec.Meta(tz=True)]
"""A naive time would be read differently by every host; only aware times are accepted."""

# Data is always decoded as JSON, so only JSON media types (with parameters) make sense.
DataContentType: TypeAlias = Annotated[
    str, msgspec.Meta(pattern=r"^(?i:application/(?:[\w.+-]+\+)?json)(?:\s*;.*)?$")
]
AggregateVersion: TypeAlias = Annotated[int, msgspec.Meta(ge=1)]
TraceParent: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class CloudEventAttributes(msgspec.Struct, frozen=True, kw_only=True):
    """The context attributes of a CloudEvent, without its data.

    ``specversion`` is a plain string here so that a foreign version can be recognised and
    refused by name (``UnsupportedSpecVersion``) instead of as a generic schema error.
    """

    id: EventId
    source: Source
    type: EventTypeName
    time: EventTime
    subject: Subject
    specversion: str = SPEC_VERSION
    datacontenttype: DataContentType = JSON_CONTENT_TYPE
    # Absent on events from outside systems; orderly's own events always carry one.
    correlationid: Identifier | None = None
    causationid: Identifier | None = None
    # The version of the aggregate after this event: the append's optimistic concurrency.
    aggregateversion: AggregateVersion | None = None
    # Not validated beyond its length: a malformed one is ignored by the reader's
    # propagator, and refusing an event over its tracing context would lose the event.
    traceparent: TraceParent | None = None

    @property
    def dedupe_key(self) -> str:
        """``source`` + ``id``: CloudEvents' own identity of an event."""
        return dedupe_key(self.source, self.id)


class EventEnvelope(CloudEventAttributes, frozen=True, kw_only=True):
    """A CloudEvent whose ``data`` is a decoded orderly event, always of a current version.

    Superseded versions never appear here: decoding upcasts them, and writing one (for a
    test or a migration) goes through ``contracts.codec.encode_cloudevent``.
    """

    data: Event

    def __post_init__(self) -> None:
        # An envelope that lies about its data would be routed to the wrong handler.
        if self.type != event_type_of(self.data):
            raise SchemaViolation(
                f"type {self.type!r} does not match data of type {event_type_of(self.data)!r}",
                field="$.type",
            )
        if self.specversion != SPEC_VERSION:
            raise SchemaViolation(f"specversion must be {SPEC_VERSION!r}", field="$.specversion")
        if self.time.tzinfo is None:
            raise SchemaViolation("time must be timezone-aware", field="$.time")


def dedupe_key(source: str, event_id: str) -> str:
    """The key an event store deduplicates on.

    A URI-reference ``source`` may contain any separator, so the source's length is spelled
    out in front: two different (source, id) pairs can then never give the same key.
    """
    return f"{len(source)}:{source}:{event_id}"


def new_envelope(
    event: Event,
    *,
    source: str,
    subject: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    aggregate_version: int | None = None,
    traceparent: str | None = None,
    id: str | None = None,  # shadows the builtin because the CloudEvents attribute is `id`
    time: datetime | None = None,
) -> EventEnvelope:
    """Wrap ``event`` in a fresh envelope.

    ``id`` defaults to a random UUID and ``time`` to now in UTC. Without a
    ``correlation_id`` the event starts its own correlation, so every event orderly writes
    can be traced.
    """
    event_id = str(uuid.uuid4()) if id is None else id
    return EventEnvelope(
        id=event_id,
        source=source,
        type=event_type_of(event),
        time=datetime.now(UTC) if time is None else time,
        subject=subject,
        correlationid=event_id if correlation_id is None else correlation_id,
        causationid=causation_id,
        aggregateversion=aggregate_version,
        traceparent=traceparent,
        data=event,
    )
