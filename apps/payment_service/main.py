"""Run the payment service: ``python -m payment_service`` (settings from ORDERLY_*)."""

from __future__ import annotations

from orderly_platform.http import serve
from orderly_platform.logs import configure_logging, get_logger
from orderly_platform.settings import load_settings
from payment_service.app import create_app

log = get_logger(__name__)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("payment service starting", port=settings.http_port)
    serve(create_app(settings), host=settings.http_host, port=settings.http_port)
