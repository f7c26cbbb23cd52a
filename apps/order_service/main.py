"""Run the order service: ``python -m order_service`` (settings from ORDERLY_*)."""

from __future__ import annotations

from order_service.app import create_app
from orderly_platform.http import run_service


def main() -> None:
    run_service("order service", create_app)
