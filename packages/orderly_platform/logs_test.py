"""Log lines carry the ids bound around them, and only while the work they are about runs."""

from __future__ import annotations

import asyncio
import io
import logging

import structlog

from orderly_platform.logs import get_logger, log_context
from orderly_platform.testing import json_log_lines, log_output

__all__ = ["log_output"]  # the fixture


def test_bound_ids_are_on_every_line_inside_and_gone_after(
    log_output: io.StringIO,
) -> None:
    log = get_logger("test")
    with log_context(order_id="o-1", correlation_id="c-1", event_id=None):
        log.info("inside")
        logging.getLogger("stdlib").warning("from the standard library")
    log.info("after")
    inside, stdlib, after = json_log_lines(log_output)
    for line in (inside, stdlib):
        assert (line["order_id"], line["correlation_id"]) == ("o-1", "c-1")
        assert "event_id" not in line  # None is not written
    assert "order_id" not in after and "correlation_id" not in after


def test_a_field_bound_later_inside_is_cleared_and_outer_values_come_back(
    log_output: io.StringIO,
) -> None:
    log = get_logger("test")
    with log_context(correlation_id="outer"):
        with log_context(correlation_id="inner", order_id=None):
            structlog.contextvars.bind_contextvars(order_id="made-inside")
            log.info("inside")
        log.info("back outside")
    inside, outside = json_log_lines(log_output)
    assert (inside["correlation_id"], inside["order_id"]) == ("inner", "made-inside")
    assert outside["correlation_id"] == "outer" and "order_id" not in outside


async def test_concurrent_tasks_do_not_see_each_others_ids(
    log_output: io.StringIO,
) -> None:
    log = get_logger("test")
    both_bound = asyncio.Barrier(2)

    async def work(order_id: str) -> None:
        with log_context(order_id=order_id):
            await both_bound.wait()
            log.info("working")

    await asyncio.gather(work("o-1"), work("o-2"))
    lines = json_log_lines(log_output, "working")
    assert sorted(line["order_id"] for line in lines) == ["o-1", "o-2"]


def test_temporal_records_get_their_workflow_and_order_ids_at_the_top_level(
    log_output: io.StringIO,
) -> None:
    # What workflow.logger attaches to a record, as `extra`.
    logging.getLogger("temporalio.workflow").warning(
        "inventory commit overdue",
        extra={"temporal_workflow": {"workflow_id": "o-9", "run_id": "r"}, "order_id": "o-9"},
    )
    [line] = json_log_lines(log_output)
    assert (line["workflow_id"], line["order_id"]) == ("o-9", "o-9")
