"""What every orderly HTTP service shares: JSON errors, bearer auth, health endpoints.

Clients (and tests written outside this repo) rely on one error shape everywhere:
``{"error": <code>, "detail": <human text or structured detail>}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import msgspec
from aiohttp import web

from orderly_platform.logs import configure_logging, get_logger, log_context
from orderly_platform.metrics import add_metrics
from orderly_platform.runtime import tune_gc_for_throughput
from orderly_platform.settings import Settings, load_settings
from orderly_platform.tracing import configure_tracing

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[None]]

_json = msgspec.json.Encoder()


class ApiError(Exception):
    """An error with a status and a stable machine code, rendered as JSON by the middleware."""

    def __init__(
        self, status: int, code: str, detail: object, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_json.encode(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(
        {"error": error.code, "detail": error.detail}, status=error.status, headers=error.headers
    )


# aiohttp raises these itself (no route, wrong method, body over client_max_size).
_HTTP_ERROR_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(ApiError(exc.status, code, exc.text or exc.reason, headers=headers))
    except Exception:
        log.exception("unhandled error", path=request.path, method=request.method)
        return error_response(ApiError(500, "internal_error", "the server failed; see its log"))


CORRELATION_HEADER: Final = "X-Correlation-ID"
# What a correlation id may be: it goes into every event the request causes and every log
# line, so it must be short and plain (the envelope takes up to 128 characters).
_CORRELATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
_CORRELATION_ID_KEY: Final = web.RequestKey("correlation_id", str)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request a correlation id and put it, and the route's order id, on every log
    line the request writes; the response tells the caller the id (``X-Correlation-ID``).

    A caller's own id is kept so its logs and orderly's can be joined; without one the
    request starts a new correlation. Outermost, so error responses carry it too.
    """
    given = request.headers.get(CORRELATION_HEADER)
    if given is not None and not _CORRELATION_ID.fullmatch(given):
        return error_response(
            ApiError(
                400,
                "bad_correlation_id",
                f"{CORRELATION_HEADER} must be 1-128 letters, digits or ._:@/+=- "
                "starting with a letter or digit",
            )
        )
    correlation_id = given or str(uuid.uuid4())
    request[_CORRELATION_ID_KEY] = correlation_id
    with log_context(correlation_id=correlation_id, order_id=request.match_info.get("order_id")):
        response = await handler(request)
    if not response.prepared:  # a stream (server-sent events) has sent its headers already
        response.headers[CORRELATION_HEADER] = correlation_id
    return response


def correlation_id_of(request: web.Request) -> str | None:
    """The id ``request_context`` gave the request: what the events it appends carry."""
    return request.get(_CORRELATION_ID_KEY)


def require_bearer_token(request: web.Request, expected: str) -> None:
    """Refuse with 401 unless the request carries ``Authorization: Bearer <expected>``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    # Constant-time comparison: the time taken must not reveal how much of a guess was right.
    try:
        presented = token.strip().encode()
    except UnicodeEncodeError:  # raw non-UTF-8 header bytes arrive surrogate-escaped
        presented = b""
    if not hmac.compare_digest(presented, expected.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "invalid bearer token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


def add_health_routes(
    app: web.Application, checks: Mapping[str, ReadinessCheck], *, service: str
) -> None:
    """``/healthz``: the process answers. ``/readyz``: every dependency answers too.
    ``/metrics``: Prometheus metrics, with the latency of every request to ``service``
    (orderly_platform.metrics); every service calls this, so every service has them."""

    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        failures: dict[str, Any] = {}
        for name, check in checks.items():
            try:
                await check()
            except Exception as exc:  # any failure of a dependency means "not ready"
                failures[name] = f"{type(exc).__name__}: {exc}"
        if failures:
            return json_response({"status": "unavailable", "checks": failures}, status=503)
        return json_response({"status": "ok", "checks": {name: "ok" for name in checks}})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_metrics(app, service)


def serve(app: web.Application, *, host: str, port: int) -> None:
    """Run an HTTP service until SIGTERM/SIGINT, with the runtime settings every service uses.

    aiohttp handles the signals: stop accepting, finish in-flight requests, run cleanup.
    """
    tune_gc_for_throughput()
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,  # a log line per request costs more than the request; metrics cover it
        print=None,
        shutdown_timeout=10,
    )


def run_service(name: str, create_app: Callable[[Settings], web.Application]) -> None:
    """What every service's ``python -m`` does: settings from ORDERLY_*, logging, serve."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Before the app and its clients are made: they are instrumented as they are built.
    tracing = configure_tracing(name)
    log.info(f"{name} starting", port=settings.http_port, tracing=tracing)
    serve(create_app(settings), host=settings.http_host, port=settings.http_port)
