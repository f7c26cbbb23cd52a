"""Run the payment service: ``python -m payment_service`` (settings from ORDERLY_*)."""

from __future__ import annotations

from orderly_platform.http import run_service
from payment_service.app import create_app


def main() -> None:
    run_service("payment service", create_app)
