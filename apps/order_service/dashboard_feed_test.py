"""The dashboard's shared feed: one snapshot per interval for every page, slow pages let go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from order_service.dashboard_feed import CLIENT_BACKLOG, DashboardFeed, sse_frame
from order_service.order_flow import FlowEvent


class Counted(msgspec.Struct):
    n: int


def counting_snapshots() -> tuple[list[int], DashboardFeed]:
    """A feed whose n-th snapshot is ``{"n": n}``, with no order flow, and its call log."""
    calls: list[int] = []

    async def snapshot() -> Counted:
        calls.append(len(calls) + 1)
        return Counted(len(calls))

    return calls, DashboardFeed(snapshot, no_flow, interval_s=0.001)


async def no_flow() -> AsyncIterator[list[FlowEvent]]:
    return quiet()


async def quiet() -> AsyncIterator[list[FlowEvent]]:
    await asyncio.Event().wait()
    yield []


def flow_event(n: int) -> FlowEvent:
    return FlowEvent(entry_id=f"{n}-0", order_id=f"order-{n}", event="OrderPlaced", time="t")


async def frames(queue: asyncio.Queue[bytes | None], count: int) -> list[bytes | None]:
    return [await queue.get() for _ in range(count)]


async def test_every_page_gets_the_same_snapshots_computed_once_for_all() -> None:
    calls, feed = counting_snapshots()
    async with (
        feed.subscribe() as first,
        feed.subscribe() as second,
        feed.subscribe() as third,
    ):
        received = [await frames(queue, 5) for queue in (first, second, third)]

    # The pages joined before the first snapshot, so each got snapshots 1 to 5 as they were
    # computed: three pages cost one computation per interval, not three.
    expected = [sse_frame("snapshot", Counted(n)) for n in range(1, 6)]
    assert received == [expected, expected, expected]
    assert len(calls) <= 6  # the five read, and at most one computed while they left
    assert not feed.running  # no page open: nothing runs


async def test_a_page_that_opens_later_starts_with_the_latest_snapshot_and_recent_flow() -> None:
    flowed = asyncio.Event()

    async def flow() -> AsyncIterator[list[FlowEvent]]:
        return two_events()

    async def two_events() -> AsyncIterator[list[FlowEvent]]:
        yield [flow_event(1), flow_event(2)]
        flowed.set()
        await asyncio.Event().wait()

    async def snapshot() -> Counted:
        return Counted(7)

    feed = DashboardFeed(snapshot, flow, interval_s=3600)
    async with feed.subscribe() as first:
        await frames(first, 2)  # the snapshot and the flow, in either order
        await flowed.wait()
        async with feed.subscribe() as later:
            snapshot_frame, flow_frame = await frames(later, 2)

    assert snapshot_frame == sse_frame("snapshot", Counted(7))
    assert flow_frame == sse_frame("flow", {"count": 2, "events": [flow_event(1), flow_event(2)]})


async def test_a_page_too_slow_to_keep_up_is_let_go_and_the_others_keep_going() -> None:
    messages = CLIENT_BACKLOG + 10

    async def flow() -> AsyncIterator[list[FlowEvent]]:
        return many()

    async def many() -> AsyncIterator[list[FlowEvent]]:
        for n in range(messages):
            yield [flow_event(n)]
            await asyncio.sleep(0)  # let the reading page take each message
        await asyncio.Event().wait()

    async def snapshot() -> Counted:
        return Counted(0)

    feed = DashboardFeed(snapshot, flow, interval_s=3600)
    async with feed.subscribe() as stalled, feed.subscribe() as reading:
        read = await frames(reading, messages + 1)  # every flow message and the snapshot
        # Its backlog was dropped: the end of its stream is the next thing it reads.
        assert await stalled.get() is None
        assert feed.clients == 1
    assert None not in read


async def test_a_failed_snapshot_is_reported_and_the_next_one_is_tried() -> None:
    answers: list[Exception | Counted] = [ConnectionError("redis is away"), Counted(2)]

    async def snapshot() -> Counted:
        answer = answers.pop(0) if answers else Counted(3)
        if isinstance(answer, Exception):
            raise answer
        return answer

    feed = DashboardFeed(snapshot, no_flow, interval_s=0.001)
    async with feed.subscribe() as page:
        problem, recovered = await frames(page, 2)

    assert problem == sse_frame(
        "problem", {"error": "cannot read the platform's state: redis is away"}
    )
    assert recovered == sse_frame("snapshot", Counted(2))


async def test_closing_the_feed_ends_every_stream_and_refuses_new_ones() -> None:
    _, feed = counting_snapshots()
    async with feed.subscribe() as page:
        await page.get()
        await feed.close()
        while (frame := await page.get()) is not None:
            assert frame.startswith(b"event: snapshot")
        assert not feed.running
    async with feed.subscribe() as late:
        assert await late.get() is None
    assert not feed.running


async def test_the_flow_is_positioned_before_the_first_snapshot_is_taken() -> None:
    happened: list[str] = []

    async def flow() -> AsyncIterator[list[FlowEvent]]:
        await asyncio.sleep(0)  # reading the stream heads takes a round trip
        happened.append("flow positioned")
        return quiet()

    async def snapshot() -> Counted:
        happened.append("snapshot")
        return Counted(1)

    feed = DashboardFeed(snapshot, flow, interval_s=3600)
    async with feed.subscribe() as page:
        await page.get()

    # So an order placed once a page shows its first snapshot is always in its flow.
    assert happened == ["flow positioned", "snapshot"]
