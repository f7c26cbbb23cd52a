"""Structured logging: one JSON object per line, with context bound per task.

Standard-library loggers (aiohttp, temporalio, alembic) go through the same renderer, so
every line a process writes can be parsed the same way.

Where work starts (a request, an event handled, an activity) the ids it is about are bound
with ``log_context``: every line logged inside carries them (``order_id``, ``event_id``,
``workflow_id``, ``correlation_id``), whoever logs it, without passing them around.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import structlog

LogFormat = Literal["json", "console"]


def configure_logging(level: str = "INFO", fmt: LogFormat | None = None) -> None:
    """Route structlog and the standard library to stderr in one format."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _temporal_ids,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _temporal_ids(
    logger: object, method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Lift the ids Temporal's workflow and activity loggers attach to a record (as
    ``extra``) to the top level, where every other line has them."""
    record = event_dict.get("_record")
    if record is None:
        return event_dict
    about = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
    if isinstance(about, dict) and "workflow_id" in about:
        event_dict.setdefault("workflow_id", about["workflow_id"])
    order_id = getattr(record, "order_id", None)  # `extra={"order_id": ...}`
    if order_id is not None:
        event_dict.setdefault("order_id", order_id)
    return event_dict


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Bind ``fields`` to every log line of this task until the block ends.

    A None field is not written, but is still cleared at the end: a handler that binds it
    later (an order id known only once the order is made) leaks nothing into the next
    request or event handled by the same task. Values bound outside come back afterwards.
    """
    saved = {
        key: value
        for key, value in structlog.contextvars.get_contextvars().items()
        if key in fields
    }
    structlog.contextvars.bind_contextvars(
        **{key: value for key, value in fields.items() if value is not None}
    )
    try:
        yield
    finally:
        structlog.contextvars.unbind_contextvars(*fields)
        structlog.contextvars.bind_contextvars(**saved)
