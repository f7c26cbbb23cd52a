"""OrderSaga: one workflow per order, from OrderPlaced to CONFIRMED, REJECTED or CANCELLED.

The steps (ARCHITECTURE.md, "The order saga"): reserve stock, capture the payment, commit
the stock, confirm. The saga talks to the inventory service through events (it emits a
request through an activity, local where that is safe, and the bridge signals it the answer)
and to the payment service through activities on the payments task queue. Every wait has a
deadline. A failure after something was done compensates in reverse order: refund what was
captured, then release what was reserved, and the order ends REJECTED with a reason. A
cancellation request is honoured until the commit is asked for; after that the order is
confirmed.

Deterministic by construction: time, ids and waits come from ``workflow``; a change to the
steps of running sagas must go behind ``workflow.patched``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from contracts import (
        DomainEvent,
        Event,
        InventoryCommitRequested,
        InventoryCommitted,
        InventoryReleased,
        InventoryReleaseRequested,
        InventoryReservationRejected,
        InventoryReservationRequested,
        InventoryReserved,
        OrderCancellationRequested,
        OrderCancelled,
        OrderConfirmed,
        OrderRejected,
    )
    from contracts.commands import CapturePayment, RefundPayment
    from contracts.payments import (
        CAPTURE_PAYMENT,
        PAYMENTS_TASK_QUEUE,
        REFUND_PAYMENT,
        PaymentOutcome,
        RefundOutcome,
    )
    from contracts.values import OrderItem
    from saga.messages import EMIT_EVENT, EmitEvent, SagaInput, SagaState

# Appending to Redis: retried until it works (Redis restarting, say), never given up.
_EMIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=0.5), maximum_interval=timedelta(seconds=30)
)
# The provider: backoff up to a minute between attempts, for as long as the payment
# deadline allows. A decline is an answer (PaymentOutcome), not an error, so is not retried.
_PAYMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60)
)

CONFIRMED, REJECTED, CANCELLED = "CONFIRMED", "REJECTED", "CANCELLED"
# workflow.patched ids: each names a change to the commands a saga issues.
_LOCAL_EMITS = "local-emits"
_ACTIVITY_EMITS = "activity-emits"
_CANCELLED_TWICE = "shielded-from-a-second-cancel"
# Payment requests name the order's correlation (for the payment events and log lines).
_CORRELATED_PAYMENTS = "correlated-payments"
# Fewer workflow tasks and history events per order (see ``run``). Sagas under it take every
# change above without asking for it: one marker per saga instead of one per change.
_LEAN = "lean-confirmed-path"
# The namespace of the ids of the events a lean saga emits: an event's id follows from its
# order and its type (a saga emits each type once; asking again is the same request).
_EVENT_IDS = uuid.UUID("6b1f3c0e-52a4-4b8e-9d0a-7f3e2c1d9a55")


@workflow.defn(name="OrderSaga")
class OrderSaga:
    def __init__(self) -> None:
        self._received: dict[str, Event] = {}
        self._cancel_reason: str | None = None
        self._step = "starting"
        self._waiting_for: str | None = None
        self._status = "PENDING"
        self._reason: str | None = None
        self._reservation_asked = False
        self._reserved = False
        self._captured = 0
        self._refunded = 0
        self._order: SagaInput | None = None
        self._lean = False

    # --- what the outside world can do ----------------------------------------------------

    @workflow.signal
    def event(self, event: Event) -> None:
        """An event of this order from the streams (the bridge sends them)."""
        if isinstance(event, OrderCancellationRequested):
            self._cancel_reason = self._cancel_reason or event.reason
        else:
            self._received[type(event).__name__] = event

    @workflow.query
    def state(self) -> SagaState:
        return SagaState(
            order_id=self._order.order_id if self._order else "",
            step=self._step,
            waiting_for=self._waiting_for,
            status=self._status,
            reason=self._reason,
            reserved=self._reserved,
            captured=self._captured,
            refunded=self._refunded,
            cancel_requested=self._cancel_reason,
        )

    # --- the saga ------------------------------------------------------------------------

    @workflow.run
    async def run(self, order: SagaInput) -> SagaState:
        self._order = order
        # A lean saga appends its reservation request and its confirmation inside the workflow
        # task that decides them (local activities) instead of in activity tasks of their own,
        # and lets the timers of its deadlines lapse instead of cancelling them: on the
        # confirmed path 5 workflow tasks and 31 history events instead of 7 and 45.
        # It is safe only where a workflow task lost with its worker after the append is
        # retried into the same decision or one that undoes it: ids follow from the event, so
        # an append repeated is dropped as a duplicate; a cancellation seen before the
        # reservation releases anyway (a release before its reservation leaves a tombstone
        # that refuses it); and a confirmation is decided once the commit is asked, whatever
        # arrives next. Every other request stays an activity task
        # (tests/faults/saga_worker_crash_test.py).
        self._lean = workflow.patched(_LEAN)
        try:
            await self._saga(order)
        except (asyncio.CancelledError, ActivityError) as stopped:
            # A cancellation that cuts off an activity in flight arrives as an ActivityError:
            # a lean saga compensates for it too (its first task, lost with its worker, may
            # have asked for the reservation already). Older sagas ended cancelled there, and
            # replay as they ran.
            if isinstance(stopped, ActivityError) and not (
                self._lean and is_cancelled_exception(stopped)
            ):
                raise
            # Cancelled through Temporal (an operator). Shielded from that cancellation: an
            # order whose stock is being committed is confirmed (the stock is leaving, and a
            # release would not bring it back); any other is compensated and CANCELLED.
            if self._step == "committing":
                # The request may have been cut off with its activity: ask again (a commit
                # is once per order, and so is its answer).
                await self._to_the_end(self._commit_and_confirm(order))
            else:
                self._cancel_reason = self._cancel_reason or "cancelled by an operator"
                await self._to_the_end(self._cancel())
        return self.state()

    async def _saga(self, order: SagaInput) -> None:
        # Each step returns False when it ended the order (rejected or cancelled).
        if await self._reserve(order) and await self._pay(order):
            await self._commit_and_confirm(order)

    async def _reserve(self, order: SagaInput) -> bool:
        # A lean saga's first task may have asked already, and been lost with its worker.
        self._reservation_asked = self._lean
        if self._cancel_requested():
            await self._cancel()
            return False
        self._step = "reserving"
        self._reservation_asked = True
        await self._emit(
            InventoryReservationRequested(order_id=order.order_id, items=self._items()),
            in_task=True,
        )
        answer = await self._wait_for(
            "inventory reservation", InventoryReserved, InventoryReservationRejected
        )
        if self._cancel_requested():
            await self._cancel()
        elif answer is None:
            await self._reject("inventory did not answer in time")
        elif isinstance(answer, InventoryReservationRejected):
            self._reservation_asked = False  # it holds nothing for this order
            await self._reject(f"out of stock: {answer.reason}")
        else:
            self._reserved = True
        return self._reserved

    async def _pay(self, order: SagaInput) -> bool:
        self._step = "paying"
        self._waiting_for = "payment"
        try:
            payment = await workflow.execute_activity(
                CAPTURE_PAYMENT,
                CapturePayment(
                    order_id=order.order_id,
                    amount=order.total,
                    currency=order.currency,
                    payment_token=order.payment_token,
                    idempotency_key=f"{order.order_id}:capture",
                    correlation_id=self._payment_correlation(),
                ),
                task_queue=PAYMENTS_TASK_QUEUE,
                result_type=PaymentOutcome,
                start_to_close_timeout=timedelta(seconds=order.deadlines.payment_attempt),
                schedule_to_close_timeout=timedelta(seconds=order.deadlines.payment),
                retry_policy=_PAYMENT_RETRY,
            )
        except ActivityError:
            # Unavailable past the deadline. The last attempt may have captured (a lost
            # reply): the refund looks and gives back whatever was taken.
            await self._reject("payment provider unavailable", refund_unknown=True)
            return False
        finally:
            self._waiting_for = None
        if payment.status == "declined":
            await self._reject(f"payment declined: {payment.reason or 'no reason given'}")
            return False
        self._captured = payment.amount
        if self._cancel_requested():
            await self._cancel()
            return False
        return True

    async def _commit_and_confirm(self, order: SagaInput) -> None:
        self._step = "committing"
        await self._emit(InventoryCommitRequested(order_id=order.order_id, items=self._items()))
        await self._await_commit_and_confirm()

    async def _await_commit_and_confirm(self) -> None:
        assert self._order is not None
        order = self._order
        # Past this point the order is confirmed: the stock is leaving. An inventory service
        # that is down holds the saga here (visible as waiting) until it is back.
        while (
            await self._wait_for("inventory commit", InventoryCommitted, cancellable=False) is None
        ):
            workflow.logger.warning("inventory commit overdue", extra={"order_id": order.order_id})
        self._reserved = False
        await self._finish(OrderConfirmed(order_id=order.order_id), CONFIRMED, None, in_task=True)

    async def _reject(self, reason: str, *, refund_unknown: bool = False) -> None:
        await self._compensate(refund_unknown=refund_unknown)
        assert self._order is not None
        await self._finish(
            OrderRejected(order_id=self._order.order_id, reason=reason), REJECTED, reason
        )

    async def _cancel(self) -> None:
        await self._compensate(refund_unknown=False)
        assert self._order is not None and self._cancel_reason is not None
        reason = self._cancel_reason
        await self._finish(
            OrderCancelled(order_id=self._order.order_id, reason=reason), CANCELLED, reason
        )

    async def _compensate(self, *, refund_unknown: bool) -> None:
        """Undo in reverse order: the payment first, then the stock."""
        assert self._order is not None
        order = self._order
        if self._captured or refund_unknown:
            self._step = "refunding"
            refund = await workflow.execute_activity(
                REFUND_PAYMENT,
                RefundPayment(
                    order_id=order.order_id,
                    amount=self._captured or order.total,
                    currency=order.currency,
                    idempotency_key=f"{order.order_id}:refund",
                    correlation_id=self._payment_correlation(),
                ),
                task_queue=PAYMENTS_TASK_QUEUE,
                result_type=RefundOutcome,
                start_to_close_timeout=timedelta(seconds=order.deadlines.payment_attempt),
                # A refund owed is never given up on.
                retry_policy=_PAYMENT_RETRY,
            )
            self._refunded = refund.refunded
        if self._reserved or self._reservation_asked:
            # Also when the reservation's answer never came: the inventory service handles
            # the order's requests in order, so a late reservation is released too.
            self._step = "releasing"
            await self._emit(
                InventoryReleaseRequested(order_id=order.order_id, items=self._items())
            )
            await self._wait_for("inventory release", InventoryReleased, cancellable=False)
            self._reserved = False

    def _payment_correlation(self) -> str | None:
        assert self._order is not None
        # Only the request changes, but its history would show it: sagas that asked for a
        # payment without it keep asking that way.
        correlated = self._lean or workflow.patched(_CORRELATED_PAYMENTS)
        return self._order.correlation_id if correlated else None

    def _cancel_requested(self) -> bool:
        # A method, not an inline test: a signal sets it between the saga's awaits.
        return self._cancel_reason is not None

    async def _finish(
        self, event: Event, status: str, reason: str | None, *, in_task: bool = False
    ) -> None:
        self._step = "done"
        # The terminal event goes out whatever: the order's end is decided.
        await self._to_the_end(self._emit(event, in_task=in_task))
        self._status, self._reason = status, reason
        self._record_outcome(status)

    def _record_outcome(self, status: str) -> None:
        """``orderly_saga_outcomes_total`` and ``orderly_saga_duration_seconds`` by outcome.

        Through the workflow's metric meter, which records nothing while a saga is replayed:
        no command, nothing in the history, so determinism and saved histories are untouched.
        The duration runs from the saga's start (the bridge starts it on OrderPlaced).
        """
        meter = workflow.metric_meter()
        outcome = {"outcome": status}
        meter.create_counter(
            "orderly_saga_outcomes", "Sagas ended, by outcome (CONFIRMED, REJECTED, CANCELLED)."
        ).add(1, outcome)
        meter.create_histogram_timedelta(
            "orderly_saga_duration_seconds",
            "Time from a saga's start to its terminal event, by outcome.",
            "duration",
        ).record(workflow.now() - workflow.info().start_time, outcome)

    # --- plumbing ------------------------------------------------------------------------

    async def _to_the_end(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to its end, shielded from a cancellation of the saga.

        The SDK can deliver one cancellation twice: a wait whose answer and the cancellation
        came in the same activation raises it, and the task is cancelled again on the next
        turn of the loop, where it cut off the next emit (the commit's compensation, or the
        terminal event): the saga ended cancelled with neither (workflow_test, "an operator
        cancel during the commit"). Sagas that met that before the fix replay as they ran.
        """
        task = asyncio.ensure_future(work)
        while True:
            try:
                await asyncio.shield(task)
                return
            except asyncio.CancelledError:
                if task.done() or not (self._lean or workflow.patched(_CANCELLED_TWICE)):
                    raise

    async def _emit(self, event: Event, *, in_task: bool = False) -> None:
        """Append ``event`` to the order's stream; ``in_task``: inside the workflow task that
        decides it, if this is a lean saga (see ``run`` for where that is safe)."""
        assert self._order is not None
        order_id = self._order.order_id
        if self._lean:
            event_id = str(uuid.uuid5(_EVENT_IDS, f"{order_id}/{type(event).__name__}"))
        else:
            event_id = str(workflow.uuid4())  # the same in every replay and retry
        request = EmitEvent(
            event_id=event_id,
            order_id=order_id,
            event=event,
            correlation_id=self._order.correlation_id,
            causation_id=self._order.placed_event_id,
        )
        # An activity task by default: the workflow task that decides the emit is in the
        # history before the append happens. A local activity appends inside that task; a
        # worker that dies before finishing the task loses the task but not the append, and
        # the next worker replays the saga with whatever signals came meanwhile, which may
        # turn it off the path that emitted (tests/faults/saga_worker_crash_test.py). So only
        # the emits that `run` shows safe go in the task, and only in lean sagas; sagas that
        # started under local emits for all (`v2-*` histories) keep them, so that they replay.
        if self._lean:
            local = in_task
        else:
            local = not workflow.patched(_ACTIVITY_EMITS) and workflow.patched(_LOCAL_EMITS)
        if local:
            await workflow.execute_local_activity(
                EMIT_EVENT,
                request,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=_EMIT_RETRY,
            )
        else:
            await workflow.execute_activity(
                EMIT_EVENT,
                request,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=_EMIT_RETRY,
            )

    async def _wait_for(
        self, what: str, *kinds: type[DomainEvent], cancellable: bool = True
    ) -> Event | None:
        """The first of ``kinds`` to arrive, or None on the inventory deadline or (when
        ``cancellable``) a cancellation request."""
        assert self._order is not None
        names = [kind.__name__ for kind in kinds]

        def answered() -> bool:
            return any(name in self._received for name in names)

        def done() -> bool:
            return answered() or (cancellable and self._cancel_reason is not None)

        self._waiting_for = what
        wait = _wait_letting_the_timer_lapse if self._lean else workflow.wait_condition
        try:
            await wait(done, timeout=self._order.deadlines.inventory_wait)
        except TimeoutError:
            return None
        finally:
            self._waiting_for = None
        return next((self._received[name] for name in names if name in self._received), None)

    def _items(self) -> tuple[OrderItem, ...]:
        assert self._order is not None
        return tuple(OrderItem(sku=line.sku, quantity=line.quantity) for line in self._order.items)


async def _wait_letting_the_timer_lapse(done: Callable[[], bool], *, timeout: timedelta) -> None:
    """``workflow.wait_condition(done, timeout=timeout)``, but the deadline's timer is not
    cancelled when ``done`` comes first: it lapses. A saga that has ended by then pays nothing
    more for it, where cancelling it is a command and a history event; one still running (a
    payment retried through a provider's outage) gets a workflow task with nothing to do."""
    lapsed = False

    def lapse() -> None:
        nonlocal lapsed
        lapsed = True

    asyncio.get_running_loop().call_later(timeout.total_seconds(), lapse)
    await workflow.wait_condition(lambda: lapsed or done())
    if not done():
        raise TimeoutError
