"""Log context for Temporal activities: each line an activity logs says which workflow (and
so which order) it works for, and under which correlation.

Every orderly workflow is one order's saga and its workflow id is the order id, so the
workflow id is bound as ``order_id`` too. Workflow code is left alone (it must stay
deterministic): ``workflow.logger`` lines get their ids from the record (see logs.py).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from orderly_platform.logs import log_context


class ActivityLogContext(Interceptor):
    """A worker interceptor: ``Worker(..., interceptors=[ActivityLogContext()])``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindActivityContext(next)


class _BindActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with log_context(
            workflow_id=info.workflow_id,
            order_id=info.workflow_id,
            activity=info.activity_type,
            correlation_id=_correlation_id(input.args),
        ):
            return await super().execute_activity(input)


def _correlation_id(args: Any) -> str | None:
    # Requests that carry a correlation (the saga's emits, say) name it `correlation_id`.
    for arg in args:
        correlation_id = getattr(arg, "correlation_id", None)
        if isinstance(correlation_id, str):
            return correlation_id
    return None
