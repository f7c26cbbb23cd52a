"""The saga's own activity: appending the events it emits to the order's stream."""

from __future__ import annotations

from temporalio import activity

from contracts import new_envelope
from eventbus.appender import EventAppender
from saga.messages import EMIT_EVENT, SAGA_SOURCE, EmitEvent


class SagaActivities:
    def __init__(self, appender: EventAppender) -> None:
        self.appender = appender

    @activity.defn(name=EMIT_EVENT)
    async def emit_event(self, request: EmitEvent) -> None:
        # The workflow fixed the event id, so a retry after a lost reply is deduplicated
        # by source+id instead of appended twice.
        envelope = new_envelope(
            request.event,
            source=SAGA_SOURCE,
            subject=request.order_id,
            id=request.event_id,
            correlation_id=request.correlation_id,
            causation_id=request.causation_id,
        )
        await self.appender.append(envelope)
