"""Run the saga worker: ``python -m saga_worker`` (settings from ORDERLY_*)."""

from __future__ import annotations

from orderly_platform.http import run_service
from saga_worker.app import create_app


def main() -> None:
    run_service("saga worker", create_app)
