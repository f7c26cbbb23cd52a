"""Run the inventory service: ``python -m inventory_service`` (settings from ORDERLY_*)."""

from __future__ import annotations

from inventory_service.app import create_app
from orderly_platform.http import run_service


def main() -> None:
    run_service("inventory service", create_app)
