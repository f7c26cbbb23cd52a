"""How the order service turns contract and store failures into its HTTP errors."""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import RedisError

from contracts import ContractError, MalformedJson, UnsupportedSpecVersion
from eventbus.appender import Appended, PendingAppend
from eventbus.coalescing import CoalescingAppender
from orderly_platform.http import ApiError


def contract_error(error: ContractError) -> ApiError:
    """400 for what is not even well-formed; 422 for well-formed input that breaks a contract."""
    status = 400 if isinstance(error, MalformedJson | UnsupportedSpecVersion) else 422
    return ApiError(status, error.code, {"field": error.field, "reason": error.reason})


def require_json(content_type: str) -> None:
    if content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", f"send application/json, not {content_type or 'nothing'}"
        )


async def append_or_503(
    appender: CoalescingAppender, batch: Sequence[PendingAppend]
) -> list[Appended]:
    """Append one unit; raises ``AppendRefused`` as the appender does."""
    try:
        return await appender.append_batch(batch)
    except RedisError as exc:
        # Nothing or part was written; the client's retry is safe: duplicates are dropped.
        raise store_unavailable(exc) from None


def store_unavailable(exc: RedisError) -> ApiError:
    return ApiError(
        503, "unavailable", f"the event store did not answer ({type(exc).__name__}); retry"
    )
