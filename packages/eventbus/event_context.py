"""The context a consumer binds while it handles one event: its ids on every log line, and
a span continuing the trace of whoever appended it (when tracing is on)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from contracts import CloudEventAttributes, ContractError, decode_stored_attributes
from eventbus.topology import ORDERS, category_of
from orderly_platform.logs import log_context
from orderly_platform.tracing import continued_trace


@contextmanager
def handling_event(attributes: CloudEventAttributes, consumer: str) -> Iterator[None]:
    """Inside: log lines carry the event's id, its order (or other subject) and correlation;
    spans are children of the span that appended the event, named ``consumer type``."""
    with (
        _event_log_context(attributes),
        continued_trace(
            attributes.traceparent,
            f"{consumer} {attributes.type}",
            {
                "cloudevents.event_id": attributes.id,
                "cloudevents.event_subject": attributes.subject,
            },
        ),
    ):
        yield


def about_entry(payload: bytes) -> AbstractContextManager[None]:
    """For a consumer's own lines about a stored entry (a failure, a dead letter): the ids
    of its event, when it decodes (one that does not is what such lines are often about)."""
    try:
        attributes = decode_stored_attributes(payload)
    except ContractError:
        return nullcontext()
    return _event_log_context(attributes)


def _event_log_context(attributes: CloudEventAttributes) -> AbstractContextManager[None]:
    about_order = category_of(attributes.type) == ORDERS
    return log_context(
        event_id=attributes.id,
        order_id=attributes.subject if about_order else None,
        subject=None if about_order else attributes.subject,
        correlation_id=attributes.correlationid,
    )
