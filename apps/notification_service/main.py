"""Run the notification service: ``python -m notification_service`` (settings from ORDERLY_*)."""

from __future__ import annotations

from notification_service.app import create_app
from orderly_platform.http import run_service


def main() -> None:
    run_service("notification service", create_app)
